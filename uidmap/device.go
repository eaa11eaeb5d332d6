package uidmap

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
)

// A device's view of a maildrop: one user's several POP3 clients (a
// phone, a laptop, a scanner), each logging in as its own name, share the
// maildrop's UIDLs but each has its own hidden marks, so that a DELE
// under on_dele: hide on one device hides nothing on the others.
//
// The device's state is a Maildrop of its own (under its own Key), whose
// records mirror the shared one's UIDs and UIDLs and carry only the
// device's Hidden marks. Its UIDLs are what its marks hold on to: after a
// UIDVALIDITY change the shared maildrop recognises its messages and keeps
// their UIDLs, and a device's marks follow the UIDLs to the new UIDs.

// DeviceView returns the device's hidden marks for msgs, whose UIDLs the
// shared maildrop gave (uidls[i] is msgs[i]'s), and brings the device's
// records up to date: new messages added, messages gone forgotten, marks
// moved to new UIDs after a UIDVALIDITY change. fresh reports that the
// store knew nothing of the device; with fromNow a fresh device's first
// view hides every message already there ("only mail from now on").
func (m *Map) DeviceView(ctx context.Context, key Key, uidValidity uint32, msgs []Message, uidls []string, fromNow bool) (hidden []bool, fresh bool, err error) {
	if len(uidls) != len(msgs) {
		return nil, false, fmt.Errorf("uidmap: DeviceView: %d UIDLs for %d messages", len(uidls), len(msgs))
	}
	// As in Resolve: a change computed from a state another session of
	// the same device changed in between is refused; start again.
	for attempt := 1; ; attempt++ {
		hidden, fresh, err = m.deviceView(ctx, key, uidValidity, msgs, uidls, fromNow)
		if errors.Is(err, ErrStale) && attempt < 3 {
			continue
		}
		return hidden, fresh, err
	}
}

func (m *Map) deviceView(ctx context.Context, key Key, uidValidity uint32, msgs []Message, uidls []string, fromNow bool) ([]bool, bool, error) {
	drop, err := m.store.Load(ctx, key)
	if err != nil {
		return nil, false, fmt.Errorf("uidmap: load %s: %w", key.User, err)
	}
	// UIDVALIDITY is never 0 upstream: 0 is "never stored". A device
	// whose first view was empty is known all the same (its UIDVALIDITY
	// is stored), so that fromNow hides nothing that arrives later.
	fresh := drop.UIDValidity == 0
	hidden := make([]bool, len(msgs))
	ch := &Change{Expect: drop.UIDValidity, UIDValidity: uidValidity}
	if fresh || drop.UIDValidity != uidValidity {
		// The whole view, written anew; marks carried over by UIDL.
		marked := make(map[string]bool)
		for _, r := range drop.Records {
			if r.Hidden {
				marked[r.UIDL] = true
			}
		}
		for i, msg := range msgs {
			hidden[i] = marked[uidls[i]] || (fresh && fromNow)
			ch.Put = append(ch.Put, Record{UID: msg.UID, UIDL: uidls[i], Hidden: hidden[i]})
		}
		slices.SortFunc(ch.Put, func(a, b Record) int { return cmp.Compare(a.UID, b.UID) })
		return hidden, fresh, m.store.Apply(ctx, key, ch)
	}
	present := make(map[uint32]bool, len(msgs))
	for i, msg := range msgs {
		present[msg.UID] = true
		r, ok := drop.Find(msg.UID)
		switch {
		case !ok:
			ch.Add = append(ch.Add, Record{UID: msg.UID, UIDL: uidls[i]})
		case r.UIDL != uidls[i]:
			// The shared maildrop named this UID otherwise (its state was
			// reset): the device's mark was for another name.
			ch.Put = append(ch.Put, Record{UID: msg.UID, UIDL: uidls[i]})
		default:
			hidden[i] = r.Hidden
		}
	}
	for _, r := range drop.Records {
		if !present[r.UID] {
			ch.Delete = append(ch.Delete, r.UID)
		}
	}
	if len(ch.Add) == 0 && len(ch.Put) == 0 && len(ch.Delete) == 0 {
		return hidden, false, nil
	}
	return hidden, false, m.store.Apply(ctx, key, ch)
}
