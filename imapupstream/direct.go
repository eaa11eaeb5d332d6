package imapupstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream/internal/lean"
	"github.com/popbridge/popbridge/imapupstream/internal/watchdog"
	"github.com/popbridge/popbridge/internal/imapwire"
)

// Reading whole messages without go-imap.
//
// Fetch and FetchAhead send their UID FETCH (UID BODY.PEEK[]) commands
// themselves and read the answers on the caller's goroutine, with the
// connection taken from go-imap's reader (lean.Take) until another
// operation needs go-imap again (begin). Through go-imap, every message
// was handed from its reading goroutine to ours and back, a wake-up of
// another thread each time, several a message: for a client RETRing one
// message after another that cost more than the octets themselves
// (popbench's retr). Read here, in order, a whole batch of messages
// fetched ahead streams with no hand-off at all, and the rules go-imap's
// reader imposed (never wait for a command's end while a later answer may
// have a literal waiting) are moot: whatever comes next is read next.
//
// Everything that is not an answer to these commands (EXISTS, EXPUNGE,
// FLAGS of other messages, BYE) is passed on to go-imap, in order, which
// reads it once it has the connection back.

// directState is the connection while it is taken.
type directState struct {
	d    *lean.Direct
	ctx  context.Context // of the call that sent the last command: bounds a drain
	cmds []*directCmd    // sent and not completed, in order
	// head is the answer whose literal is next on the wire, not taken
	// yet; headCmd is its command.
	head    *bodyHead
	headCmd *directCmd
	// ended are completed commands that left messages unanswered: a
	// Fetch of one of them learns why (err) or that it is gone.
	ended []*directCmd
}

// directCmd is one UID FETCH (UID BODY.PEEK[]) sent by us.
type directCmd struct {
	tag  string
	set  string   // the UIDs asked for, as sent
	uids []uint32 // not answered yet, ascending
	err  error    // the completion's NO or BAD
	done bool
	// late: the reader of its last message has ended before the
	// completion came, so a refusal can only be logged.
	late bool
}

func (cmd *directCmd) String() string {
	return "UID FETCH " + cmd.set + " (UID BODY.PEEK[])"
}

func uidList(uids []uint32) string {
	var set imap.UIDSet
	for _, u := range uids {
		set.AddNum(imap.UID(u))
	}
	return set.String()
}

// takeDirect takes the connection from go-imap, bounded by g.
func (c *Conn) takeDirect(ctx context.Context, g *watchdog.Guard) error {
	if c.direct != nil {
		return nil
	}
	g.Resume()
	d, err := c.lean.Take()
	g.Pause()
	if err != nil {
		c.kill(err)
		return c.fail("UID FETCH", err)
	}
	c.direct = &directState{d: d, ctx: ctx}
	return nil
}

// releaseDirect gives the connection back to go-imap: on a live
// connection after every answer still to come was read and thrown away,
// bounded by the context of the call that sent the last command and by
// CommandTimeout (a failure there ends the connection, which the caller
// then finds).
func (c *Conn) releaseDirect() { c.releaseDirectWithin(c.cfg.CommandTimeout) }

// releaseDirectWithin is releaseDirect with the drain bounded by d.
func (c *Conn) releaseDirectWithin(d time.Duration) {
	ds := c.direct
	if ds == nil {
		return
	}
	if c.deadCause() == nil {
		g := c.guard(ds.ctx, d)
		err := c.drainDirect(g)
		g.Stop()
		if err != nil {
			c.kill(err)
		}
	}
	c.direct = nil
	ds.d.Release()
}

// drainDirect reads every answer still to come and throws it away.
func (c *Conn) drainDirect(g *watchdog.Guard) error {
	ds := c.direct
	for ds.head != nil || len(ds.cmds) > 0 {
		if ds.head != nil {
			if err := c.skipHead(g); err != nil {
				return err
			}
			continue
		}
		if err := c.readResponse(g); err != nil {
			return err
		}
	}
	ds.ended = nil
	return nil
}

