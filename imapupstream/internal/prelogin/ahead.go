package prelogin

import (
	"net"
	"strconv"
	"strings"
	"sync"
)

// aheadConn is the connection for imapclient when the ID goes out with the
// login (Options.Ahead). Writes: the ID command goes out in front of the
// first write (the login's, with what is pipelined behind it), so that the
// setup costs one round trip after the greeting. Reads: after the
// greeting's replay, the ID's answer is read off before anything reaches
// imapclient, which knows neither the command nor its tag; other responses
// pass on in order.
type aheadConn struct {
	net.Conn

	mu sync.Mutex
	id []byte // the ID command line; nil once sent

	// Read side (imapclient's reading goroutine only).
	p        *Conn  // the pre-login reader, until its buffer is drained
	tag      string // the ID's
	pending  []byte // the greeting, then responses read along with the ID's answer
	answered bool
	err      error // what ended reading the ID's answer, after pending
}

// ahead returns the aheadConn for conn, with cmd to go out first.
func (p *Conn) ahead(conn net.Conn, greeting []byte, cmd string) *aheadConn {
	p.tag++
	tag := TagPrefix + strconv.Itoa(p.tag)
	line := tag + " " + cmd + "\r\n"
	if p.trace != nil {
		p.trace.Write([]byte(line)) // the order it goes out in: before the login
	}
	return &aheadConn{Conn: conn, id: []byte(line), p: p, tag: tag, pending: p.takeBuffered(greeting)}
}

func (a *aheadConn) Write(b []byte) (int, error) {
	a.mu.Lock()
	id := a.id
	a.id = nil
	a.mu.Unlock()
	if id == nil {
		return a.Conn.Write(b)
	}
	if _, err := a.Conn.Write(append(id, b...)); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (a *aheadConn) Read(b []byte) (int, error) {
	if len(a.pending) == 0 && !a.answered {
		a.readAnswer()
	}
	if len(a.pending) > 0 {
		n := copy(b, a.pending)
		if a.pending = a.pending[n:]; len(a.pending) == 0 {
			a.pending = nil
		}
		return n, nil
	}
	if a.err != nil {
		return 0, a.err
	}
	if a.p != nil {
		if a.p.br.Buffered() > 0 {
			return a.p.br.Read(b) // only what is buffered: no read below
		}
		a.p = nil // an idle session keeps no buffer
	}
	return a.Conn.Read(b)
}

// readAnswer reads responses up to the ID's completion: the ID's own
// answer is dropped, anything else is kept in pending for imapclient. An
// error (the server hung up, say) is returned after pending. (Nothing sets
// a read deadline on the connection before the login's answer is read,
// which comes after the ID's: an error here is final.)
func (a *aheadConn) readAnswer() {
	for !a.answered {
		resp, err := a.p.ReadResponse(true)
		if err != nil {
			a.answered, a.err = true, err
			return
		}
		tag, _, _ := strings.Cut(resp, " ")
		switch {
		case tag == a.tag:
			a.answered = true
		case len(resp) >= 5 && strings.EqualFold(resp[:5], "* ID "):
		default:
			a.pending = append(a.pending, resp...)
		}
	}
}
