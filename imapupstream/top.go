package imapupstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"github.com/emersion/go-imap/v2"
)

// Partial TEXT fetches for Top start at topFirstChunk bytes (or about
// topBytesPerLine per requested line, up to topMaxFirstChunk) and double, up
// to topMaxChunk, only while the requested lines are not there yet and the
// body goes on.
const (
	topFirstChunk    = 4 << 10
	topBytesPerLine  = 128
	topMaxFirstChunk = 256 << 10
	topMaxChunk      = 8 << 20
	// A header up to this size is read whole before Top returns (prefetch).
	topMaxBufferedHeader = 64 << 10
)

// Top streams the header, the blank line after it and the first lines of the
// body of m: UID FETCH uid (UID RFC822.SIZE BODY.PEEK[HEADER]), then, only if
// lines > 0, UID FETCH uid (UID RFC822.SIZE BODY.PEEK[TEXT]<offset.N>) in
// growing chunks until lines lines (a line is up to and including LF) or the
// end of the body, in one chunk of the whole body when the lines asked for
// may well be all of it. Nothing marks the message \Seen. Every answer must
// carry m's UID and RFC822.SIZE, as Fetch's must carry its size
// (verify.go). The reader behaves like Fetch's (errors, Close, ctx, one open
// reader per Conn). If the message is gone, the error wraps
// ErrNoSuchMessage.
func (c *Conn) Top(ctx context.Context, m MessageMeta, lines int) (_ io.ReadCloser, err error) {
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "top", time.Now(), &err)
	}
	op := fetchOp{uid: m.UID, items: "RFC822.SIZE BODY.PEEK[HEADER]"}
	if err := c.begin(op.String()); err != nil {
		return nil, err
	}
	lines = min(max(lines, 0), 1<<30) // "TOP n 99999999" means all of it
	hdr, err := c.startFetch(ctx, op,
		wantPart(m, &imap.FetchItemBodySection{Specifier: imap.PartSpecifierHeader, Peek: true}))
	if err != nil {
		return nil, err
	}
	chunk := int64(lines) * topBytesPerLine
	if chunk >= m.Size && m.Size > 0 {
		// The lines asked for may well be the whole body ("TOP n
		// 99999999"): one partial of it all. Besides a round trip each,
		// every further partial is a FETCH that can find the message
		// expunged by another client in the middle of the answer, when
		// the caller can only cut the connection.
		chunk = m.Size
	} else {
		chunk = min(max(chunk, topFirstChunk), topMaxFirstChunk)
	}
	r := &topReader{c: c, ctx: ctx, msg: m, linesLeft: lines, cur: hdr, chunk: chunk}
	c.reader = r
	if hdr.size <= topMaxBufferedHeader {
		if err := r.prefetch(); err != nil {
			return nil, err
		}
	}
	return r, nil
}

// prefetch reads the header whole, which completes its answer and its
// check, and starts the first TEXT partial before Top returns. A message
// expunged by another client, before or between the two FETCHes, is then
// reported by Top itself (ErrNoSuchMessage), while the caller has sent
// nothing and can still answer with an error, instead of in the middle of
// its answer.
func (r *topReader) prefetch() error {
	head, err := io.ReadAll(r.cur)
	if err != nil {
		r.finish(err)
		return err
	}
	r.head, r.cur, r.inText = head, nil, true
	r.textDone = r.linesLeft == 0
	if r.textDone {
		return nil
	}
	if !r.nextText() {
		return r.err
	}
	return nil
}

// topReader yields the header stream, then the text streams truncated after
// the requested number of lines.
type topReader struct {
	c         *Conn
	ctx       context.Context
	msg       MessageMeta
	linesLeft int
	head      []byte       // the prefetched header, to deliver first
	cur       *fetchStream // the stream being read; nil between streams
	inText    bool         // cur is a TEXT partial
	offset    int64        // of the next TEXT partial
	chunk     int64        // size of the next TEXT partial
	textDone  bool         // no more TEXT to fetch
	err       error
}