// sendDirect sends UID FETCH uids (UID BODY.PEEK[]).
func (c *Conn) sendDirect(ctx context.Context, uids []uint32) error {
	ds := c.direct
	cmd := &directCmd{tag: ds.d.NextTag(), set: uidList(uids), uids: slices.Clone(uids)}
	line := cmd.tag + " " + cmd.String() + "\r\n"
	if _, err := ds.d.Write([]byte(line)); err != nil {
		c.kill(err)
		return c.fail(cmd.String(), err)
	}
	ds.cmds = append(ds.cmds, cmd)
	ds.ctx = ctx
	return nil
}

// pending returns the command that asked for uid and has not answered it,
// or nil.
func (ds *directState) pending(uid uint32) *directCmd {
	if ds.head != nil && ds.head.uid == uid {
		return ds.headCmd
	}
	for _, cmd := range ds.cmds {
		if _, ok := slices.BinarySearch(cmd.uids, uid); ok {
			return cmd
		}
	}
	return nil
}

// readResponse reads one response: a completion of ours, the start of an answer of
// ours (which becomes ds.head), or anything else, which is passed on to
// go-imap whole. ds.head must be nil.
func (c *Conn) readResponse(g *watchdog.Guard) error {
	ds := c.direct
	line, err := c.directLine(g)
	if err != nil {
		return err
	}
	if line[0] != '*' {
		for i, cmd := range ds.cmds {
			rest, ok := bytes.CutPrefix(line, []byte(cmd.tag+" "))
			if !ok {
				continue
			}
			cmd.err, cmd.done = parseStatus(rest), true
			ds.cmds = slices.Delete(ds.cmds, i, i+1)
			if len(cmd.uids) > 0 {
				ds.ended = append(ds.ended, cmd)
			}
			if cmd.err != nil && cmd.late {
				c.log.Warn("upstream refused a fetch after sending the whole message",
					zap.Stringer("op", cmd), zap.Error(cmd.err))
			}
			return nil
		}
		// Not ours, and go-imap has no command in flight either.
		err := fmt.Errorf("unexpected line from the server: %.80q", line)
		c.kill(err)
		return c.fail("UID FETCH", err)
	}
	if h, ok := parseBodyHead(line); ok {
		for _, cmd := range ds.cmds {
			i, found := slices.BinarySearch(cmd.uids, h.uid)
			if !found {
				continue
			}
			// What the server skipped before it is gone.
			cmd.uids = cmd.uids[i+1:]
			ds.head, ds.headCmd = &h, cmd
			return nil
		}
	}
	// Not ours: to go-imap, with the rest of its response.
	for {
		ds.d.Pass(line)
		n, ok := imapwire.LiteralSize(line)
		if !ok {
			return nil
		}
		g.Resume()
		err := ds.d.PassLiteral(n)
		g.Pause()
		if err != nil {
			c.kill(err)
			return c.fail("UID FETCH", err)
		}
		if line, err = c.directLine(g); err != nil {
			return err
		}
	}
}

// directLine reads a line under g; a failure ends the connection.
func (c *Conn) directLine(g *watchdog.Guard) ([]byte, error) {
	g.Resume()
	line, err := c.direct.d.Line()
	g.Pause()
	if err != nil {
		c.kill(err)
		return nil, c.fail("UID FETCH", err)
	}
	return line, nil
}

// skipHead reads the answer of ds.head to its end and throws it away.
func (c *Conn) skipHead(g *watchdog.Guard) error {
	ds := c.direct
	h := ds.head
	ds.head, ds.headCmd = nil, nil
	if h.inLine {
		return nil
	}
	if err := c.skipLiteral(g, h.size); err != nil {
		return err
	}
	return c.endOfAnswer(g)
}

// skipLiteral reads n octets of a literal and throws them away (through
// io.Discard's pooled buffer: a wrong guess ahead costs no allocation).
func (c *Conn) skipLiteral(g *watchdog.Guard, n int64) error {
	if _, err := io.CopyN(io.Discard, guardedReader{g, c.direct.d}, n); err != nil {
		c.kill(err)
		return c.fail("UID FETCH", err)
	}
	return nil
}

// guardedReader runs g during each read only: the server is waited on
// then, and every read that returns is progress.
type guardedReader struct {
	g *watchdog.Guard
	r io.Reader
}

