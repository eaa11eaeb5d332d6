package imapupstream

import (
	"context"
	"io"
	"slices"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"
)

// Sending the next message's UID FETCH before it is asked for.
//
// A POP3 client RETRs one message after another, and each RETR costs a
// round trip to the upstream, and the server's start on the message, before
// its first octet: about as long as streaming a 100 KB message.
// FetchAhead sends the command for the message expected next while the
// current one streams, so that its answer follows the current one on the
// wire and is arriving when it is asked for.
//
// At most one command is ahead, and only right behind the open reader (or
// alone): every other operation first closes the reader and then drains the
// command ahead (reads its answer to the end and discards it), so the
// answers are always taken in the order the commands went out. Draining
// costs reading the message, which is why callers only ask ahead for small
// ones.
//
// Servers may run pipelined commands side by side and interleave their
// answers (Dovecot does: the untagged FETCH of the command ahead can come
// before the completion of the one before it), while go-imap's reader stops
// at each literal until it has been read. So nothing here ever waits on one
// command while a later one may have a literal waiting: the command ahead
// goes out only once the current answer has started (if the current message
// turns out to be gone, nothing is ahead of it), and the completion of a
// command with one ahead of it is waited for only until the answer ahead
// has started, then collected later (laterCompletion).

// aheadFetch is a UID FETCH (BODY.PEEK[]) sent ahead, for one message or a
// batch of them, whose next message is not taken yet. A goroutine waits for
// that message of the answer, so that a stream can tell when it has started
// without waiting on go-imap itself.
//
// A batch is one command for several messages (UID FETCH u1,u2,... ): the
// server streams them back to back, as it does for UID FETCH 1:*, where
// pipelined one-message commands each cost it a start of its own after the
// previous one is out (Dovecot's, measured by popbench: 107 µs a message
// batched, 172 µs one command each). Once a message of the batch is read
// whole, the rest of the batch is the command ahead.
type aheadFetch struct {
	ctx   context.Context // of the call that sent it: bounds a drain from begin
	uids  []uint32        // the messages still to come, ascending; uids[0] is next
	cmd   *imapclient.FetchCommand
	ready chan struct{}                // closed once msg is set
	msg   *imapclient.FetchMessageData // the answer's next message; nil if it ended without
}

// sendAhead sends UID FETCH uids (UID BODY.PEEK[]) as the command ahead;
// uids are ascending.
func (c *Conn) sendAhead(ctx context.Context, uids []uint32) {
	var set imap.UIDSet
	for _, uid := range uids {
		set.AddNum(imap.UID(uid))
	}
	c.ahead = awaitNext(ctx, uids, c.client.Fetch(set, bodyPeek))
}

// awaitNext makes the command ahead of cmd, whose answer's next message is
// one of uids.
func awaitNext(ctx context.Context, uids []uint32, cmd *imapclient.FetchCommand) *aheadFetch {
	a := &aheadFetch{ctx: ctx, uids: uids, cmd: cmd, ready: make(chan struct{})}
	go func() {
		// Returns once go-imap hands the message over (its literal next)
		// or completes the command: the server's answer, or the
		// connection's end, always comes.
		a.msg = a.cmd.Next()
		close(a.ready)
	}()
	return a
}

// first waits for the answer's next message; the command is then the
// caller's alone.
func (a *aheadFetch) first() *imapclient.FetchMessageData {
	<-a.ready
	return a.msg
}

// FetchAhead is Fetch(ctx, m) that also sends UID FETCH next (UID
// BODY.PEEK[]) for the messages next lists (ascending UIDs after m.UID; 0s
// are left out), as soon as the answer for m has started: a Fetch (or
// FetchAhead) of next[0] then finds its answer under way, and of next[1]
// right behind it. If m itself came in a batch sent so with messages still
// to come, nothing more is sent: the rest of that batch is ahead. The
// command ahead sets no flag (BODY.PEEK); if it is not needed after all, the
// next operation on the Conn reads its answer and throws it away, so ask
// ahead only for messages small enough for that to be cheap. A message
// expunged before its command ahead was answered gives ErrNoSuchMessage when
// it is fetched, as with Fetch.
//
// While a command is ahead, the reader of uid ends with io.EOF once the
// whole literal has arrived and either the server has completed its command
// or the answer ahead has started (the completion may then only come after
// it, Dovecot's for one): that completion is collected later (a refusal then
// is logged, a broken connection fails the next call).
func (c *Conn) FetchAhead(ctx context.Context, m MessageMeta, next ...uint32) (_ io.ReadCloser, err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "fetch", time.Now(), &err)
	}
	uid := m.UID
	op := fetchOp{uid: uid, items: "BODY.PEEK[]"}
	c.closeReader()
	a := c.ahead
	if a != nil && a.uids[0] == uid {
		// Taken: its answer may be arriving already, so nothing here may
		// wait for an earlier completion (see finish).
		c.ahead = nil
		c.reapLater()
	} else {
		a = nil
		c.dropAhead()
		c.awaitLater()
	}
	if err := c.usable("UID FETCH"); err != nil {
		if a != nil {
			c.abandonFetch(a)
		}
		return nil, err
	}
	g := c.guard(ctx, c.cfg.CommandTimeout)
	var s *fetchStream
	if a != nil {
		s, err = c.awaitFetch(ctx, g, op, a.cmd, a, wantWhole(m))
	} else {
		s, err = c.awaitFetch(ctx, g, op, c.client.Fetch(imap.UIDSetNum(imap.UID(uid)), bodyPeek), nil, wantWhole(m))
	}
	if err != nil {
		return nil, err
	}
	if a != nil && len(a.uids) > 1 {
		// The rest of the batch follows this message on the wire.
		s.rest, s.restCtx = a.uids[1:], ctx
	} else if after := aheadUIDs(uid, next); len(after) > 0 {
		// Only now, with this message's answer under way: had the
		// command ahead gone out before, and this message turned out to
		// be gone, the server could answer the command ahead first
		// (Dovecot runs pipelined FETCHes side by side), and go-imap's
		// reader would wait for us to read that literal while we waited
		// for this command's end.
		c.sendAhead(ctx, after)
	}
	c.reader = s
	return s, nil
}

