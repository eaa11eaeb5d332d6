package imapupstream

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// leanConn sits between the connection (after TLS) and go-imap. It passes
// every byte through, except while a lean command runs: then the answer
// lines the command asked for, and its tagged completion, go to the command's
// own parser instead of go-imap's decoder, and everything else (EXISTS,
// EXPUNGE, a FETCH of another shape, literals) still reaches go-imap in
// order, so its view of the mailbox stays right.
//
// Why: the snapshot of a 50,000-message mailbox is 50,000 lines of
// "* n FETCH (UID u RFC822.SIZE s)". go-imap decodes each into a message
// with a channel, items and two read deadlines, about 3 µs a line, more
// than the server takes to produce it. Parsing those lines here costs a
// tenth of that.
//
// Only go-imap's reading goroutine calls Read. A lean command is started by
// the goroutine that owns the Conn, when no other command is in flight; the
// mutex hands it over to Read.
type leanConn struct {
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

	mu  sync.Mutex
	cmd *leanCmd // armed or running lean command, nil when none
}

// leanBufSize is the read buffer of a running lean command.
const leanBufSize = 32 << 10

func newLeanConn(c net.Conn) *leanConn {
	return &leanConn{Conn: c, lineStart: true}
}

// leanCmd is one lean command: its tag, its line handler and its outcome.
type leanCmd struct {
	tag string
	// line handles one complete untagged line (CRLF included) and reports
	// whether it consumed it; otherwise the line goes to go-imap.
	line     func(line []byte) bool
	progress func()
	active   bool       // started: the stream was at a line start after arming
	done     chan error // receives the completion (nil for OK) or the read error
}

// errLeanNo is a lean command's tagged NO or BAD.
var errLeanNo = errors.New("imapupstream: command failed")

// start arms cmd. The caller writes the command after start returns and
// then waits on cmd.done.
func (l *leanConn) start(cmd *leanCmd) {
	cmd.done = make(chan error, 1)
	l.mu.Lock()
	l.cmd = cmd
	l.mu.Unlock()
}

// abandon disarms cmd after its caller gave up waiting (timeout,
// cancellation); the connection is being closed by then.
func (l *leanConn) abandon(cmd *leanCmd) {
	l.mu.Lock()
	if l.cmd == cmd {
		l.cmd = nil
	}
	l.mu.Unlock()
}

func (l *leanConn) Read(p []byte) (int, error) {
	for {
		if len(l.pass) > 0 {
			n := copy(p, l.pass)
			l.pass = l.pass[n:]
			return n, nil
		}
		// pass is empty: buf and out are free again. With no lean command
		// running, read straight into p (a literal's 64 KiB at a time);
		// a command armed meanwhile gets the bytes sorted from there.
		l.mu.Lock()
		direct := l.cmd == nil
		l.mu.Unlock()
		if direct {
			// The buffers of a lean command are not kept: an idle
			// session's memory is the budget (64 KiB in all).
			l.buf, l.out = nil, nil
			n, err := l.Conn.Read(p)
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
			l.buf = make([]byte, leanBufSize)
		}
		n, err := l.Conn.Read(l.buf)
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
func (l *leanConn) readFailed(p []byte, err error) (int, error) {
	l.mu.Lock()
	if cmd := l.cmd; cmd != nil {
		l.cmd = nil
		cmd.done <- fmt.Errorf("reading the answer: %w", err)
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
func (l *leanConn) handle(chunk []byte) {
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
	if cmd.progress != nil {
		cmd.progress()
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
		if rest, ok := bytes.CutPrefix(line, []byte(cmd.tag+" ")); ok {
			var err error
			if !bytes.HasPrefix(bytes.ToUpper(rest), []byte("OK")) {
				err = fmt.Errorf("%w: %s", errLeanNo, bytes.TrimRight(rest, "\r\n"))
			}
			l.mu.Lock()
			l.cmd = nil
			l.mu.Unlock()
			cmd.done <- err
			cmd = nil
			continue
		}
		if line[0] == '*' && cmd.line(line) {
			continue
		}
		out = append(out, line...)
		if n, ok := literalAtEnd(line); ok {
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
func (l *leanConn) track(b []byte) {
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
		if n, ok := literalAtEnd(l.tail); ok {
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
// "{n}" before its CRLF.
func (l *leanConn) keepTail(b []byte) {
	const keep = 32
	l.tail = append(l.tail, b...)
	if len(l.tail) > keep {
		l.tail = append(l.tail[:0], l.tail[len(l.tail)-keep:]...)
	}
}

// literalAtEnd reports the size of the literal a line announces at its end
// ("{12}\r\n", "{12+}\r\n", "~{12}\r\n").
func literalAtEnd(line []byte) (int64, bool) {
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	if len(line) < 3 || line[len(line)-1] != '}' {
		return 0, false
	}
	open := bytes.LastIndexByte(line, '{')
	if open < 0 {
		return 0, false
	}
	num := bytes.TrimSuffix(line[open+1:len(line)-1], []byte("+"))
	n, err := strconv.ParseInt(string(num), 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// nextTag returns a tag of its own for a lean command: go-imap's tags are
// "T" and a number, so these never collide.
func (l *leanConn) nextTag() string {
	l.tags++
	return "L" + strconv.Itoa(l.tags)
}

// SetReadDeadline ignores go-imap's read deadlines. go-imap sets two per
// response line (a system call each: an eighth of a 50,000-message
// snapshot's time) and a fixed one per literal; every wait on the server is
// bounded by our guard instead (CommandTimeout, or the connect timeout),
// and an idle connection needs none.
func (l *leanConn) SetReadDeadline(time.Time) error { return nil }
