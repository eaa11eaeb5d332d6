package lean

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/popbridge/popbridge/internal/imapwire"
)

// Conn is the connection under go-imap. Only go-imap's reading goroutine
// calls Read. A lean command is started by the goroutine that owns the
// connection, when no other command is in flight; the mutex hands it over
// to Read.
type Conn struct {
	net.Conn

	buf  []byte // read from the connection during a lean command
	out  []byte // reused for what passes of a chunk read during a lean command
	pass []byte // handled bytes waiting to be given to go-imap

	// Where the stream is, so that a lean command starts on a response's
	// first line and never inside a literal.
	lineStart bool
	literal   int64  // octets of a literal still to pass through
	tail      []byte // the current line so far (only its end matters outside a capture)

	tags int // lean commands sent, for their tags (owner's goroutine only)

	wmu     sync.Mutex // hold.go
	held    []byte
	holding bool

	mu  sync.Mutex
	cmd *Command  // armed or running lean command, nil when none
	tk  *takeover // the connection taken from go-imap's reader (take.go), nil when not
	end error     // the read error go-imap's reader met, once it has
}

// bufSize is the read buffer of a running lean command.
const bufSize = 32 << 10

// New returns c with a lean reader in front.
func New(c net.Conn) *Conn {
	return &Conn{Conn: c, lineStart: true}
}

// Command is one lean command: its tag, its line handler and its outcome.
type Command struct {
	Tag string // NextTag
	// Line handles one complete untagged line (CRLF included) and reports
	// whether it consumed it; otherwise the line goes to go-imap.
	Line func(line []byte) bool
	// Progress, if not nil, is called for every chunk read while the
	// command is armed.
	Progress func()

	active bool       // started: the stream was at a line start after arming
	done   chan error // receives the completion (nil for OK) or the read error
}

// Done receives the command's outcome once: nil for its tagged OK, an
// error wrapping ErrNo for NO or BAD, or the read error that ended it.
func (cmd *Command) Done() <-chan error { return cmd.done }

// ErrNo is a lean command's tagged NO or BAD.
var ErrNo = errors.New("imapupstream: command failed")

// Start arms cmd. The caller writes the command after Start returns (Send
// does both) and then waits on cmd.Done.
func (l *Conn) Start(cmd *Command) {
	cmd.done = make(chan error, 1)
	l.mu.Lock()
	l.cmd = cmd
	l.mu.Unlock()
}

// Send arms cmd and writes its command line, cmd.Tag and text; a failed
// write disarms it.
func (l *Conn) Send(cmd *Command, text string) error {
	l.Start(cmd)
	if _, err := l.Conn.Write([]byte(cmd.Tag + " " + text + "\r\n")); err != nil {
		l.Abandon(cmd)
		return err
	}
	return nil
}

// Abandon disarms cmd after its caller gave up waiting (timeout,
// cancellation); the connection is being closed by then.
func (l *Conn) Abandon(cmd *Command) {
	l.mu.Lock()
	if l.cmd == cmd {
		l.cmd = nil
	}
	l.mu.Unlock()
}

func (l *Conn) Read(p []byte) (int, error) {
	for {
		if len(l.pass) > 0 {
			n := copy(p, l.pass)
			l.pass = l.pass[n:]
			return n, nil
		}
		// pass is empty: buf and out are free again, and the connection
		// can be taken (take.go).
		if l.park() {
			continue
		}
		// With no lean command running, read straight into p (a
		// literal's 64 KiB at a time); a command armed meanwhile gets the
		// bytes sorted from there.
		l.mu.Lock()
		direct := l.cmd == nil
		l.mu.Unlock()
		if direct {
			// The buffers of a lean command are not kept: an idle
			// session's memory is the budget (64 KiB in all).
			l.buf, l.out = nil, nil
			n, err := l.Conn.Read(p)
			if interrupted(err) {
				err = nil // Take's, to park this reader
			}
			if n > 0 {
				l.mu.Lock()
				direct = l.cmd == nil
				l.mu.Unlock()
				if direct {
					l.track(p[:n])
					return n, err
				}
				// Sorted through out, then back into p.
				l.handle(p[:n])
				if err != nil {
					return l.readFailed(p, err)
				}
				n = copy(p, l.pass)
				l.pass = l.pass[n:]
				if n > 0 {
					return n, nil
				}
				continue
			}
			if err != nil {
				return l.readFailed(p, err)
			}
			continue
		}
		if l.buf == nil {
			l.buf = make([]byte, bufSize)
		}
		n, err := l.Conn.Read(l.buf)
		if interrupted(err) {
			err = nil
		}
		if n > 0 {
			l.handle(l.buf[:n])
		}
		if err != nil {
			return l.readFailed(p, err)
		}
	}
}

