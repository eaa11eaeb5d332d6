package imapupstream

import (
	"context"
	"fmt"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"
)

// Making sure that the octets streamed for a message are that message's.
//
// A server may answer a UID FETCH with something else than the message:
// Courier, for a message another client expunged, answers OK with a
// stand-in of its own ("Subject: message unavailable", 129 octets) and
// reports the EXPUNGE only at the next NOOP. A POP3 client that got +OK and
// those octets would keep them under the message's UIDL for good. So the
// answer must show, before its first octet is handed on, that it is the
// message the snapshot listed: its UID, and its size (the literal's length
// for BODY[], RFC822.SIZE for a part). An answer that does not is read and
// thrown away, and the server is asked whether the message still exists.

// answerCheck is what an answer to a UID FETCH must show, and what it has
// shown so far. A whole message (BODY.PEEK[], section nil) is read and
// checked by fetchDirect (direct.go), by its literal's length; a part goes
// through go-imap (startFetch) and is checked by its RFC822.SIZE.
type answerCheck struct {
	uid     uint32
	section *imap.FetchItemBodySection // nil: BODY.PEEK[]
	size    int64                      // RFC822.SIZE as listed; -1: nothing to compare
	retry   bool                       // a second try after a mismatch: no third

	gotUID  uint32
	gotSize int64 // -1 until RFC822.SIZE came
}

// wantWhole checks an answer of BODY[] for m.
func wantWhole(m MessageMeta) answerCheck {
	return answerCheck{uid: m.UID, size: m.Size}
}

// wantPart checks an answer of section, a part of m, by the RFC822.SIZE it
// carries.
func wantPart(m MessageMeta, section *imap.FetchItemBodySection) answerCheck {
	return answerCheck{uid: m.UID, section: section, size: m.Size}
}

// options are the FETCH items to ask for a part: the section, and what the
// check needs.
func (w answerCheck) options() *imap.FetchOptions {
	return &imap.FetchOptions{
		UID:         true,
		RFC822Size:  w.size >= 0,
		BodySection: []*imap.FetchItemBodySection{w.section},
	}
}
func (w *answerCheck) reset() { w.gotUID, w.gotSize = 0, -1 }

// note takes an item of the answer into account.
func (w *answerCheck) note(item imapclient.FetchItemData) {
	switch item := item.(type) {
	case imapclient.FetchItemDataUID:
		w.gotUID = uint32(item.UID)
	case imapclient.FetchItemDataRFC822Size:
		w.gotSize = item.Size
	}
}

// before judges the answer when its literal starts: "" if it may be
// streamed, else what is wrong (the RFC822.SIZE, if it came first).
// go-imap hands a UID FETCH only answers whose UID came before the literal
// and is the one asked for; the check says so again rather than rely on it.
func (w *answerCheck) before() string {
	switch {
	case w.size < 0:
		return ""
	case w.gotUID != w.uid:
		return fmt.Sprintf("the answer is for UID %d", w.gotUID)
	case w.gotSize >= 0 && w.gotSize != w.size:
		return fmt.Sprintf("RFC822.SIZE %d for a message of %d", w.gotSize, w.size)
	}
	return ""
}

// after judges a part's answer once its literal was read, for a server
// that sends RFC822.SIZE after it.
func (w *answerCheck) after() string {
	switch {
	case w.size < 0:
		return ""
	case w.gotSize < 0:
		return "the answer has no RFC822.SIZE"
	case w.gotSize != w.size:
		return fmt.Sprintf("RFC822.SIZE %d for a message of %d", w.gotSize, w.size)
	}
	return ""
}

// mismatched handles an answer whose literal, just started, is not the
// message: it reads the answer to its end, then asks the server whether the
// message still exists. Gone: ErrNoSuchMessage. Still there: the server's
// sizes are inexact, and the message is fetched once more, expecting the
// size this answer had, so that what streams is the message, even if its
// size differs from the listing.
func (c *Conn) mismatched(ctx context.Context, s *fetchStream, bad string) (*fetchStream, error) {
	if err := s.drainLit(); err != nil {
		return nil, s.broken(err) // nothing more of the command may be read
	}
	err := s.cmd.Close()
	s.g.Stop()
	if err != nil {
		return nil, c.fail(s.op.String(), err)
	}
	if err := c.usable(s.op.String()); err != nil {
		return nil, err
	}
	exists, err := c.stillExists(ctx, s.op.uid)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("%w: UID %d: %s: %s, and the message is gone", ErrNoSuchMessage, s.op.uid, s.op, bad)
	}
	if s.check.retry || s.check.gotUID != s.check.uid {
		return nil, fmt.Errorf("%w: UID %d: %s: %s", ErrNoSuchMessage, s.op.uid, s.op, bad)
	}
	c.log.Warn("upstream answer differs from its listing, but the message exists: fetching it again",
		zap.Stringer("op", s.op), zap.String("problem", bad))
	want := s.check
	want.retry = true
	want.size = want.gotSize
	return c.startFetch(ctx, s.op, want)
}

// stillExists asks the server whether uid is still in the mailbox: NOOP
// first, which is when Courier reports an expunge it has held back, then
// UID SEARCH UID uid.
func (c *Conn) stillExists(ctx context.Context, uid uint32) (bool, error) {
	const op = "NOOP, UID SEARCH UID"
	g := c.guard(ctx, c.cfg.CommandTimeout)
	defer g.Stop()
	if err := c.client.Noop().Wait(); err != nil {
		return false, c.fail(op, err)
	}
	data, err := c.client.UIDSearch(&imap.SearchCriteria{UID: []imap.UIDSet{imap.UIDSetNum(imap.UID(uid))}}, nil).Wait()
	if err != nil {
		return false, c.fail(op, err)
	}
	for _, u := range data.AllUIDs() {
		if uint32(u) == uid {
			return true, nil
		}
	}
	return false, nil
}
