package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

// session is one POP3 session on one upstream connection. The pop3 server
// calls it from the connection's goroutine only.
type session struct {
	id          string
	opts        *Options // as they were at login
	conn        *imapupstream.Conn
	log         *zap.Logger
	key         uidmap.Key // the maildrop view: the user's, or a device's (device)
	device      bool
	lease       *uidmap.Lease // the maildrop lock (policy.lock exclusive), nil without
	uidValidity uint32
	uids        []uint32 // upstream UID of message n at uids[n-1]
	messages    []pop3.Message
	outside     int // messages the window left out, for the login's log
	// seen holds RETRieved messages whose \Seen is not yet stored: it is
	// written in one command at UPDATE or when the session ends, not one
	// round trip per RETR.
	seen      map[uint32]struct{}
	retrieved int
	// drain is the context message reads run under while seen holds
	// messages (see readContext); drainOf is the context it was made from.
	drain, drainOf context.Context
	closed         bool
	leaseLost      bool // the loss of the lease was logged
	released       bool // Release ran: UPDATE is done, nothing more is written
	// checked is set once checkMailbox has run; checkErr is its verdict.
	checked  bool
	checkErr error
}

func (s *session) Messages() []pop3.Message { return s.messages }

// meta is message n as the upstream listed it: what its answers must match.
func (s *session) meta(n int) imapupstream.MessageMeta {
	return imapupstream.MessageMeta{UID: s.uids[n-1], Size: s.messages[n-1].Size}
}

func (s *session) Retrieve(ctx context.Context, n int) (io.ReadCloser, error) {
	if err := s.beforeRead(ctx, n); err != nil {
		return nil, err
	}
	r, err := s.conn.Fetch(s.readContext(ctx), s.meta(n))
	if err != nil {
		return nil, sessionError(err)
	}
	return sessionReader{r}, nil
}

// aheadMaxSize bounds the messages fetched ahead (pop3.RetrieveAheader),
// all of one batch together: a guess that turns out wrong (the client sends
// DELE and QUIT, TOP, or RETRs another message) costs reading them from the
// upstream to throw them away before the next command, a few milliseconds
// at 1 MiB on a local network. Bigger messages stream long enough for their
// round trip not to matter. aheadMaxBatch bounds the messages of a batch.
const (
	aheadMaxSize  = 1 << 20
	aheadMaxBatch = 16
)

// RetrieveAhead is Retrieve that has the upstream send the messages from
// next on too, right behind message n, in one command (as many as
// aheadMaxSize and aheadMaxBatch allow): the client most likely RETRs them
// next, in order.
func (s *session) RetrieveAhead(ctx context.Context, n, next int) (io.ReadCloser, error) {
	if err := s.beforeRead(ctx, n); err != nil {
		return nil, err
	}
	r, err := s.conn.FetchAhead(s.readContext(ctx), s.meta(n), s.aheadUIDs(next)...)
	if err != nil {
		return nil, sessionError(err)
	}
	return sessionReader{r}, nil
}

// aheadUIDs are the UIDs of the batch fetched ahead from message next on
// (none for 0).
func (s *session) aheadUIDs(next int) []uint32 {
	if next <= 0 {
		return nil
	}
	var uids []uint32
	var total int64
	for i := next; i <= len(s.messages) && len(uids) < aheadMaxBatch; i++ {
		total += s.messages[i-1].Size
		if total > aheadMaxSize {
			break
		}
		uids = append(uids, s.uids[i-1])
	}
	return uids
}

func (s *session) Top(ctx context.Context, n int, lines int) (io.ReadCloser, error) {
	if err := s.checkLease(); err != nil {
		return nil, err
	}
	r, err := s.conn.Top(s.readContext(ctx), s.meta(n), lines)
	if err != nil {
		return nil, sessionError(err)
	}
	return sessionReader{r}, nil
}

// sessionReader reports the failures of a message stream as sessionError
// does those of the command: if the upstream connection died before the
// first octet went out (a short message whose FETCH ended in BYE), the
// client gets -ERR [SYS/TEMP] and the connection closes, as it would later.
type sessionReader struct{ io.ReadCloser }

func (r sessionReader) Read(p []byte) (int, error) {
	n, err := r.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = sessionError(err)
	}
	return n, err
}

