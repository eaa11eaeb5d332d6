package e2e

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// Conn is a raw POP3 connection for checking exact protocol lines. Its
// methods fail the test on a read or write error.
type Conn struct {
	T  testing.TB
	NC net.Conn
	R  *bufio.Reader
}

// Dial connects to addr from local (nil: any), with TLS from the first
// octet when cfg is not nil, and reads the greeting.
func Dial(t testing.TB, addr string, local net.Addr, cfg *tls.Config) *Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: local, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if cfg != nil {
		nc = tls.Client(nc, cfg)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	p := &Conn{T: t, NC: nc, R: bufio.NewReader(nc)}
	if g := p.Line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	return p
}

// Line reads one line and returns it without its CRLF.
func (p *Conn) Line() string {
	p.T.Helper()
	s, err := p.R.ReadString('\n')
	if err != nil {
		p.T.Fatalf("read: %v (after %q)", err, s)
	}
	if !strings.HasSuffix(s, "\r\n") {
		p.T.Fatalf("line without CRLF: %q", s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

// Cmd sends one command line and returns the first line of the answer.
func (p *Conn) Cmd(format string, args ...any) string {
	p.T.Helper()
	if _, err := fmt.Fprintf(p.NC, format+"\r\n", args...); err != nil {
		p.T.Fatal(err)
	}
	return p.Line()
}

// Multi reads the rest of a multi-line answer (without the final ".").
func (p *Conn) Multi() []string {
	p.T.Helper()
	var lines []string
	for {
		l := p.Line()
		if l == "." {
			return lines
		}
		lines = append(lines, strings.TrimPrefix(l, "."))
	}
}

// Capa sends CAPA and returns the capabilities.
func (p *Conn) Capa() []string {
	p.T.Helper()
	if l := p.Cmd("CAPA"); !strings.HasPrefix(l, "+OK") {
		p.T.Fatalf("CAPA: %q", l)
	}
	return p.Multi()
}

// STLS runs STLS and the TLS handshake.
func (p *Conn) STLS(cfg *tls.Config) {
	p.T.Helper()
	if l := p.Cmd("STLS"); !strings.HasPrefix(l, "+OK") {
		p.T.Fatalf("STLS: %q", l)
	}
	if p.R.Buffered() > 0 {
		p.T.Fatalf("the server sent %d octets after +OK to STLS", p.R.Buffered())
	}
	tc := tls.Client(p.NC, cfg)
	if err := tc.Handshake(); err != nil {
		p.T.Fatalf("TLS handshake after STLS: %v", err)
	}
	p.NC, p.R = tc, bufio.NewReader(tc)
}

// Login logs in with USER and PASS.
func (p *Conn) Login(user, password string) {
	p.T.Helper()
	if l := p.Cmd("USER %s", user); !strings.HasPrefix(l, "+OK") {
		p.T.Fatalf("USER: %q", l)
	}
	if l := p.Cmd("PASS %s", password); !strings.HasPrefix(l, "+OK") {
		p.T.Fatalf("PASS: %q", l)
	}
}

// Greeted reads the greeting and fails unless it is +OK: for connections
// made without Dial.
func (p *Conn) Greeted() *Conn {
	p.T.Helper()
	if g := p.Line(); !strings.HasPrefix(g, "+OK") {
		p.T.Fatalf("greeting %q", g)
	}
	return p
}

// ClosedUnread checks that the server closed the connection without a word.
func (p *Conn) ClosedUnread() {
	p.T.Helper()
	b, err := io.ReadAll(p.R)
	if err != nil && !strings.Contains(err.Error(), "reset") {
		p.T.Fatalf("reading a refused connection: %v", err)
	}
	if len(b) > 0 {
		p.T.Fatalf("refused connection got %q", b)
	}
}
