package pop3

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
)

// aheadBackend is memBackend whose sessions are RetrieveAheaders that
// record the guesses they get.
type aheadBackend struct {
	*memBackend
	mu      sync.Mutex
	guesses [][2]int // n, next of each RetrieveAhead
}

func (b *aheadBackend) Login(ctx context.Context, ci *ConnInfo, cred *Credentials) (Session, error) {
	s, err := b.memBackend.Login(ctx, ci, cred)
	if err != nil {
		return nil, err
	}
	return &aheadSession{memSession: s.(*memSession), b: b}, nil
}

func (b *aheadBackend) calls() [][2]int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.guesses)
}

type aheadSession struct {
	*memSession
	b *aheadBackend
}

func (s *aheadSession) Retrieve(context.Context, int) (io.ReadCloser, error) {
	panic("Retrieve called on a RetrieveAheader")
}

func (s *aheadSession) RetrieveAhead(ctx context.Context, n, next int) (io.ReadCloser, error) {
	s.b.mu.Lock()
	s.b.guesses = append(s.b.guesses, [2]int{n, next})
	s.b.mu.Unlock()
	return s.memSession.Retrieve(ctx, n)
}

// TestRetrieveAhead: a RetrieveAheader gets every RETR, with the next
// message not marked deleted as its guess while the client goes in order
// (0 after the last one, or when it jumps); RETR
// answers as usual, and DELE, RSET and TOP keep going to the session as
// before.
func TestRetrieveAhead(t *testing.T) {
	var msgs []string
	for i := 1; i <= 5; i++ {
		msgs = append(msgs, fmt.Sprintf("Subject: %d\r\n\r\n.body %d\r\n", i, i))
	}
	b := &aheadBackend{memBackend: newMemBackend(msgs...)}
	e := startServer(t, b.memBackend, func(s *Server) { s.Backend = b })
	c := e.dial()
	c.login()
	retr := func(n int) {
		t.Helper()
		c.expectOK(fmt.Sprintf("RETR %d", n))
		if got := c.body(); !bytes.Equal(got, []byte(msgs[n-1])) {
			t.Fatalf("RETR %d = %q", n, got)
		}
	}
	retr(1)
	c.expectOK("DELE 2")
	retr(1)
	c.expectOK("DELE 4")
	c.expectOK("DELE 5")
	retr(3)
	c.expectOK("RSET")
	retr(3)
	retr(4)
	c.expectOK("TOP 4 0")
	c.body()
	retr(5)
	retr(2)
	// A guess only while the client goes in order (from the first message,
	// or after the message before): RETR 1 again, 3 again and 2 get none.
	want := [][2]int{{1, 2}, {1, 0}, {3, 0}, {3, 0}, {4, 5}, {5, 0}, {2, 0}}
	if got := b.calls(); !slices.Equal(got, want) {
		t.Fatalf("RetrieveAhead calls (n, next) %v, want %v", got, want)
	}
	c.expectOK("QUIT")
	s := b.session(t, 0)
	if _, closes := s.waitClosed(t); closes != 1 {
		t.Fatalf("Close called %d times", closes)
	}
	if got := s.retrievedCalls(); !slices.Equal(got, []int{1, 1, 3, 3, 4, 5, 2}) {
		t.Fatalf("Retrieved %v", got)
	}
}

// TestRetrBigThroughBodyWriter: messages bigger than the body writer, with
// dot-stuffing across its flushes, pipelined with commands answered from
// the connection's own writer, arrive exactly and in order.
func TestRetrBigThroughBodyWriter(t *testing.T) {
	line := ".dot line " + strings.Repeat("x", 60) + "\r\n"
	big := "Subject: big\r\n\r\n" + strings.Repeat(line, 3*bodyWriterSize/len(line)+7)
	b := newMemBackend(big, "Subject: small\r\n\r\nsmall\r\n", big+"tail without CRLF")
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	c.sendRaw("RETR 1\r\nNOOP\r\nRETR 2\r\nLIST 3\r\nRETR 3\r\nTOP 1 2\r\nNOOP\r\n")
	for i, want := range []string{big, "Subject: small\r\n\r\nsmall\r\n"} {
		if line := c.line(); !strings.HasPrefix(line, "+OK") {
			t.Fatalf("RETR %d: %q", i+1, line)
		}
		if got := c.body(); string(got) != want {
			t.Fatalf("RETR %d: %d octets differ from the %d sent", i+1, len(got), len(want))
		}
		if line := c.line(); !strings.HasPrefix(line, "+OK") {
			t.Fatalf("after RETR %d: %q", i+1, line)
		}
	}
	if line := c.line(); !strings.HasPrefix(line, "+OK") {
		t.Fatalf("RETR 3: %q", line)
	}
	if got := c.body(); string(got) != big+"tail without CRLF\r\n" {
		t.Fatalf("RETR 3: %d octets", len(got))
	}
	if line := c.line(); !strings.HasPrefix(line, "+OK") {
		t.Fatalf("TOP: %q", line)
	}
	if got := string(c.body()); got != "Subject: big\r\n\r\n"+line+line {
		t.Fatalf("TOP 1 2 = %q", got)
	}
	if line := c.line(); line != "+OK" {
		t.Fatalf("NOOP: %q", line)
	}
}