// aheadUIDs is next without zeros and without what does not come after uid
// in ascending order.
func aheadUIDs(uid uint32, next []uint32) []uint32 {
	out := make([]uint32, 0, len(next))
	last := uid
	for _, u := range next {
		if u > last {
			out = append(out, u)
			last = u
		}
	}
	return out
}

// dropAhead ends the command ahead, if any. On a live connection its answer
// is read to the end and discarded, bounded by CommandTimeout and the
// context of the call that sent it (a failure there ends the connection,
// which the caller then finds); on an ended one it only lets go-imap's
// reader go.
func (c *Conn) dropAhead() {
	if a := c.ahead; a != nil {
		c.drainAhead(a.ctx, c.cfg.CommandTimeout)
	}
}

// drainAhead is dropAhead bounded by ctx and d.
func (c *Conn) drainAhead(ctx context.Context, d time.Duration) {
	a := c.ahead
	if a == nil {
		return
	}
	c.ahead = nil
	if c.deadCause() != nil {
		c.abandonFetch(a)
		return
	}
	// The stream of the next message gets no rest (s.rest): its Close
	// then drains the rest of a batch too, with the command's completion.
	s, err := c.awaitFetch(ctx, c.guard(ctx, d), fetchOp{uid: a.uids[0], items: "BODY.PEEK[], sent ahead"}, a.cmd, a, wantAny(a.uids[0]))
	if err != nil {
		return // gone (ErrNoSuchMessage), or the connection ended
	}
	s.Close()
}

// abandonFetch gives up a command sent ahead whose answer nobody will read,
// on a connection that has been ended. go-imap's reader may have handed out
// the answer's literal and wait for it to be read: reading it now ends at
// once (on what is left in the buffer, then on the closed connection), which
// lets the reader go on and end. Nothing else of the command is touched:
// after a failed literal go-imap would re-read it (to discard it) while its
// own goroutine goes on with the same buffer (see fetchStream.release).
func (c *Conn) abandonFetch(a *aheadFetch) {
	msg := a.first()
	if msg == nil {
		return
	}
	for item := msg.Next(); item != nil; item = msg.Next() {
		if body, ok := item.(imapclient.FetchItemDataBodySection); ok && body.Literal != nil {
			io.Copy(io.Discard, body.Literal)
			return
		}
	}
}

// laterCompletion is the completion of a UID FETCH whose message was read
// whole while a command had been sent ahead (see fetchStream.finish): a
// goroutine waits for it, as the server may send it only after the answer
// to the command ahead, which is read after.
type laterCompletion struct {
	op   fetchOp
	done chan struct{}
	err  error // set before done is closed
}

// completion starts waiting for cmd's completion, in a goroutine; the
// caller waits on it or leaves it to reapLater and awaitLater (c.later).
func (c *Conn) completion(op fetchOp, cmd *imapclient.FetchCommand) *laterCompletion {
	lc := &laterCompletion{op: op, done: make(chan struct{})}
	go func() {
		// Returns when the server completes the command or, the
		// connection gone, go-imap's reader completes it as it ends.
		lc.err = cmd.Close()
		close(lc.done)
	}()
	return lc
}

// reapLater collects the completions that have come, in order, without
// waiting.
func (c *Conn) reapLater() {
	n := 0
	for _, lc := range c.later {
		select {
		case <-lc.done:
			c.collected(lc)
			n++
			continue
		default:
		}
		break
	}
	c.later = slices.Delete(c.later, 0, n)
}

// awaitLater waits for every completion still to come. Only safe when no
// answer of ours can be waiting to be read: no reader open, no command ahead.
func (c *Conn) awaitLater() {
	for _, lc := range c.later {
		<-lc.done
		c.collected(lc)
	}
	clear(c.later)
	c.later = c.later[:0]
}

// collected takes note of a completion that came late: the message had been
// read whole and handed on, so a refusal now can only be logged; a failed
// connection ends the Conn, which the next call reports.
func (c *Conn) collected(lc *laterCompletion) {
	switch {
	case lc.err == nil:
	case isConnError(lc.err):
		c.kill(lc.err)
	default:
		c.log.Warn("upstream refused a fetch after sending the whole message",
			zap.Stringer("op", lc.op), zap.Error(lc.err))
	}
}