// checkMailbox makes sure, once, before the session writes anything
// upstream by UID (\Seen, deletions, the hidden keyword), that its UIDs
// still name its messages: it SELECTs the mailbox again and compares
// UIDVALIDITY with the one of the login. After a change every UID is
// suspect: Dovecot, for one, still applies a UID STORE to its old view
// before it ends the session with BYE, and a mailbox whose UIDs were
// reassigned would have other messages flagged or expunged. Once the check
// has failed, nothing more is written.
func (s *session) checkMailbox(ctx context.Context) error {
	if !s.checked {
		s.checked = true
		mbox, err := s.conn.Select(ctx)
		if err == nil && mbox.UIDValidity != s.uidValidity {
			err = fmt.Errorf("%w: %d at login, now %d", imapupstream.ErrMailboxChanged, s.uidValidity, mbox.UIDValidity)
		}
		s.checkErr = err
	}
	return s.checkErr
}

func (s *session) Update(ctx context.Context, deleted []int) error {
	start := time.Now()
	p := s.opts.Policy
	ctx, done, err := s.writeContext(ctx, len(deleted) > 0 && s.needsSerialUpdate())
	if err != nil {
		return err
	}
	defer done()
	// \Seen first, so that a message moved to Trash arrives there read.
	if err := s.flushSeen(ctx); err != nil {
		s.log.Warn("storing \\Seen failed", zap.Error(err))
		return s.writeFailed(err)
	}
	uids := make([]uint32, len(deleted))
	for i, n := range deleted {
		uids[i] = s.uids[n-1]
	}
	if len(uids) > 0 && p.OnDele != OnDeleKeep {
		if err := s.checkMailbox(ctx); err != nil {
			s.log.Warn("update failed", zap.Error(err), zap.Int("deleted", len(uids)))
			return s.writeFailed(err)
		}
	}
	if len(uids) > 0 {
		var err error
		if p.OnDele == OnDeleHide {
			err = s.hide(ctx, uids)
		} else {
			err = p.deleteUpstream(ctx, s.conn, s.log, uids)
		}
		if err != nil {
			s.log.Warn("update failed", zap.Error(err), zap.Int("deleted", len(uids)))
			return s.writeFailed(err)
		}
	}
	s.log.Info("update", zap.String("on_dele", string(p.OnDele)), zap.Int("deleted", len(uids)),
		zap.Int("retrieved", s.retrieved), zap.Duration("took", time.Since(start)))
	return nil
}

// updateLockWait bounds the wait for another session's UPDATE of the same
// maildrop (see needsSerialUpdate); updateLockPoll is how often the lock is
// tried meanwhile.
const (
	updateLockWait = 30 * time.Second
	updateLockPoll = 50 * time.Millisecond
)

// needsSerialUpdate reports whether this session's UPDATE must not run
// beside another session's of the same maildrop: without UIDPLUS a deletion
// is a plain EXPUNGE with other messages' \Deleted shielded around it, and
// two sessions shielding at once undo each other's work. Under
// policy.lock exclusive the session's own lock already excludes that.
func (s *session) needsSerialUpdate() bool {
	if s.lease != nil || s.conn.Caps().UIDPlus {
		return false
	}
	switch s.opts.Policy.OnDele {
	case OnDeleExpunge:
		return true
	case OnDeleTrash:
		return !s.conn.Caps().Move
	}
	return false
}

// writeContext is the context for UPDATE's writes, and what ends it. With a
// maildrop lock it is bound to the lock's lease, which must still be held;
// with serial set (policy.lock none) it takes the maildrop lock for the
// UPDATE alone, waiting for another session's UPDATE to end.
func (s *session) writeContext(ctx context.Context, serial bool) (context.Context, func(), error) {
	if s.lease != nil {
		if err := s.checkLease(); err != nil {
			return nil, nil, err
		}
		wctx, done := s.lease.Bound(ctx)
		return wctx, done, nil
	}
	if !serial {
		return ctx, func() {}, nil
	}
	lease, err := s.waitLock(ctx)
	if err != nil {
		s.log.Warn("update failed: the maildrop lock for UPDATE", zap.Error(err))
		return nil, nil, clientError(err)
	}
	wctx, done := lease.Bound(ctx)
	return wctx, func() {
		done()
		lease.Release()
	}, nil
}

