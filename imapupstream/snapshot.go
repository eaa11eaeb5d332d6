package imapupstream

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapupstream/internal/watchdog"
)

// MessageMeta is one message of a snapshot.
type MessageMeta struct {
	UID  uint32
	Size int64 // RFC822.SIZE: the octets Fetch delivers
}

// Snapshot lists every message of the selected mailbox in one round trip,
// UID FETCH 1:* (UID RFC822.SIZE), sorted by UID. An empty mailbox
// (NumMessages 0) sends nothing and returns an empty, non-nil slice.
//
// The answer is decoded as it streams in, without buffering it; the command
// timeout applies to stalls (no message for CommandTimeout), not to the whole
// listing, so very large mailboxes do not time out while data flows.
func (c *Conn) Snapshot(ctx context.Context) (_ []MessageMeta, err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "snapshot", time.Now(), &err)
	}
	const op = "UID FETCH 1:* (UID RFC822.SIZE)"
	if err := c.begin(op); err != nil {
		return nil, err
	}
	if c.mbox == nil {
		return nil, fmt.Errorf("imapupstream: Snapshot before Select")
	}
	n := c.messageCountHint()
	if n == 0 {
		return []MessageMeta{}, nil
	}

	g := c.guard(ctx, c.cfg.CommandTimeout)
	defer g.Stop()
	metas, err := c.leanSnapshot(g, n)
	switch {
	case err == nil:
		return c.sortedSnapshot(g, metas, nil)
	case !errors.Is(err, errLeanFallback):
		return nil, c.fail(op, err)
	}
	// An answer of another shape came along: take the snapshot again, the
	// general way.
	return c.goimapSnapshot(g, n)
}

// goimapSnapshot is the snapshot with go-imap's decoder.
func (c *Conn) goimapSnapshot(g *watchdog.Guard, n uint32) ([]MessageMeta, error) {
	const op = "UID FETCH 1:* (UID RFC822.SIZE)"
	cmd := c.client.Fetch(imap.UIDSet{imap.UIDRange{Start: 1, Stop: 0}},
		&imap.FetchOptions{UID: true, RFC822Size: true})
	metas := make([]MessageMeta, 0, n)
	var missing []uint32 // UIDs whose size did not come with them
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		g.Progress()
		m := MessageMeta{Size: -1}
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			switch it := item.(type) {
			case imapclient.FetchItemDataUID:
				m.UID = uint32(it.UID)
			case imapclient.FetchItemDataRFC822Size:
				m.Size = it.Size
			}
		}
		switch {
		case m.UID == 0:
			// Not ours (go-imap routes by UID); nothing to record.
		case m.Size < 0:
			// E.g. an unsolicited flag update carrying the UID that go-imap
			// handed to this command: the size may never come in this
			// answer. Ask again below.
			missing = append(missing, m.UID)
		default:
			metas = append(metas, m)
		}
	}
	if err := cmd.Close(); err != nil {
		return nil, c.fail(op, err)
	}
	return c.sortedSnapshot(g, metas, missing)
}

// sortedSnapshot sorts metas by UID, drops duplicates and asks for the sizes
// that did not come.
func (c *Conn) sortedSnapshot(g *watchdog.Guard, metas []MessageMeta, missing []uint32) ([]MessageMeta, error) {
	if !slices.IsSortedFunc(metas, cmpMeta) {
		slices.SortFunc(metas, cmpMeta)
	}
	metas = slices.CompactFunc(metas, func(a, b MessageMeta) bool { return a.UID == b.UID })
	if len(missing) > 0 {
		var err error
		if metas, err = c.fillSizes(g, metas, missing); err != nil {
			return nil, err
		}
	}
	return metas, nil
}

func cmpMeta(a, b MessageMeta) int {
	switch {
	case a.UID < b.UID:
		return -1
	case a.UID > b.UID:
		return 1
	}
	return 0
}

// fillSizes fetches the sizes of the UIDs that the big FETCH answered
// without one, and merges them into metas.
func (c *Conn) fillSizes(g *watchdog.Guard, metas []MessageMeta, missing []uint32) ([]MessageMeta, error) {
	const op = "UID FETCH (RFC822.SIZE)"
	var need []uint32
	for _, uid := range sortUIDs(missing) {
		if _, found := slices.BinarySearchFunc(metas, uid, func(m MessageMeta, u uint32) int { return cmpMeta(m, MessageMeta{UID: u}) }); !found {
			need = append(need, uid)
		}
	}
	for _, set := range uidSets(need) {
		g.Progress()
		msgs, err := c.client.Fetch(set, &imap.FetchOptions{UID: true, RFC822Size: true}).Collect()
		if err != nil {
			return nil, c.fail(op, err)
		}
		for _, m := range msgs {
			if m.UID != 0 {
				metas = append(metas, MessageMeta{UID: uint32(m.UID), Size: m.RFC822Size})
			}
		}
	}
	slices.SortFunc(metas, cmpMeta)
	return slices.CompactFunc(metas, func(a, b MessageMeta) bool { return a.UID == b.UID }), nil
}
