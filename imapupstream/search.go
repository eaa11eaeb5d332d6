package imapupstream

import (
	"context"
	"time"

	"github.com/emersion/go-imap/v2"
)

// SearchSince returns the UIDs of the messages whose INTERNALDATE is on or
// after the date of t: UID SEARCH SINCE, which compares dates only, in the
// server's time zone.
func (c *Conn) SearchSince(ctx context.Context, t time.Time) (_ []uint32, err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "search_since", time.Now(), &err)
	}
	op := "UID SEARCH SINCE " + t.Format("2-Jan-2006")
	if err := c.begin(op); err != nil {
		return nil, err
	}
	g := c.guard(ctx, c.cfg.CommandTimeout)
	defer g.Stop()
	data, err := c.client.UIDSearch(&imap.SearchCriteria{Since: t}, nil).Wait()
	if err != nil {
		return nil, c.fail(op, err)
	}
	uids := make([]uint32, 0, len(data.AllUIDs()))
	for _, uid := range data.AllUIDs() {
		uids = append(uids, uint32(uid))
	}
	return uids, nil
}
