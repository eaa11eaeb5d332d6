package imapupstream

import (
	"fmt"

	"github.com/popbridge/popbridge/imapupstream/internal/lean"
	"github.com/popbridge/popbridge/imapupstream/internal/watchdog"
)

// CapGmail is the capability of Gmail's IMAP extensions, X-GM-MSGID among
// them.
const CapGmail = "X-GM-EXT-1"

// IdentifyOptions ask IdentifyWith for more than a fingerprint needs, for a
// UIDL format that needs it (uidmap.Needs).
type IdentifyOptions struct {
	// GmailMsgID fetches each message's X-GM-MSGID into Ident.GmailMsgID
	// when the server advertises CapGmail (Gmail); without the capability
	// nothing is asked and the field stays 0.
	GmailMsgID bool
}

// gmailMsgIDs fills in the GmailMsgID of ids (index maps a UID to its
// place in ids): UID FETCH uids (UID RFC822.SIZE X-GM-MSGID), read below
// go-imap (internal/lean), which cannot decode X-GM-MSGID and would give
// up the connection on it. An answer whose RFC822.SIZE is not the listed
// one is skipped, as in Identify.
func (c *Conn) gmailMsgIDs(g *watchdog.Guard, ids []Ident, index map[uint32]int, listed sizes) error {
	const op = "UID FETCH (UID RFC822.SIZE X-GM-MSGID)"
	uids := make([]uint32, len(ids))
	for i, id := range ids {
		uids[i] = id.UID
	}
	for _, set := range uidSets(sortUIDs(uids)) {
		g.Progress()
		line := func(line []byte) bool {
			uid, size, msgID, ok := lean.ParseGmailFetch(line)
			if !ok {
				// Another shape with the item: go-imap must not see it.
				return lean.HasGmailMsgID(line)
			}
			if i, known := index[uid]; known && listed.matches(uid, size) {
				ids[i].GmailMsgID = msgID
			}
			return true
		}
		if err := c.leanCommand(g, "UID FETCH "+set.String()+" (UID RFC822.SIZE X-GM-MSGID)", line); err != nil {
			return c.fail(op, err)
		}
	}
	return nil
}

// leanCommand runs one command through c.lean, its answer lines to line,
// and waits for its completion or the end of the connection.
func (c *Conn) leanCommand(g *watchdog.Guard, text string, line func([]byte) bool) error {
	cmd := &lean.Command{Tag: c.lean.NextTag(), Progress: g.Progress, Line: line}
	if err := c.lean.Send(cmd, text); err != nil {
		return err
	}
	select {
	case err := <-cmd.Done():
		return err
	case <-c.client.Closed():
		c.lean.Abandon(cmd)
		select {
		case err := <-cmd.Done():
			return err
		default:
			return fmt.Errorf("connection closed: %w", c.deadCause())
		}
	}
}
