package faultrelay_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/faultrelay"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// server is a loopback TCP server running handler on each connection, closed
// (and waited for) when the test ends.
func server(t *testing.T, handler func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handler(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func echo(c net.Conn) { io.Copy(c, c) }

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// imapish builds a client stream of commands with literals whose contents
// look like commands and responses.
func imapish(rng *rand.Rand, size int) []byte {
	var b bytes.Buffer
	for tag := 0; b.Len() < size; tag++ {
		switch rng.IntN(3) {
		case 0:
			lit := make([]byte, rng.IntN(5000))
			for i := range lit {
				lit[i] = byte(rng.IntN(256))
			}
			lit = append(lit, "\r\nx UID EXPUNGE 1\r\n* CAPABILITY UIDPLUS\r\n"...)
			b.WriteString("a APPEND INBOX {" + itoa(len(lit)) + "+}\r\n")
			b.Write(lit)
			b.WriteString("\r\n")
		case 1:
			b.WriteString("a NOOP\r\n")
		default:
			b.WriteString("a UID FETCH 1:* (UID RFC822.SIZE)\r\n")
		}
	}
	return b.Bytes()
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var d []byte
	for ; n > 0; n /= 10 {
		d = append([]byte{byte('0' + n%10)}, d...)
	}
	return string(d)
}

// roundTrip writes data through the relay to an echo server and reads it
// back.
func roundTrip(t *testing.T, addr string, data []byte) []byte {
	t.Helper()
	c := dial(t, addr)
	go func() {
		// Uneven writes, so lines straddle reads.
		rng := rand.New(rand.NewPCG(7, 7))
		for p := data; len(p) > 0; {
			k := min(len(p), 1+rng.IntN(3000))
			if _, err := c.Write(p[:k]); err != nil {
				return
			}
			p = p[k:]
		}
	}()
	got := make([]byte, len(data))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("read back: %v", err)
	}
	return got
}

func TestPassThroughIsExact(t *testing.T) {
	r := faultrelay.Start(t, server(t, echo))
	data := imapish(rand.New(rand.NewPCG(1, 2)), 1<<20)
	if got := roundTrip(t, r.Addr(), data); !bytes.Equal(got, data) {
		t.Fatal("bytes changed on the way")
	}
	// With line-level faults armed that match nothing here, lines are held
	// and parsed, literals skipped: still the same bytes.
	r.CutOnCommand("UID EXPUNGE", "")
	r.HideCapabilities("UIDPLUS")
	if got := roundTrip(t, r.Addr(), data); !bytes.Equal(got, data) {
		t.Fatal("bytes changed on the way with line faults armed")
	}
	if r.Conns() > 2 || r.Accepted() != 2 {
		t.Errorf("Conns %d, Accepted %d", r.Conns(), r.Accepted())
	}
}

func TestCutAfterBytes(t *testing.T) {
	payload := bytes.Repeat([]byte("0123456789"), 10000)
	r := faultrelay.Start(t, server(t, func(c net.Conn) { c.Write(payload) }))
	f := r.CutAfterBytes(faultrelay.ServerToClient, 12345)
	got, err := io.ReadAll(dial(t, r.Addr()))
	if err != nil || !bytes.Equal(got, payload[:12345]) {
		t.Fatalf("got %d bytes (%v), want the first 12345", len(got), err)
	}
	if !f.HasFired() {
		t.Fatal("fault did not fire")
	}
	// One-shot: the next connection gets everything.
	c := dial(t, r.Addr())
	if got, _ := io.ReadAll(c); !bytes.Equal(got, payload) {
		t.Fatalf("after the fault fired: %d bytes, want %d", len(got), len(payload))
	}
	c.Close() // the server closed its side already: now the relay lets go
	waitConns(t, r, 0)
}

func waitConns(t *testing.T, r *faultrelay.Relay, n int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for r.Conns() != n {
		if time.Now().After(deadline) {
			t.Fatalf("relay has %d connections, want %d", r.Conns(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// lineServer greets with caps and records the lines it receives (skipping
// literals the way a server would: here by reading {n+} literals).
type lineServer struct {
	mu    sync.Mutex
	lines []string
	done  chan struct{}
}

func newLineServer(t *testing.T, greeting string) (*lineServer, string) {
	ls := &lineServer{done: make(chan struct{}, 16)}
	addr := server(t, func(c net.Conn) {
		defer func() { ls.done <- struct{}{} }()
		io.WriteString(c, greeting)
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			ls.mu.Lock()
			ls.lines = append(ls.lines, strings.TrimRight(line, "\r\n"))
			ls.mu.Unlock()
			if strings.HasSuffix(line, "+}\r\n") {
				i := strings.LastIndexByte(line, '{')
				n := 0
				for _, ch := range line[i+1 : len(line)-4] {
					n = n*10 + int(ch-'0')
				}
				io.CopyN(io.Discard, br, int64(n))
			}
			io.WriteString(c, "* OK got it\r\n")
		}
	})
	return ls, addr
}

func (ls *lineServer) got() []string {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return append([]string(nil), ls.lines...)
}

func TestCutOnCommand(t *testing.T) {
	for _, forward := range []bool{false, true} {
		t.Run(map[bool]string{false: "before", true: "after"}[forward], func(t *testing.T) {
			ls, addr := newLineServer(t, "* OK hi\r\n")
			r := faultrelay.Start(t, addr)
			var f *faultrelay.Fault
			if forward {
				f = r.CutAfterCommand("uid  expunge", "")
			} else {
				f = r.CutOnCommand("uid expunge", "")
			}
			notFetch := r.CutOnCommand("UID FETCH", "BODY.PEEK[]")
			c := dial(t, r.Addr())
			lit := "x UID EXPUNGE 1\r\n"
			io.WriteString(c, "a1 NOOP\r\na2 APPEND INBOX {"+itoa(len(lit))+"+}\r\n"+lit+"\r\n"+
				"a3 UID FETCH 1:* (UID RFC822.SIZE)\r\na4 UID EXPUN")
			time.Sleep(50 * time.Millisecond) // the line is held until its end
			io.WriteString(c, "GE 1:3\r\na5 NOOP\r\n")
			io.ReadAll(c)
			<-ls.done
			if !f.HasFired() || notFetch.HasFired() {
				t.Fatalf("fired: expunge %v, fetch %v", f.HasFired(), notFetch.HasFired())
			}
			want := []string{"a1 NOOP", "a2 APPEND INBOX {17+}", "", "a3 UID FETCH 1:* (UID RFC822.SIZE)"}
			if forward {
				want = append(want, "a4 UID EXPUNGE 1:3")
			}
			if got := ls.got(); strings.Join(got, "|") != strings.Join(want, "|") {
				t.Fatalf("server got %q, want %q", got, want)
			}
			if got := strings.Join(r.Commands(), "|"); got != "NOOP|APPEND INBOX {17+}|UID FETCH 1:* (UID RFC822.SIZE)|UID EXPUNGE 1:3" {
				t.Errorf("Commands() = %q", got)
			}
			// The BODY.PEEK[] cut still waits for its command.
			c2 := dial(t, r.Addr())
			io.WriteString(c2, "b1 UID FETCH 7 (UID BODY.PEEK[])\r\n")
			io.ReadAll(c2)
			if !notFetch.HasFired() {
				t.Fatal("UID FETCH … BODY.PEEK[] did not fire")
			}
		})
	}
}

func TestHideCapabilities(t *testing.T) {
	lit := "* CAPABILITY IMAP4rev1 UIDPLUS MOVE\r\n"
	greeting := "* OK [ALERT] \xff\xfe 8-bit \xe4 text [CAPABILITY IMAP4rev1 UIDPLUS IDLE MOVE] ready\r\n" +
		"* CAPABILITY IMAP4rev1 uidplus MOVE IDLE\r\n" +
		"* 1 FETCH (BODY[] {" + itoa(len(lit)) + "}\r\n" + lit + ")\r\n" +
		"a1 OK [CAPABILITY IMAP4rev1 MOVE] Logged in\r\n"
	_, addr := newLineServer(t, greeting)
	r := faultrelay.Start(t, addr)
	r.HideCapabilities("UIDPLUS", "move")
	c := dial(t, r.Addr())
	want := "* OK [ALERT] \xff\xfe 8-bit \xe4 text [CAPABILITY IMAP4rev1 IDLE] ready\r\n" +
		"* CAPABILITY IMAP4rev1 IDLE\r\n" +
		"* 1 FETCH (BODY[] {" + itoa(len(lit)) + "}\r\n" + lit + ")\r\n" +
		"a1 OK [CAPABILITY IMAP4rev1] Logged in\r\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != want {
		t.Fatalf("got %q (%v), want %q", got, err, want)
	}
	r.HideCapabilities()
	c2 := dial(t, r.Addr())
	got = make([]byte, len(greeting))
	if _, err := io.ReadFull(c2, got); err != nil || string(got) != greeting {
		t.Fatalf("unfiltered: got %q (%v)", got, err)
	}
}

func TestStallAndRelease(t *testing.T) {
	r := faultrelay.Start(t, server(t, echo))
	c := dial(t, r.Addr())
	r.Stall(faultrelay.ClientToServer)
	io.WriteString(c, "ping\r\n")
	c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	buf := make([]byte, 6)
	if _, err := io.ReadFull(c, buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a stall: %q, %v", buf, err)
	}
	r.Release()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping\r\n" {
		t.Fatalf("after Release: %q, %v", buf, err)
	}

	// StallAfterBytes: 4 bytes go through, then nothing until Release.
	f := r.StallAfterBytes(faultrelay.ServerToClient, 4)
	io.WriteString(c, "abcdefgh")
	if _, err := io.ReadFull(c, buf[:4]); err != nil || string(buf[:4]) != "abcd" {
		t.Fatalf("before the stall: %q, %v", buf[:4], err)
	}
	<-f.Fired()
	c.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	if n, err := c.Read(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read through a stall: %q, %v", buf[:n], err)
	}
	r.Release()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, buf[:4]); err != nil || string(buf[:4]) != "efgh" {
		t.Fatalf("after Release: %q, %v", buf[:4], err)
	}
}

func TestLatencyAndRate(t *testing.T) {
	r := faultrelay.Start(t, server(t, echo))
	c := dial(t, r.Addr())
	r.SetLatency(faultrelay.BothDirs, 60*time.Millisecond)
	start := time.Now()
	io.WriteString(c, "x")
	io.ReadFull(c, make([]byte, 1))
	if d := time.Since(start); d < 120*time.Millisecond {
		t.Errorf("round trip with 60 ms each way took %v", d)
	}
	r.Disarm()
	r.SetRate(faultrelay.ServerToClient, 200<<10)
	data := bytes.Repeat([]byte("y"), 100<<10)
	start = time.Now()
	if got := roundTrip(t, r.Addr(), data); !bytes.Equal(got, data) {
		t.Fatal("rate limit changed the bytes")
	}
	if d := time.Since(start); d < 400*time.Millisecond {
		t.Errorf("100 KiB at 200 KiB/s took %v", d)
	}
}

func TestRefuseAndCutAll(t *testing.T) {
	r := faultrelay.Start(t, server(t, func(c net.Conn) { io.WriteString(c, "* OK hi\r\n"); echo(c) }))
	r.Refuse(true)
	// The reset may even beat the end of the dial.
	if c, err := net.DialTimeout("tcp", r.Addr(), 2*time.Second); err == nil {
		c.SetDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 10))
		c.Close()
		if err == nil {
			t.Fatalf("refused connection read %d bytes", n)
		}
	}
	r.Refuse(false)
	c2 := dial(t, r.Addr())
	line, err := bufio.NewReader(c2).ReadString('\n')
	if err != nil || line != "* OK hi\r\n" {
		t.Fatalf("after Refuse(false): %q, %v", line, err)
	}
	r.CutAll()
	if _, err := c2.Read(make([]byte, 10)); err == nil {
		t.Fatal("connection still open after CutAll")
	}
	waitConns(t, r, 0)
}

