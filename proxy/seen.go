package proxy

import (
	"context"
	"slices"
	"time"

	"go.uber.org/zap"
)

// \Seen under policy.mark_seen. A RETRieved message's \Seen is written at
// UPDATE, or at the session's end without QUIT, as Dovecot's own POP3 does:
// the client did get those messages whole. That write needs the upstream
// connection usable, and a client that vanishes in the middle of a RETR
// leaves it in the middle of a FETCH literal; ending that connection (what
// a session with nothing left to write does, to let go of the maildrop at
// once) would lose the \Seen of every message retrieved before. So:
//
//   - before a message too big to be fetched ahead (aheadMaxSize) is
//     fetched, the \Seen retrieved so far is written: one round trip,
//     small beside streaming more than a megabyte;
//   - while some \Seen is still to be written, messages are read under a
//     context that outlives the client by seenDrainWait (readContext), so
//     that the rest of the message being sent (at most aheadMaxSize, or
//     the one just flushed for) is read and thrown away and the connection
//     stays usable for the write at Close.

// seenDrainWait bounds how long a session whose client left in the middle
// of a message goes on reading that message from the upstream, for the
// \Seen of the messages it did retrieve. A megabyte takes milliseconds on
// a local network; past this the connection ends and the \Seen is lost.
const seenDrainWait = 5 * time.Second

func (s *session) Retrieved(_ context.Context, n int) {
	s.retrieved++
	if s.opts.Policy.MarkSeen {
		s.seen[s.uids[n-1]] = struct{}{}
	}
}

// beforeRead is what a RETR does before its FETCH: the maildrop lock must
// still be held, and before a message too big to be fetched ahead the \Seen
// retrieved so far is written (see above). A failed write is not the RETR's
// failure: Close tries again.
func (s *session) beforeRead(ctx context.Context, n int) error {
	if err := s.checkLease(); err != nil {
		return err
	}
	if len(s.seen) == 0 || s.messages[n-1].Size <= aheadMaxSize {
		return nil
	}
	wctx := ctx
	if s.lease != nil {
		var done func()
		wctx, done = s.lease.Bound(ctx)
		defer done()
	}
	if err := s.flushSeen(wctx); err != nil {
		if lerr := s.checkLease(); lerr != nil {
			return lerr
		}
		// The FETCH finds a broken connection itself.
		s.log.Debug("storing \\Seen before a big message failed", zap.Error(err))
	}
	return nil
}

// readContext is the context a message is read under: ctx itself while no
// \Seen waits to be written, else one that ends seenDrainWait after ctx
// does, made once per session (ctx is the POP3 connection's, the same for
// every call).
func (s *session) readContext(ctx context.Context) context.Context {
	if len(s.seen) == 0 {
		return ctx
	}
	if s.drainOf != ctx {
		drain, cancel := context.WithCancel(context.WithoutCancel(ctx))
		context.AfterFunc(ctx, func() { time.AfterFunc(seenDrainWait, cancel) })
		s.drain, s.drainOf = drain, ctx
	}
	return s.drain
}

// flushSeen stores \Seen on the messages retrieved so far.
func (s *session) flushSeen(ctx context.Context) error {
	if len(s.seen) == 0 {
		return nil
	}
	if err := s.checkMailbox(ctx); err != nil {
		return err
	}
	uids := make([]uint32, 0, len(s.seen))
	for uid := range s.seen {
		uids = append(uids, uid)
	}
	slices.Sort(uids)
	if err := s.conn.MarkSeen(ctx, uids); err != nil {
		return err
	}
	clear(s.seen)
	return nil
}