func (gr guardedReader) Read(b []byte) (int, error) {
	gr.g.Resume()
	n, err := gr.r.Read(b)
	gr.g.Pause()
	return n, err
}

// endOfAnswer reads the rest of an answer after its body's literal: more
// items (literals of them skipped) and the closing parenthesis.
func (c *Conn) endOfAnswer(g *watchdog.Guard) error {
	for {
		line, err := c.directLine(g)
		if err != nil {
			return err
		}
		n, ok := imapwire.LiteralSize(line)
		if !ok {
			return nil
		}
		if err := c.skipLiteral(g, n); err != nil {
			return err
		}
	}
}

// awaitHead reads on until the answer for uid starts (it is then ds.head),
// or until it is clear that none will come: ErrNoSuchMessage, or the
// refusal of the command that asked for it.
func (c *Conn) awaitHead(g *watchdog.Guard, uid uint32) error {
	ds := c.direct
	for {
		if h := ds.head; h != nil {
			switch {
			case h.uid == uid:
				return nil
			case h.uid < uid:
				// Asked for ahead, and the client went on past it.
				if err := c.skipHead(g); err != nil {
					return err
				}
				continue
			}
			return fmt.Errorf("%w: UID %d (the server answered for UID %d after it)", ErrNoSuchMessage, uid, h.uid)
		}
		if ds.pending(uid) == nil {
			for _, cmd := range ds.ended {
				if cmd.err != nil && slices.Contains(cmd.uids, uid) {
					return c.fail(cmd.String(), cmd.err)
				}
			}
			return fmt.Errorf("%w: UID %d (UID FETCH answered without it)", ErrNoSuchMessage, uid)
		}
		if err := c.readResponse(g); err != nil {
			return err
		}
	}
}

// fetchDirect is Fetch and FetchAhead: it streams m, sending UID FETCH
// for it unless a command sent earlier asked for it, and sends UID FETCH
// next once m's answer has started, when the messages asked for run out
// with m.
func (c *Conn) fetchDirect(ctx context.Context, m MessageMeta, want answerCheck, next []uint32) (io.ReadCloser, error) {
	g := c.guard(ctx, c.cfg.CommandTimeout)
	if err := c.takeDirect(ctx, g); err != nil {
		g.Stop()
		return nil, err
	}
	ds := c.direct
	ds.ctx = ctx
	uid := m.UID
	send := ds.pending(uid) == nil
	if send {
		// Not asked for (or the guess was wrong): what is still to come
		// is read and thrown away first. m gets a command of its own, so
		// that its reader ends only with that command's completion (a
		// server that finds the mailbox changed under it, Dovecot after
		// a UIDVALIDITY reset, sends the message and then BYE instead of
		// OK): only messages asked for ahead end before theirs.
		if err := c.drainDirect(g); err != nil {
			g.Stop()
			return nil, err
		}
		if err := c.sendDirect(ctx, []uint32{uid}); err != nil {
			g.Stop()
			return nil, err
		}
	}
	if err := c.awaitHead(g, uid); err != nil {
		g.Stop()
		return nil, err
	}
	askAhead := send || ds.lastAsked() == uid
	h := ds.head
	ds.head = nil
	s := &directStream{cmd: ds.headCmd, uid: uid, size: h.size, quoted: h.quoted, inLine: h.inLine}
	s.litStream = litStream{c: c, g: g, src: s, remaining: h.size}
	ds.headCmd = nil
	if h.size < 0 {
		s.release()
		return nil, fmt.Errorf("%w: UID %d (BODY[] NIL)", ErrNoSuchMessage, uid)
	}
	if want.size >= 0 && h.size != want.size {
		return c.mismatchedDirect(ctx, s, want)
	}
	if after := aheadUIDs(uid, next); len(after) > 0 && askAhead {
		// The batch behind m, once m's answer has started and is m's:
		// sent any earlier, Dovecot runs it beside m's command, and a BYE
		// that would have ended m's comes only after the batch (see
		// above).
		if err := c.sendDirect(ctx, after); err != nil {
			s.release()
			return nil, err
		}
	}
	c.reader = s
	return s, nil
}

