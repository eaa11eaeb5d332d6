package proxy

import (
	"context"
	"fmt"
	"io"
	"slices"
	"time"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

// session is one POP3 session on one upstream connection. The pop3 server
// calls it from the connection's goroutine only.
type session struct {
	opts        *Options // as they were at login
	conn        *imapupstream.Conn
	log         *zap.Logger
	key         uidmap.Key
	release     func()
	uidValidity uint32
	uids        []uint32 // upstream UID of message n at uids[n-1]
	messages    []pop3.Message
	// seen holds RETRieved messages whose \Seen is not yet stored: it is
	// written in one command at UPDATE or when the session ends, not one
	// round trip per RETR.
	seen      map[uint32]struct{}
	retrieved int
	closed    bool
	// checked is set once checkMailbox has run; checkErr is its verdict.
	checked  bool
	checkErr error
}

func (s *session) Messages() []pop3.Message { return s.messages }

func (s *session) Retrieve(ctx context.Context, n int) (io.ReadCloser, error) {
	r, err := s.conn.Fetch(ctx, s.uids[n-1])
	if err != nil {
		return nil, sessionError(err)
	}
	return sessionReader{r}, nil
}

// aheadMaxSize bounds the messages fetched ahead (pop3.RetrieveAheader): a
// guess that turns out wrong (the client sends DELE and QUIT, TOP, or RETRs
// another message) costs reading the message from the upstream to throw it
// away before the next command, a few milliseconds at 1 MiB on a local
// network. Bigger messages stream long enough for their round trip not to
// matter.
const aheadMaxSize = 1 << 20

// RetrieveAhead is Retrieve that has the upstream send message next too,
// right behind message n: the client most likely RETRs it next.
func (s *session) RetrieveAhead(ctx context.Context, n, next int) (io.ReadCloser, error) {
	var nextUID uint32
	if next > 0 && s.messages[next-1].Size <= aheadMaxSize {
		nextUID = s.uids[next-1]
	}
	r, err := s.conn.FetchAhead(ctx, s.uids[n-1], nextUID)
	if err != nil {
		return nil, sessionError(err)
	}
	return sessionReader{r}, nil
}

func (s *session) Top(ctx context.Context, n int, lines int) (io.ReadCloser, error) {
	r, err := s.conn.Top(ctx, s.uids[n-1], lines)
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

func (s *session) Retrieved(_ context.Context, n int) {
	s.retrieved++
	if s.opts.Policy.MarkSeen {
		s.seen[s.uids[n-1]] = struct{}{}
	}
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

func (s *session) Update(ctx context.Context, deleted []int) error {
	start := time.Now()
	// \Seen first, so that a message moved to Trash arrives there read.
	if err := s.flushSeen(ctx); err != nil {
		s.log.Warn("storing \\Seen failed", zap.Error(err))
		return clientError(err)
	}
	uids := make([]uint32, len(deleted))
	for i, n := range deleted {
		uids[i] = s.uids[n-1]
	}
	p := s.opts.Policy
	if len(uids) > 0 && p.OnDele != OnDeleKeep {
		if err := s.checkMailbox(ctx); err != nil {
			s.log.Warn("update failed", zap.Error(err), zap.Int("deleted", len(uids)))
			return clientError(err)
		}
	}
	if len(uids) > 0 {
		var err error
		if p.OnDele == OnDeleHide {
			err = s.hide(ctx, uids)
		} else {
			err = s.conn.Delete(ctx, uids, p.OnDele.deleteMode(), p.TrashMailbox)
		}
		if err != nil {
			s.log.Warn("update failed", zap.Error(err), zap.Int("deleted", len(uids)))
			return clientError(err)
		}
	}
	s.log.Info("update", zap.String("on_dele", string(p.OnDele)), zap.Int("deleted", len(uids)),
		zap.Int("retrieved", s.retrieved), zap.Duration("took", time.Since(start)))
	return nil
}

func (s *session) Close() error {
	if s.closed {
		return nil
	}
	s.closed = true
	// A session that ends without QUIT changes nothing but \Seen, which
	// Dovecot's own POP3 writes in that case too: the client did get those
	// messages whole.
	if len(s.seen) > 0 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.flushSeen(ctx); err != nil {
			s.log.Debug("storing \\Seen at close failed", zap.Error(err))
		}
		cancel()
	}
	err := s.conn.Close()
	if s.release != nil {
		s.release()
	}
	return err
}

// hide records the messages as hidden in uidmap (which is what later
// sessions obey), then sets HiddenKeyword upstream where the mailbox allows
// it, as a copy that survives the loss of the store.
func (s *session) hide(ctx context.Context, uids []uint32) error {
	if err := s.opts.Map.SetHidden(ctx, s.key, s.uidValidity, uids, true); err != nil {
		return err
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
