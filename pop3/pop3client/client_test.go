package pop3client_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
)

// wantRETR is what RETR sends of m: m, with CRLF at the end.
func wantRETR(m string) []byte {
	if !strings.HasSuffix(m, "\r\n") {
		m += "\r\n"
	}
	return []byte(m)
}

func TestSession(t *testing.T) {
	s := startServer(t, pop3.ListenerConfig{}, testMessages...)
	c, err := pop3client.Dial(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.HasPrefix(c.Greeting(), "+OK ") {
		t.Fatalf("greeting %q", c.Greeting())
	}

	var resp *pop3client.ErrResponse
	err = c.Login("alice", "wrong")
	if !errors.As(err, &resp) || resp.Code() != "AUTH" || resp.Command != "PASS" || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("wrong password: %v", err)
	}
	if err := c.Login("alice", "secret"); err != nil {
		t.Fatal(err)
	}

	n, size, err := c.Stat()
	var total int64
	for _, m := range testMessages {
		total += int64(len(m))
	}
	if err != nil || n != 3 || size != total {
		t.Fatalf("STAT %d %d, %v; want 3 %d", n, size, err, total)
	}
	list, err := c.Listing("LIST")
	if err != nil || len(list) != 3 || list[1] != (pop3client.Entry{N: 2, Value: strconv.Itoa(len(testMessages[1]))}) {
		t.Fatalf("LIST %v, %v", list, err)
	}
	uidls, err := c.AppendListing(make([]pop3client.Entry, 0, n), "UIDL")
	if err != nil || len(uidls) != 3 || uidls[0].N != 1 || uidls[0].Value == "" {
		t.Fatalf("UIDL %v, %v", uidls, err)
	}

	for i, m := range testMessages {
		got, err := c.Retr(i + 1)
		if err != nil || !bytes.Equal(got, wantRETR(m)) {
			t.Fatalf("RETR %d: %q, %v; want %q", i+1, got, err, wantRETR(m))
		}
	}
	// Streaming, one octet at a time: the same octets.
	r, err := c.RetrReader(2)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := io.ReadAll(iotest.OneByteReader(r)); err != nil || !bytes.Equal(got, wantRETR(testMessages[1])) {
		t.Fatalf("RetrReader 2: %q, %v", got, err)
	}
	if top, err := c.Top(2, 1); err != nil || string(top) != "Subject: dots\r\nX: y\r\n\r\n.leading dot\r\n" {
		t.Fatalf("TOP 2 1: %q, %v", top, err)
	}
	// A reader closed early leaves the connection in step.
	r, err = c.TopReader(2, 3)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Retr(9); !errors.As(err, &resp) || resp.Command != "RETR" {
		t.Fatalf("RETR 9: %v", err)
	}
	if line, err := c.Cmd("DELE %d", 1); err != nil || !strings.HasPrefix(line, "+OK") {
		t.Fatalf("DELE 1: %q, %v", line, err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if left := len(s.user.Messages()); left != 2 {
		t.Fatalf("%d messages left after DELE 1 and QUIT", left)
	}
}

func TestMultiLine(t *testing.T) {
	long := "." + strings.Repeat("x", 100) + "\r\n" // longer than the buffer, dot-stuffed
	body := "..a\r\n" + long + "b.\r\n.\r\n"
	want := "." + "a\r\n" + long[1:] + "b.\r\n"
	for _, size := range []int{16, 4096} {
		s := startScripted(t, "+OK hi\r\n+OK\r\n"+body+"+OK\r\n"+body)
		c, err := pop3client.DialContext(context.Background(), s.addr, &pop3client.Options{ReadBufferSize: size})
		if err != nil {
			t.Fatal(err)
		}
		if got, err := c.Retr(1); err != nil || string(got) != want {
			t.Fatalf("buffer %d: %q, %v; want %q", size, got, err, want)
		}
		var b bytes.Buffer
		r, err := c.RetrReader(1)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := r.WriteTo(&b); err != nil || n != int64(len(want)) || b.String() != want {
			t.Fatalf("buffer %d: WriteTo %d %q, %v", size, n, b.String(), err)
		}
		c.Close()
	}
}

func TestNoTerminator(t *testing.T) {
	for name, script := range map[string]string{
		"line start": "+OK\r\n+OK\r\nline\r\n",
		"mid line":   "+OK\r\n+OK\r\nline\r\npart",
		"long line":  "+OK\r\n+OK\r\nline\r\n" + strings.Repeat("x", 40),
	} {
		s := startScriptedEOF(t, script)
		c, err := pop3client.DialContext(context.Background(), s.addr, &pop3client.Options{ReadBufferSize: 16})
		if err != nil {
			t.Fatal(err)
		}
		c.Send("RETR 1")
		if _, err := c.Status(); err != nil {
			t.Fatal(err)
		}
		got, err := c.MultiLine()
		if !errors.Is(err, pop3client.ErrNoTerminator) || !strings.HasPrefix(string(got), "line\r\n") {
			t.Errorf("%s: %q, %v; want ErrNoTerminator", name, got, err)
		}
		c.Close()
	}
}

func TestBareLF(t *testing.T) {
	script := "+OK hi\n+OK\r\nbare\nx\r\n.\r\n"
	s := startScripted(t, script)
	c, err := pop3client.Dial(s.addr)
	if err == nil {
		t.Fatalf("strict client took the greeting %q", c.Greeting())
	}
	s = startScripted(t, "+OK hi\r\n+OK\r\nbare\nx\r\n.\r\n")
	c, err = pop3client.Dial(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Retr(1); err == nil || !strings.Contains(err.Error(), "bare LF") {
		t.Fatalf("strict client: %v", err)
	}
	c.Close()

	s = startScripted(t, script+"+OK\r\n1 a\n.\n")
	c, err = pop3client.DialContext(context.Background(), s.addr, &pop3client.Options{AllowBareLF: true})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := c.Retr(1); err != nil || string(got) != "bare\nx\r\n" {
		t.Fatalf("lenient client: %q, %v", got, err)
	}
	if l, err := c.Listing("UIDL"); err != nil || len(l) != 1 || l[0].Value != "a" {
		t.Fatalf("lenient UIDL: %v, %v", l, err)
	}
	c.Close()
}

func TestLineLimit(t *testing.T) {
	s := startScripted(t, "+OK "+strings.Repeat("g", 100)+"\r\n+OK 1 2\r\n")
	c, err := pop3client.DialContext(context.Background(), s.addr, &pop3client.Options{MaxLineLength: 20, ReadBufferSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if g := c.Greeting(); g != "+OK "+strings.Repeat("g", 16) {
		t.Fatalf("greeting %q: want it cut at 20 octets", g)
	}
	if n, size, err := c.Stat(); n != 1 || size != 2 || err != nil {
		t.Fatalf("STAT after the long line: %d %d %v", n, size, err)
	}
}

func TestListingErrors(t *testing.T) {
	s := startScripted(t, "+OK\r\n+OK\r\n1 a\r\nnonsense\r\n0 b\r\n3  c  more\r\n.\r\n+OK 2 3\r\n")
	c, err := pop3client.Dial(s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.Listing("UIDL")
	want := []pop3client.Entry{{N: 1, Value: "a"}, {N: 3, Value: "c"}}
	if err == nil || err.Error() != `UIDL: bad line "nonsense"` || !reflect.DeepEqual(l, want) {
		t.Fatalf("UIDL %v, %v", l, err)
	}
	if n, _, err := c.Stat(); n != 2 || err != nil {
		t.Fatalf("STAT after the listing: %d, %v", n, err)
	}
}

// TestLogin: Login takes AUTH PLAIN only where CAPA offers it without
// USER, and asks CAPA again once logged in.
func TestLogin(t *testing.T) {
	ir := base64.StdEncoding.EncodeToString([]byte("\x00u\x00p w"))
	for _, tc := range []struct {
		capa string
		want []string
	}{
		{"SASL PLAIN LOGIN\r\n", []string{"CAPA", "AUTH PLAIN " + ir, "CAPA", "QUIT"}},
		{"USER\r\nSASL PLAIN\r\n", []string{"CAPA", "USER u", "PASS p w", "CAPA", "QUIT"}},
		{"SASL LOGIN\r\n", []string{"CAPA", "USER u", "PASS p w", "CAPA", "QUIT"}},
	} {
		oks := strings.Repeat("+OK\r\n", len(tc.want)-3) // the login's answers
		s := startScripted(t, "+OK\r\n+OK\r\n"+tc.capa+".\r\n"+oks+"+OK\r\nPIPELINING\r\n.\r\n")
		c, err := pop3client.Dial(s.addr)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Capa(); err != nil {
			t.Fatal(err)
		}
		if err := c.Login("u", "p w"); err != nil {
			t.Fatal(err)
		}
		if !c.Caps().Has("pipelining") {
			t.Errorf("%q: capabilities after login %v", tc.capa, c.Caps())
		}
		c.Send("QUIT")
		c.Close()
		if got := s.commands(); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("CAPA %q: sent %q, want %q", tc.capa, got, tc.want)
		}
	}
	c, err := pop3client.Dial(startScripted(t, "+OK\r\n").addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login("u\r\nDELE 1", "p"); err == nil {
		t.Fatal("a user name with a line break was sent")
	}
}

func TestHeaders(t *testing.T) {
	s := startServer(t, pop3.ListenerConfig{}, testMessages...)
	c, err := pop3client.DialContext(context.Background(), s.addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Capa(); err != nil {
		t.Fatal(err)
	}
	if err := c.Login("alice", "secret"); err != nil {
		t.Fatal(err)
	}
	got := map[int]string{}
	err = c.Headers([]int{2, 7, 1}, 20, func(n int, h []byte) { got[n] = string(h) })
	// 7 does not exist; "Subject: dots\r\n" fits in 20 octets, "X: y" not with it.
	want := map[int]string{1: "Subject: one\r\n\r\n", 2: "Subject: dots\r\n\r\n"}
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("Headers: %v, %v; want %v", got, err, want)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

func TestTLS(t *testing.T) {
	ctx := context.Background()
	t.Run("STLS", func(t *testing.T) {
		s := startServer(t, pop3.ListenerConfig{TLS: pop3.TLSStartTLS}, testMessages...)
		c, err := pop3client.DialContext(ctx, s.addr, &pop3client.Options{TLS: pop3client.TLSStartTLS, TLSConfig: &tls.Config{RootCAs: s.pool}})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if _, ok := c.Conn().(*tls.Conn); !ok {
			t.Fatalf("connection %T after STLS", c.Conn())
		}
		if caps, err := c.Capa(); err != nil || caps.Has("STLS") {
			t.Fatalf("CAPA over TLS: %v, %v", caps, err)
		}
		if err := c.Login("alice", "secret"); err != nil {
			t.Fatal(err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("NoSTLS", func(t *testing.T) {
		s := startServer(t, pop3.ListenerConfig{})
		_, err := pop3client.DialContext(ctx, s.addr, &pop3client.Options{TLS: pop3client.TLSStartTLS})
		var resp *pop3client.ErrResponse
		if !errors.Is(err, pop3client.ErrNoSTLS) || !errors.As(err, &resp) || resp.Command != "STLS" {
			t.Fatalf("STLS on a server without it: %v", err)
		}
	})
	t.Run("Implicit", func(t *testing.T) {
		s := startServer(t, pop3.ListenerConfig{TLS: pop3.TLSImplicit}, testMessages...)
		c, err := pop3client.DialContext(ctx, s.addr, &pop3client.Options{TLS: pop3client.TLSImplicit, TLSConfig: &tls.Config{RootCAs: s.pool}})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login("alice", "secret"); err != nil {
			t.Fatal(err)
		}
		c.Quit()
		c, err = pop3client.DialTLS(s.addr, &tls.Config{RootCAs: s.pool})
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		_, err = pop3client.DialContext(ctx, s.addr, &pop3client.Options{TLS: pop3client.TLSImplicit})
		if err == nil || !strings.HasPrefix(err.Error(), "TLS with "+s.addr) {
			t.Fatalf("untrusted certificate: %v", err)
		}
	})
}

func TestDeadlines(t *testing.T) {
	silent := startScripted(t, "") // accepts and says nothing
	start := time.Now()
	_, err := pop3client.DialContext(context.Background(), silent.addr, &pop3client.Options{Timeout: 100 * time.Millisecond})
	if !errors.Is(err, os.ErrDeadlineExceeded) || !strings.HasPrefix(err.Error(), "greeting: ") {
		t.Fatalf("silent server: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := pop3client.DialContext(ctx, startScripted(t, "").addr, nil); err == nil {
		t.Fatal("a cancelled context left the connection open")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
}

// replay is a connection that answers with script, whatever is sent: no
// server goroutine allocates while the client is measured.
type replay struct {
	net.Conn // nil: only Read, Write and Close are used
	r        io.Reader
}

func (c replay) Read(p []byte) (int, error)  { return c.r.Read(p) }
func (c replay) Write(p []byte) (int, error) { return len(p), nil }
func (c replay) Close() error                { return nil }

// TestLean: a listing allocates the entries' values and nothing per line;
// streaming a message allocates nothing.
func TestLean(t *testing.T) {
	const runs, entries = 5, 200
	var listing, retr strings.Builder
	listing.WriteString("+OK\r\n")
	for i := range entries {
		fmt.Fprintf(&listing, "%d %d\r\n", i+1, 1000+i)
	}
	listing.WriteString(".\r\n")
	msg := strings.Repeat("line of a message\r\n", 50) + strings.Repeat("long", 5000) + "\r\n"
	retr.WriteString("+OK\r\n" + strings.ReplaceAll(msg, "\r\nl", "\r\n..l") + ".\r\n")
	// AllocsPerRun runs f once more than asked.
	script := "+OK\r\n" + strings.Repeat(listing.String(), runs+1) + strings.Repeat(retr.String(), runs+1)
	c, err := pop3client.NewClient(replay{r: strings.NewReader(script)})
	if err != nil {
		t.Fatal(err)
	}
	list := make([]pop3client.Entry, 0, entries)
	listAllocs := testing.AllocsPerRun(runs, func() {
		list, err = c.AppendListing(list[:0], "LIST")
		if err != nil || len(list) != entries || list[7] != (pop3client.Entry{N: 8, Value: "1007"}) {
			t.Fatalf("LIST: %d entries, %v", len(list), err)
		}
	})
	want := int64(len(strings.ReplaceAll(msg, "\r\nl", "\r\n.l")))
	retrAllocs := testing.AllocsPerRun(runs, func() {
		r, err := c.RetrReader(7)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, r); err != nil || n != want {
			t.Fatalf("RETR: %d octets, %v; want %d", n, err, want)
		}
	})
	t.Logf("allocations: LIST of %d messages %.0f, RETR %.0f", entries, listAllocs, retrAllocs)
	if listAllocs > entries+2 {
		t.Errorf("LIST of %d messages: %.0f allocations", entries, listAllocs)
	}
	if retrAllocs > 0 {
		t.Errorf("RetrReader and io.Copy: %.0f allocations", retrAllocs)
	}
}