// TestCloseEndsEverything: Close with stalled, busy connections returns
// promptly, and TestMain's goleak checks that nothing is left running.
func TestCloseEndsEverything(t *testing.T) {
	addr := server(t, func(c net.Conn) {
		for {
			if _, err := c.Write(bytes.Repeat([]byte("z"), 4096)); err != nil {
				return
			}
		}
	})
	r, err := faultrelay.New(addr)
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		dial(t, r.Addr())
	}
	waitConns(t, r, 3)
	r.Stall(faultrelay.BothDirs)
	r.SetLatency(faultrelay.BothDirs, time.Hour)
	start := time.Now()
	r.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v", d)
	}
	r.Close() // again: no-op
	if c, err := net.DialTimeout("tcp", r.Addr(), time.Second); err == nil {
		c.Close()
		t.Error("still accepting after Close")
	}
}

// TestCutAfterCommandLosesTheAnswer: the server answers at once, and the
// answer to the forwarded command still never reaches the client (the
// proxy's UPDATE fault tests rely on it: "the server got it, the client
// never learns"). Many rounds: without the mute, the answer slipped through
// within the first few.
func TestCutAfterCommandLosesTheAnswer(t *testing.T) {
	addr := server(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			tag, _, _ := strings.Cut(line, " ")
			io.WriteString(c, tag+" OK done\r\n")
		}
	})
	r := faultrelay.Start(t, addr)
	for round := range 200 {
		f := r.CutAfterCommand("UID EXPUNGE", "")
		c := dial(t, r.Addr())
		io.WriteString(c, "a1 NOOP\r\n")
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "a1 OK done\r\n" {
			t.Fatalf("round %d: NOOP: %q, %v", round, line, err)
		}
		io.WriteString(c, "a2 UID EXPUNGE 1\r\n")
		rest, _ := io.ReadAll(c)
		c.Close()
		if !f.HasFired() {
			t.Fatalf("round %d: the cut did not fire", round)
		}
		if len(rest) != 0 {
			t.Fatalf("round %d: the client got %q after the forwarded command", round, rest)
		}
	}
}
