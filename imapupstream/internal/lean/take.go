package lean

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/popbridge/popbridge/internal/imapwire"
)

// Taking the connection from go-imap's reader.
//
// A lean command still has go-imap's reading goroutine do the reading, and
// a literal read through go-imap is handed from that goroutine to its
// reader and back, a wake-up of another thread each time. For a stream of
// messages (a POP3 client's RETRs) those hand-offs, several a message,
// cost more than reading the octets. Take parks go-imap's reader instead,
// so that the owner's goroutine reads the connection itself (Direct) until
// Release: answers of its own commands it reads, everything else it passes
// on (Pass), to be given to go-imap, in order, after Release.

// takeover is one Take: go-imap's reader parks in Read until resume.
type takeover struct {
	parked   chan struct{} // closed once the reader has parked, or has ended (Conn.end)
	resume   chan struct{} // closed by Release
	signaled bool          // parked is closed (guarded by Conn.mu)
	queued   []byte        // passed on, for go-imap after Release
}

// aLongTimeAgo is a read deadline that has passed: it makes a blocked read
// return at once.
var aLongTimeAgo = time.Unix(1, 0)

// interrupted reports whether a read failed only because of Take's
// deadline. go-imap's own deadlines never reach the connection
// (SetReadDeadline), so any read timeout is Take's.
func interrupted(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// park parks go-imap's reader while the connection is taken and reports
// whether it did (the caller then reads on as usual).
func (l *Conn) park() bool {
	l.mu.Lock()
	tk := l.tk
	if tk == nil {
		l.mu.Unlock()
		return false
	}
	if !tk.signaled {
		tk.signaled = true
		close(tk.parked)
	}
	l.mu.Unlock()
	<-tk.resume
	return true
}

// ErrReaderGone is Take's error when go-imap's reader has ended: the
// connection failed.
var ErrReaderGone = errors.New("imapupstream: the connection's reader has ended")

// Take parks go-imap's reader and returns the connection to read directly.
// The caller must have no go-imap command in flight and no lean command
// running, and must bound the wait (closing the connection ends it). Take
// may read the rest of a response go-imap's reader was in the middle of
// (to pass it on), so that Direct starts at a response's first line.
func (l *Conn) Take() (*Direct, error) {
	tk := &takeover{parked: make(chan struct{}), resume: make(chan struct{})}
	l.mu.Lock()
	if l.end != nil {
		err := l.end
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrReaderGone, err)
	}
	l.tk = tk
	l.mu.Unlock()
	// A read blocked on the connection returns now; one not yet started
	// parks before reading.
	if err := l.Conn.SetReadDeadline(aLongTimeAgo); err != nil {
		l.release(tk)
		return nil, err
	}
	<-tk.parked
	l.mu.Lock()
	end := l.end
	l.mu.Unlock()
	if err := l.Conn.SetReadDeadline(time.Time{}); err != nil && end == nil {
		end = err
	}
	if end != nil {
		// The reader is not parked, and the connection is of no use.
		l.release(tk)
		return nil, fmt.Errorf("%w: %w", ErrReaderGone, end)
	}
	d := &Direct{l: l, tk: tk}
	if err := d.finishPartial(); err != nil {
		d.Release()
		return nil, err
	}
	return d, nil
}

// release ends tk: go-imap's reader reads on, starting with what was
// passed on.
func (l *Conn) release(tk *takeover) {
	l.mu.Lock()
	if l.tk == tk {
		l.tk = nil
	}
	l.mu.Unlock()
	close(tk.resume)
}

// Direct reads a taken connection (Take). Only the goroutine that took it
// uses it, until Release.
type Direct struct {
	l    *Conn
	tk   *takeover
	buf  []byte
	r, w int // buf[r:w] is read and not yet consumed
}

// The read buffer of a taken connection: lines and the octets around
// literals go through it; literals are read straight into the caller's
// buffer. Pooled, since every session that RETRs takes one for a while.
const directBufSize = 16 << 10

// maxLine bounds a line read by Direct (Dovecot's own limit on a command
// line is 64 KiB).
const maxLine = 1 << 20

var bufPool = sync.Pool{New: func() any { b := make([]byte, directBufSize); return &b }}

func getBuf() []byte { return *bufPool.Get().(*[]byte) }

func putBuf(b []byte) {
	if cap(b) == directBufSize {
		b = b[:directBufSize]
		bufPool.Put(&b)
	}
}