// lastAsked is the last UID asked for and not answered yet, or 0.
func (ds *directState) lastAsked() uint32 {
	for i := len(ds.cmds) - 1; i >= 0; i-- {
		if u := ds.cmds[i].uids; len(u) > 0 {
			return u[len(u)-1]
		}
	}
	if ds.head != nil {
		return ds.head.uid
	}
	return 0
}

// mismatchedDirect handles an answer whose literal is not of the size
// listed (see verify.go): it reads it to its end and asks the server
// whether the message still exists; if it does, the message is fetched
// once more, expecting this answer's size.
func (c *Conn) mismatchedDirect(ctx context.Context, s *directStream, want answerCheck) (io.ReadCloser, error) {
	bad := fmt.Sprintf("%d octets sent for a message of %d", s.size, want.size)
	if _, err := io.Copy(io.Discard, s); err != nil {
		return nil, err
	}
	op := fmt.Sprintf("UID FETCH %d (BODY.PEEK[])", s.uid)
	c.releaseDirect()
	if err := c.usable(op); err != nil {
		return nil, err
	}
	exists, err := c.stillExists(ctx, s.uid)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("%w: UID %d: %s: %s, and the message is gone", ErrNoSuchMessage, s.uid, op, bad)
	}
	if want.retry {
		return nil, fmt.Errorf("%w: UID %d: %s: %s", ErrNoSuchMessage, s.uid, op, bad)
	}
	c.log.Warn("upstream answer differs from its listing, but the message exists: fetching it again",
		zap.String("op", op), zap.String("problem", bad))
	want.retry = true
	want.size = s.size
	return c.fetchDirect(ctx, MessageMeta{UID: s.uid, Size: s.size}, want, nil)
}

// directStream reads one message's literal off the taken connection.
type directStream struct {
	cmd    *directCmd // the command it answers
	uid    uint32
	size   int64
	quoted []byte // the body, sent as a quoted string
	inLine bool   // the answer ended on its first line
	litStream
}

func (s *directStream) readLit(p []byte) (int, error) {
	if s.quoted != nil {
		return copy(p, s.quoted[s.size-s.remaining:]), nil
	}
	d := s.c.direct.d
	s.g.Resume()
	defer s.g.Pause()
	if int64(len(p)) == s.remaining {
		return d.ReadLast(p)
	}
	return d.Read(p)
}

// finish reads the rest of the answer after the literal and, if this was
// the last message its command asked for, reads on to the command's
// completion, unless an answer to a later command comes first (its
// completion is then read later, see readResponse). io.EOF means all went well.
func (s *directStream) finish() error {
	c := s.c
	defer s.release()
	if !s.inLine {
		if err := c.endOfAnswer(s.g); err != nil {
			return s.failed(err)
		}
	}
	ds := c.direct
	for len(s.cmd.uids) == 0 && !s.cmd.done && ds.head == nil {
		if err := c.readResponse(s.g); err != nil {
			return s.failed(err)
		}
	}
	if s.cmd.done && s.cmd.err != nil && len(s.cmd.uids) == 0 {
		// The octets went out already, but not the end of the answer:
		// the caller fails it instead of completing it.
		return s.failed(c.fail(s.cmd.String(), s.cmd.err))
	}
	if len(s.cmd.uids) == 0 && !s.cmd.done {
		s.cmd.late = true
	}
	if ds.head == nil && len(ds.cmds) == 0 {
		ds.d.Shrink()
	}
	return io.EOF
}

// failed reports a stream's failure to the observer and returns it.
func (s *directStream) failed(err error) error {
	if o := s.c.cfg.Observer; o != nil {
		o.StreamFailed(err)
	}
	return err
}

// broken ends the connection after a failed read and returns the error to
// report.
func (s *directStream) broken(cause error) error {
	s.c.kill(cause)
	s.release()
	return s.failed(fmt.Errorf("%w: UID FETCH %d (BODY.PEEK[]): reading the message: %w", ErrUnavailable, s.uid, s.c.deadCause()))
}

// release ends the stream's hold on the Conn.
func (s *directStream) release() { s.letGo(s) }