func (r *topReader) Read(p []byte) (int, error) {
	if len(r.head) > 0 {
		n := copy(p, r.head)
		r.head = r.head[n:]
		return n, nil
	}
	for r.err == nil {
		if r.cur == nil {
			if !r.nextText() {
				continue // r.err is set
			}
		}
		n, err := r.cur.Read(p)
		if r.inText && n > 0 {
			n = r.countLines(p[:n])
		}
		if err == io.EOF || (err == nil && r.inText && r.linesLeft == 0) {
			r.endStream()
		} else if err != nil {
			r.err = err
			r.cur = nil
		}
		if n > 0 {
			// A failure comes with the octets before it, so that a caller
			// that has sent nothing yet can still answer with an error.
			return n, r.err
		}
	}
	return 0, r.err
}

// countLines counts the LFs in b against linesLeft and returns how much of b
// to deliver (up to and including the last wanted LF).
func (r *topReader) countLines(b []byte) int {
	n := 0
	for r.linesLeft > 0 {
		i := bytes.IndexByte(b[n:], '\n')
		if i < 0 {
			return len(b)
		}
		n += i + 1
		r.linesLeft--
	}
	return n
}

// endStream completes the current stream (draining a TEXT partial that went
// past the wanted lines) and decides what comes next.
func (r *topReader) endStream() {
	cur := r.cur
	r.cur = nil
	if err := cur.Close(); err != nil {
		r.err = err
		return
	}
	if !r.inText {
		// The header is done: the text follows, if any lines are wanted.
		r.inText = true
		r.textDone = r.linesLeft == 0
		return
	}
	if r.linesLeft == 0 || cur.size < r.chunk {
		// Enough lines, or the body ended within this partial.
		r.textDone = true
		return
	}
	r.offset += cur.size
	r.chunk = min(r.chunk*2, topMaxChunk)
}

// nextText starts the next TEXT partial, or ends the reader.
func (r *topReader) nextText() bool {
	if r.textDone {
		r.finish(io.EOF)
		return false
	}
	op := fetchOp{uid: r.msg.UID, items: fmt.Sprintf("RFC822.SIZE BODY.PEEK[TEXT]<%d.%d>", r.offset, r.chunk)}
	// An empty body, or a partial beyond its end, is an empty string
	// (RFC 3501 6.4.5); NIL, or no section at all, means the message is
	// gone (Dovecot: BODY[TEXT]<0> NIL, then OK [EXPUNGEISSUED]), which must
	// not pass for the end of the body: the answer would look complete.
	s, err := r.c.startFetch(r.ctx, op, wantPart(r.msg, &imap.FetchItemBodySection{
		Specifier: imap.PartSpecifierText,
		Peek:      true,
		Partial:   &imap.SectionPartial{Offset: r.offset, Size: r.chunk},
	}))
	if err != nil {
		r.finish(err)
		return false
	}
	r.cur = s
	return true
}

func (r *topReader) finish(err error) {
	r.err = err
	if r.c.reader == r {
		r.c.reader = nil
	}
}

// Close drains the stream being read, if any, and lets the Conn go on.
func (r *topReader) Close() error {
	if r.c.reader == r {
		r.c.reader = nil
	}
	if r.cur != nil {
		cur := r.cur
		r.cur = nil
		if err := cur.Close(); err != nil {
			r.err = err
			return err
		}
	}
	if r.err == nil || r.err == io.EOF {
		r.err = io.EOF
		return nil
	}
	return r.err
}

// abandon gives the reader up after Conn.Close ended the connection.
func (r *topReader) abandon() {
	if r.cur != nil {
		r.cur.abandon()
		r.cur = nil
	}
	r.err = fmt.Errorf("%w: %w", ErrUnavailable, errConnClosed)
}