// finishPartial passes on the rest of the response go-imap's reader was in
// (the stream as tracked in l.lineStart, l.literal and l.tail).
func (d *Direct) finishPartial() error {
	l := d.l
	for !l.lineStart || l.literal > 0 {
		if l.literal > 0 {
			if err := d.PassLiteral(l.literal); err != nil {
				return err
			}
			l.literal = 0
			continue
		}
		line, err := d.Line()
		if err != nil {
			return err
		}
		d.Pass(line)
		whole := append(l.tail, line...)
		l.tail = l.tail[:0]
		if n, ok := imapwire.LiteralSize(whole); ok {
			l.literal = n
			continue
		}
		l.lineStart = true
	}
	l.tail = l.tail[:0]
	return nil
}

// Shrink gives the read buffer back to the pool if nothing is left in it:
// a session that stays taken while its client idles holds none.
func (d *Direct) Shrink() {
	if d.buf != nil && d.r == d.w {
		putBuf(d.buf)
		d.buf, d.r, d.w = nil, 0, 0
	}
}

// fill reads more of the connection into buf, keeping buf[r:w].
func (d *Direct) fill() error {
	if d.buf == nil {
		d.buf = getBuf()
	}
	if d.r > 0 {
		d.w = copy(d.buf, d.buf[d.r:d.w])
		d.r = 0
	}
	if d.w == len(d.buf) {
		if len(d.buf) >= maxLine {
			return errors.New("imapupstream: a response line over 1 MiB")
		}
		nb := make([]byte, 2*len(d.buf))
		copy(nb, d.buf[:d.w])
		putBuf(d.buf)
		d.buf = nb
	}
	n, err := d.l.Conn.Read(d.buf[d.w:])
	d.w += n
	if n > 0 {
		return nil
	}
	if err == nil {
		return errors.New("imapupstream: empty read")
	}
	return err
}

// Line returns the next line, through its LF. It is valid until the next
// call of a Direct method.
func (d *Direct) Line() ([]byte, error) {
	scanned := 0 // of buf[r:w], without an LF
	for {
		if i := bytes.IndexByte(d.buf[d.r+scanned:d.w], '\n'); i >= 0 {
			end := d.r + scanned + i + 1
			line := d.buf[d.r:end]
			d.r = end
			return line, nil
		}
		scanned = d.w - d.r
		if err := d.fill(); err != nil {
			return nil, err
		}
	}
}

// Read reads on in the stream: what is buffered, else straight from the
// connection into p. The caller bounds p to the literal it reads.
func (d *Direct) Read(p []byte) (int, error) {
	if d.r < d.w {
		n := copy(p, d.buf[d.r:d.w])
		d.r += n
		return n, nil
	}
	return d.l.Conn.Read(p)
}

// ReadLast is Read for the last octets of a literal, p all that is left
// of it. Up to a buffer's worth go through the buffer: the read that
// brings them most likely brings what follows the literal too (the
// answer's end), which a read bounded to the literal would leave for one
// more system call (measured: about one read fewer per RETR of 4–40 KB).
func (d *Direct) ReadLast(p []byte) (int, error) {
	if d.r == d.w && len(p) <= directBufSize {
		if err := d.fill(); err != nil {
			return 0, err
		}
	}
	return d.Read(p)
}

// Pass queues b for go-imap, which reads it after Release.
func (d *Direct) Pass(b []byte) { d.tk.queued = append(d.tk.queued, b...) }

// passLimit bounds what a Take may queue for go-imap: only unilateral
// answers (EXISTS, EXPUNGE, flag changes) are expected meanwhile.
const passLimit = 1 << 20

// PassLiteral reads a literal of n octets and queues it for go-imap.
func (d *Direct) PassLiteral(n int64) error {
	if int64(len(d.tk.queued))+n > passLimit {
		return fmt.Errorf("imapupstream: a literal of %d octets in an answer not asked for", n)
	}
	for n > 0 {
		if d.r == d.w {
			if err := d.fill(); err != nil {
				return err
			}
		}
		k := int(min(n, int64(d.w-d.r)))
		d.Pass(d.buf[d.r : d.r+k])
		d.r += k
		n -= int64(k)
	}
	return nil
}

// Write writes a command line to the connection.
func (d *Direct) Write(b []byte) (int, error) { return d.l.Conn.Write(b) }

// NextTag is Conn.NextTag.
func (d *Direct) NextTag() string { return d.l.NextTag() }

// Release gives the connection back to go-imap's reader, at a response's
// first line: what was passed on comes first, then what Direct read
// beyond the last line it returned, then the connection. Release must be
// called once, also after the connection has failed.
func (d *Direct) Release() {
	l := d.l
	queued := append(d.tk.queued, d.buf[d.r:d.w]...)
	l.lineStart, l.literal = true, 0
	l.tail = l.tail[:0]
	l.track(d.buf[d.r:d.w])
	putBuf(d.buf)
	d.buf, d.r, d.w = nil, 0, 0
	// go-imap's reader is parked with its pass empty (park), so pass is
	// free; the channel hands it over.
	l.pass = queued
	l.release(d.tk)
}