// waitLock takes the maildrop lock, retrying while another session holds
// it, for at most updateLockWait.
func (s *session) waitLock(ctx context.Context) (*uidmap.Lease, error) {
	ctx, cancel := context.WithTimeout(ctx, updateLockWait)
	defer cancel()
	for {
		lease, err := s.opts.Map.Store().Lock(ctx, s.key, s.id+" UPDATE")
		if !errors.Is(err, uidmap.ErrLocked) {
			return lease, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("another session's UPDATE of the maildrop: %w", err)
		case <-time.After(updateLockPoll):
		}
	}
}

// checkLease fails once the session's maildrop lock is lost: another
// session may hold the maildrop now, so this one writes nothing more and
// ends.
func (s *session) checkLease() error {
	if s.lease == nil {
		return nil
	}
	lost := s.lease.Lost()
	if lost == nil {
		return nil
	}
	if !s.leaseLost {
		s.leaseLost = true
		s.log.Warn("maildrop lock lost: the session ends without writing", zap.Error(lost))
		if s.opts.Observer != nil {
			s.opts.Observer.LeaseLost()
		}
	}
	return &pop3.Error{Code: pop3.CodeSysTemp, Message: "maildrop lock lost, nothing was changed; please reconnect",
		Close: true, Err: lost}
}

// writeFailed is what the client is told of a failed write: a lock lost
// on the way ends the session as checkLease does.
func (s *session) writeFailed(err error) error {
	if lerr := s.checkLease(); lerr != nil {
		return lerr
	}
	return clientError(err)
}

// Release gives the maildrop lock up once Update has succeeded
// (pop3.Releaser): UPDATE's writes are confirmed by then, and the client
// gets its +OK without waiting for Close's LOGOUT. Close releases nothing
// more.
func (s *session) Release() {
	s.released = true
	if s.lease != nil {
		s.lease.Release()
		s.lease = nil
	}
}

func (s *session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	// A session that ends without QUIT changes nothing but \Seen, which
	// Dovecot's own POP3 writes in that case too: the client did get those
	// messages whole. Not once the maildrop lock is lost.
	if len(s.seen) > 0 && !s.released && s.checkLease() == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if s.lease != nil {
			var done func()
			ctx, done = s.lease.Bound(ctx)
			defer done()
		}
		if err := s.flushSeen(ctx); err != nil {
			s.log.Debug("storing \\Seen at close failed", zap.Error(err))
		}
		cancel()
	}
	err := s.conn.Close()
	if s.lease != nil {
		s.lease.Release()
	}
	return err
}

// hide records the messages as hidden in uidmap (which is what later
// sessions obey), then sets HiddenKeyword upstream where the mailbox allows
// it, as a copy that survives the loss of the store. A device's marks are
// its own: upstream they would hide the messages from every device.
func (s *session) hide(ctx context.Context, uids []uint32) error {
	if err := s.opts.Map.SetHidden(ctx, s.key, s.uidValidity, uids, true); err != nil {
		return err
	}
	if s.device {
		return nil
	}
	stored, err := s.conn.AddKeyword(ctx, uids, HiddenKeyword)
	if err != nil {
		// The hide itself is done: only the upstream copy of the mark is
		// missing, so the client is not told the UPDATE failed.
		s.log.Warn("hidden in the store, but the upstream keyword failed", zap.Error(err))
	} else if !stored {
		s.log.Debug("mailbox cannot store " + HiddenKeyword + ": the hidden mark lives in the store only")
	}
	return nil
}

// adoptHiddenKeyword takes over the hidden marks kept upstream as
// HiddenKeyword when the store knows nothing of this maildrop.
func (s *session) adoptHiddenKeyword(ctx context.Context, uidValidity uint32, metas []imapupstream.MessageMeta, view *uidmap.View) error {
	marked, err := s.conn.SearchKeyword(ctx, HiddenKeyword)
	if err != nil || len(marked) == 0 {
		return err
	}
	set := make(map[uint32]bool, len(marked))
	for _, uid := range marked {
		set[uid] = true
	}
	// Only messages of the snapshot: one that arrived since is the next
	// session's business.
	var hide []uint32
	for i, m := range metas {
		if set[m.UID] {
			view.Hidden[i] = true
			hide = append(hide, m.UID)
		}
	}
	s.log.Info("hidden marks restored from the upstream keyword", zap.Int("hidden", len(hide)))
	return s.opts.Map.SetHidden(ctx, s.key, uidValidity, hide, true)
}
