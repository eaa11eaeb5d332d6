package imapupstream

import (
	"context"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapupstream/internal/watchdog"
)

// MarkSeen sets \Seen on the messages: UID STORE uids +FLAGS.SILENT (\Seen),
// split into several commands when the UID set is long. UIDs that no longer
// exist are ignored by the server. An empty list sends nothing.
func (c *Conn) MarkSeen(ctx context.Context, uids []uint32) (err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "mark_seen", time.Now(), &err)
	}
	const op = `UID STORE +FLAGS.SILENT (\Seen)`
	if err := c.begin(op); err != nil {
		return err
	}
	sorted := sortUIDs(uids)
	if len(sorted) == 0 {
		return nil
	}
	g := c.guard(ctx, c.cfg.CommandTimeout)
	defer g.Stop()
	return c.storeFlags(g, op, sorted, imap.StoreFlagsAdd, imap.FlagSeen)
}

// storeFlags runs UID STORE on sorted, unique uids, one command per UID set.
func (c *Conn) storeFlags(g *watchdog.Guard, op string, sorted []uint32, how imap.StoreFlagsOp, flag imap.Flag) error {
	for _, set := range uidSets(sorted) {
		g.Progress()
		err := c.client.Store(set, &imap.StoreFlags{Op: how, Silent: true, Flags: []imap.Flag{flag}}, nil).Close()
		if err != nil {
			return c.fail(op, err)
		}
	}
	return nil
}