// readFailed ends a lean command on a read error and gives go-imap what
// came before it first; the next Read meets the error again on the dead
// connection.
func (l *Conn) readFailed(p []byte, err error) (int, error) {
	l.mu.Lock()
	if cmd := l.cmd; cmd != nil {
		l.cmd = nil
		cmd.done <- fmt.Errorf("reading the answer: %w", err)
	}
	if l.end == nil {
		l.end = err
		if tk := l.tk; tk != nil && !tk.signaled {
			tk.signaled = true
			close(tk.parked) // a Take waiting for this reader: it is gone
		}
	}
	l.mu.Unlock()
	if len(l.pass) > 0 {
		n := copy(p, l.pass)
		l.pass = l.pass[n:]
		return n, nil
	}
	return 0, err
}

// handle sorts one chunk into bytes for go-imap (pass) and lines for the
// lean command.
func (l *Conn) handle(chunk []byte) {
	l.mu.Lock()
	cmd := l.cmd
	l.mu.Unlock()
	if cmd == nil {
		// The common case, e.g. a RETR's literal: pass it all, and only
		// keep track of where lines and literals end.
		l.track(chunk)
		l.pass = chunk
		return
	}
	if cmd.Progress != nil {
		cmd.Progress()
	}
	out := l.out[:0]
	for len(chunk) > 0 {
		if l.literal > 0 {
			k := int(min(l.literal, int64(len(chunk))))
			out = append(out, chunk[:k]...)
			l.literal -= int64(k)
			chunk = chunk[k:]
			continue
		}
		if cmd != nil && !cmd.active && l.lineStart {
			cmd.active = true
		}
		if cmd == nil || !cmd.active {
			i := bytes.IndexByte(chunk, '\n')
			if i < 0 {
				l.track(chunk)
				out = append(out, chunk...)
				break
			}
			l.track(chunk[:i+1])
			out = append(out, chunk[:i+1]...)
			chunk = chunk[i+1:]
			continue
		}
		// Capturing: collect whole lines.
		i := bytes.IndexByte(chunk, '\n')
		if i < 0 {
			l.tail = append(l.tail, chunk...)
			l.lineStart = false
			break
		}
		var line []byte
		if len(l.tail) > 0 {
			line = append(l.tail, chunk[:i+1]...)
		} else {
			line = chunk[:i+1]
		}
		chunk = chunk[i+1:]
		l.tail = l.tail[:0]
		l.lineStart = true
		if rest, ok := bytes.CutPrefix(line, []byte(cmd.Tag+" ")); ok {
			var err error
			if !bytes.HasPrefix(bytes.ToUpper(rest), []byte("OK")) {
				err = fmt.Errorf("%w: %s", ErrNo, bytes.TrimRight(rest, "\r\n"))
			}
			l.mu.Lock()
			l.cmd = nil
			l.mu.Unlock()
			cmd.done <- err
			cmd = nil
			continue
		}
		if line[0] == '*' && cmd.Line(line) {
			continue
		}
		out = append(out, line...)
		if n, ok := imapwire.LiteralSize(line); ok {
			l.literal = n
			l.lineStart = false
			// The rest of this response (after the literal) is go-imap's:
			// pass it through as outside a capture.
			cmd.active = false
		}
	}
	l.out, l.pass = out, out
}

// track follows line and literal boundaries in bytes that all pass through.
func (l *Conn) track(b []byte) {
	for len(b) > 0 {
		if l.literal > 0 {
			k := int(min(l.literal, int64(len(b))))
			l.literal -= int64(k)
			b = b[k:]
			l.lineStart = false // the response goes on after a literal
			continue
		}
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			l.keepTail(b)
			l.lineStart = false
			return
		}
		l.keepTail(b[:i+1])
		if n, ok := imapwire.LiteralSize(l.tail); ok {
			l.literal = n
			l.lineStart = false
		} else {
			l.lineStart = true
		}
		l.tail = l.tail[:0]
		b = b[i+1:]
	}
}

// keepTail keeps the end of the current line: enough to see a literal's
// "{n}" before its CRLF. Only that much is ever appended, so the tail never
// grows past twice it: a connection keeps its tail for as long as it lives.
func (l *Conn) keepTail(b []byte) {
	const keep = imapwire.MarkerTail
	if len(b) >= keep {
		l.tail = append(l.tail[:0], b[len(b)-keep:]...)
		return
	}
	l.tail = append(l.tail, b...)
	if len(l.tail) > keep {
		l.tail = append(l.tail[:0], l.tail[len(l.tail)-keep:]...)
	}
}

// NextTag returns a tag of its own for a lean command: go-imap's tags are
// "T" and a number, so these never collide.
func (l *Conn) NextTag() string {
	l.tags++
	return "L" + strconv.Itoa(l.tags)
}

// SetReadDeadline ignores go-imap's read deadlines. go-imap sets two per
// response line (a system call each: an eighth of a 50,000-message
// snapshot's time) and a fixed one per literal; every wait on the server is
// bounded by the caller's own watchdog instead (imapupstream's
// CommandTimeout, or the connect timeout), and an idle connection needs
// none.
func (l *Conn) SetReadDeadline(time.Time) error { return nil }
