package imapupstream

import (
	"context"
	"fmt"
	"io"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/imapupstream/internal/watchdog"
)

// Fetch streams the whole message m, UID FETCH uid (UID BODY.PEEK[]),
// straight from the server's literal: nothing marks it \Seen and it is
// never held in memory. The reader yields exactly the literal's octets and
// then io.EOF, once the server has completed the command. If the connection
// dies or the literal is cut short, Read returns an error wrapping
// ErrUnavailable, never a clean io.EOF. Close drains what was not read and
// waits for the command's end; the reader must be closed before the Conn is
// used for anything else (another call closes it first).
//
// Before Fetch returns, the answer has shown that it is m: its UID is m.UID
// and its literal is m.Size octets long (see verify.go). If it is not
// (Courier answers for a message another client expunged with a stand-in of
// its own), the literal is read and thrown away and the server is asked
// whether the message still exists: if not, the error wraps
// ErrNoSuchMessage and the Conn stays usable.
//
// ctx bounds the whole read: cancelling it ends the connection. A Read that
// gets nothing from the server for CommandTimeout ends it too.
//
// If an earlier FetchAhead sent this UID's command already, Fetch takes its
// answer, which is then usually under way.
func (c *Conn) Fetch(ctx context.Context, m MessageMeta) (io.ReadCloser, error) {
	return c.FetchAhead(ctx, m, 0)
}

// fetchOp names a UID FETCH in errors, formatted only when one is needed.
type fetchOp struct {
	uid   uint32
	items string
}

func (o fetchOp) String() string { return fmt.Sprintf("UID FETCH %d (%s)", o.uid, o.items) }

// fetchStream is one UID FETCH command in flight whose answer carries one
// body-section literal that is being read.
type fetchStream struct {
	op      fetchOp
	cmd     *imapclient.FetchCommand
	msg     *imapclient.FetchMessageData // the answer, for the items after the literal
	check   answerCheck
	lit     imap.LiteralReader
	litDone bool  // lit returned an error (io.EOF included): never read it again
	size    int64 // the literal's size
	litStream
}

// rawRead reads the literal. Once the literal has returned an error (even
// io.EOF) go-imap's reading goroutine goes on with the same buffered reader,
// so the literal must not be read again.
func (s *fetchStream) rawRead(p []byte) (int, error) {
	if s.litDone {
		return 0, io.EOF
	}
	n, err := s.lit.Read(p)
	if err != nil {
		s.litDone = true
	}
	return n, err
}

// drainLit reads the literal to its end (or error), which lets go-imap's
// reading goroutine go on.
func (s *fetchStream) drainLit() error {
	if s.lit == nil || s.litDone {
		return nil
	}
	_, err := io.Copy(io.Discard, litReader{s})
	return err
}

type litReader struct{ s *fetchStream }

func (r litReader) Read(p []byte) (int, error) { return r.s.rawRead(p) }

// startFetch sends the UID FETCH that want describes and waits until the
// section's literal starts (see awaitFetch).
func (c *Conn) startFetch(ctx context.Context, op fetchOp, want answerCheck) (*fetchStream, error) {
	cmd := c.client.Fetch(imap.UIDSetNum(imap.UID(op.uid)), want.options())
	return c.awaitFetch(ctx, c.guard(ctx, c.cfg.CommandTimeout), op, cmd, want)
}

// awaitFetch waits, under g, until the answer to cmd (a UID FETCH of op.uid
// for one body section) starts the section's literal, checks that the
// answer is the message want describes, and returns the stream that reads
// it; g then belongs to the stream. A section answered NIL, or a message
// missing from the answer, is ErrNoSuchMessage.
func (c *Conn) awaitFetch(ctx context.Context, g *watchdog.Guard, op fetchOp, cmd *imapclient.FetchCommand, want answerCheck) (*fetchStream, error) {
	s := &fetchStream{op: op, cmd: cmd, check: want}
	s.litStream = litStream{c: c, g: g, src: s}
	for {
		msg := cmd.Next()
		if msg == nil {
			break
		}
		s.check.reset()
		for {
			item := msg.Next()
			if item == nil {
				break
			}
			body, ok := item.(imapclient.FetchItemDataBodySection)
			if !ok {
				s.check.note(item)
				continue
			}
			if body.Literal == nil {
				continue
			}
			// The literal is ours to read now; go-imap's reader waits
			// until we have read it to the end. Our guard bounds each
			// Read, so a slow consumer is not the server's fault; no
			// deadline is on the socket (go-imap's own, for the whole
			// literal, never reaches it: lean.Conn drops them).
			s.msg, s.lit = msg, body.Literal
			s.size = body.Literal.Size()
			s.remaining = s.size
			if bad := s.check.before(); bad != "" {
				return c.mismatched(ctx, s, bad)
			}
			g.Pause() // until the first Read: the consumer may be busy
			return s, nil
		}
	}
	err := cmd.Close()
	g.Stop()
	if err != nil {
		return nil, c.fail(op.String(), err)
	}
	return nil, fmt.Errorf("%w: UID %d (%s answered without it)", ErrNoSuchMessage, op.uid, op)
}

func (s *fetchStream) readLit(p []byte) (int, error) {
	s.g.Resume()
	n, err := s.rawRead(p)
	s.g.Pause()
	return n, err
}

// broken ends the connection after a failed read and returns the error to report.
func (s *fetchStream) broken(cause error) error {
	s.c.kill(cause)
	s.release()
	err := fmt.Errorf("%w: %s: reading the message: %w", ErrUnavailable, s.op, s.c.deadCause())
	if o := s.c.cfg.Observer; o != nil {
		o.StreamFailed(err)
	}
	return err
}

// finish waits for the end of the command after the literal was read in
// full; io.EOF means all went well.
func (s *fetchStream) finish() error {
	s.g.Resume()
	// Reading the literal's EOF tells go-imap's reader to go on (even for an
	// empty literal); then read the rest of the response and the tagged OK.
	if err := s.drainLit(); err != nil {
		return s.broken(err)
	}
	// The items after the literal: whatever the check still lacks.
	for item := s.msg.Next(); item != nil; item = s.msg.Next() {
		s.check.note(item)
	}
	if bad := s.check.after(); bad != "" {
		// The octets went out already, but not the end of the answer:
		// the caller fails it instead of completing it.
		if err := s.completed(s.cmd.Close()); err != io.EOF {
			return err
		}
		return fmt.Errorf("%w: %s: %s", ErrNoSuchMessage, s.op, bad)
	}
	return s.completed(s.cmd.Close())
}

// completed ends the stream with the completion of its command, err;
// io.EOF means all went well.
func (s *fetchStream) completed(err error) error {
	if isConnError(err) {
		s.c.kill(err)
	}
	s.release()
	if err != nil {
		err = s.c.fail(s.op.String(), err)
		if o := s.c.cfg.Observer; o != nil {
			o.StreamFailed(err)
		}
		return err
	}
	return io.EOF
}

// release ends the stream's hold on the Conn.
func (s *fetchStream) release() {
	if !s.letGo(s) {
		return
	}
	if s.c.deadCause() != nil {
		// go-imap's reading goroutine may still wait for the literal to be
		// consumed: reading it now fails fast and releases it. Nothing else
		// of the command may be touched: once the literal has failed, go-imap
		// would re-read it (to discard it) while its own goroutine goes on
		// with the same reader. The goroutine ends by itself on the closed
		// connection, and Conn.Close waits for it.
		s.drainLit()
	}
}
