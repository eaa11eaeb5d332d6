package proxy

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/uidmap"
)

// Window limits what a maildrop lists (policy.window). Messages outside it
// stay upstream untouched and keep their UIDLs; a client cannot see, RETR
// or DELE them. Zero fields limit nothing.
type Window struct {
	// Newest lists only the N messages with the highest UIDs (the newest
	// arrivals) among those the other limits leave.
	Newest int
	// Since lists only messages that arrived within this long, by
	// INTERNALDATE and whole days (IMAP's SEARCH SINCE).
	Since time.Duration
	// MaxSize lists only messages of at most this many octets.
	MaxSize int64
}

// active reports whether w limits anything.
func (w Window) active() bool { return w.Newest > 0 || w.Since > 0 || w.MaxSize > 0 }

// splitDevice splits a POP3 login "user<sep>device" (policy.device_separator)
// into the user and the device; the device is "" for a plain login or
// without a separator configured. The last separator counts, so a user
// name may contain it.
func splitDevice(login, sep string) (user, device string) {
	if sep == "" {
		return login, ""
	}
	i := strings.LastIndex(login, sep)
	if i <= 0 || i+len(sep) == len(login) {
		return login, ""
	}
	return login[:i], login[i+len(sep):]
}

// Device is what popbridge state and import-uidl need of a login name:
// the upstream user and the device ("" for none), split as a session
// splits it.
func (o *Options) Device(login string) (user, device string) {
	return splitDevice(login, o.DeviceSeparator)
}

// DeviceKey names a device's own state in uidmap: the user's maildrop key
// with the whole login as its user.
func (o *Options) DeviceKey(user, device string) uidmap.Key {
	return o.Key(user + o.DeviceSeparator + device)
}

// listed returns which messages of md a session lists: not hidden (by
// the view's marks, the device's when there is one) and inside the
// window. It returns the indexes into md.Metas, in UID order, and how
// many the window left out.
func listed(ctx context.Context, conn *imapupstream.Conn, md *Maildrop, hidden []bool, w Window, now time.Time) (idx []int, outside int, err error) {
	idx = make([]int, 0, len(md.Metas))
	for i := range md.Metas {
		if !hidden[i] {
			idx = append(idx, i)
		}
	}
	if !w.active() {
		return idx, 0, nil
	}
	visible := len(idx)
	if w.MaxSize > 0 {
		idx = slices.DeleteFunc(idx, func(i int) bool { return md.Metas[i].Size > w.MaxSize })
	}
	if w.Since > 0 && len(idx) > 0 {
		uids, err := conn.SearchSince(ctx, now.Add(-w.Since))
		if err != nil {
			return nil, 0, err
		}
		slices.Sort(uids)
		idx = slices.DeleteFunc(idx, func(i int) bool {
			_, found := slices.BinarySearch(uids, md.Metas[i].UID)
			return !found
		})
	}
	if w.Newest > 0 && len(idx) > w.Newest {
		idx = idx[len(idx)-w.Newest:]
	}
	return idx, visible - len(idx), nil
}
