package imapupstream

import (
	"errors"
	"fmt"
	"io"

	"github.com/popbridge/popbridge/imapupstream/internal/watchdog"
)

// litStream is what the message readers of Fetch and Top share: they hand
// out one literal's octets, then io.EOF once the answer is complete; a
// literal cut short is an error wrapping ErrUnavailable, never a clean
// io.EOF. Each reader (directStream for whole messages, fetchStream for
// parts through go-imap) is its litSource.
type litStream struct {
	c         *Conn
	g         *watchdog.Guard // bounds each wait on the server
	src       litSource
	remaining int64
	err       error // sticky: io.EOF once complete, or the failure
	closed    bool  // released (see litSource.release)
}

// litSource is how one kind of message reader reads its literal.
type litSource interface {
	// readLit reads on in the literal, p bounded to what is left of it.
	readLit(p []byte) (int, error)
	// finish reads the rest of the answer after the literal; io.EOF if
	// all went well.
	finish() error
	// broken ends the connection after a failed read and returns the
	// error to report.
	broken(cause error) error
	// release ends the reader's hold on the Conn and sets closed.
	release()
}

func (l *litStream) Read(p []byte) (int, error) {
	if l.err != nil {
		return 0, l.err
	}
	if l.remaining == 0 {
		l.err = l.src.finish()
		return 0, l.err
	}
	if int64(len(p)) > l.remaining {
		p = p[:l.remaining]
	}
	n, err := l.src.readLit(p)
	l.remaining -= int64(n)
	switch {
	case l.remaining == 0:
		// All of it: complete the answer now, so that the caller's last
		// Read already knows whether the server agreed.
		if ferr := l.src.finish(); ferr != io.EOF {
			l.err = ferr
			return n, ferr
		}
		l.err = io.EOF
		if n > 0 {
			return n, nil
		}
		return 0, io.EOF
	case err == io.EOF:
		// The literal ended early: the connection broke off.
		l.err = l.src.broken(io.ErrUnexpectedEOF)
		return n, l.err
	case err != nil:
		l.err = l.src.broken(err)
		return n, l.err
	}
	return n, nil
}

// Close reads what was not read and the rest of the answer. It returns nil
// when the Conn is still usable.
func (l *litStream) Close() error {
	if l.closed {
		if errors.Is(l.err, io.EOF) || l.err == nil {
			return nil
		}
		return l.err
	}
	_, err := io.Copy(io.Discard, l)
	return err
}

// abandon gives the reader up after the connection was ended (Conn.Close):
// reads fail at once.
func (l *litStream) abandon() {
	if l.closed {
		return
	}
	l.err = fmt.Errorf("%w: %w", ErrUnavailable, errConnClosed)
	l.src.release()
}

// letGo marks the reader self released: its guard stops and the Conn has
// no reader open any more. It reports whether it was not released before.
func (l *litStream) letGo(self io.Closer) bool {
	if l.closed {
		return false
	}
	l.closed = true
	l.g.Stop()
	if l.c.reader == self {
		l.c.reader = nil
	}
	return true
}
