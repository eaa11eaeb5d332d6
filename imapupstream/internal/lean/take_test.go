package lean

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// goimap plays go-imap's reading goroutine: it reads l into got until the
// connection fails.
type goimap struct {
	mu   sync.Mutex
	got  bytes.Buffer
	done chan error
}

func readLikeGoIMAP(l *Conn) *goimap {
	g := &goimap{done: make(chan error, 1)}
	go func() {
		buf := make([]byte, 4096) // go-imap's bufio.Reader
		for {
			n, err := l.Read(buf)
			g.mu.Lock()
			g.got.Write(buf[:n])
			g.mu.Unlock()
			if err != nil {
				g.done <- err
				return
			}
		}
	}()
	return g
}

func (g *goimap) seen() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.got.String()
}

// waitFor waits until go-imap's side has seen want.
func (g *goimap) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for g.seen() != want {
		if time.Now().After(deadline) {
			t.Fatalf("go-imap saw %q, want %q", g.seen(), want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTake: Take parks go-imap's reader while it is blocked on the
// connection, in the middle of a response too; Direct then reads the
// stream itself, and go-imap gets, after Release, what was passed on and
// what Direct had read beyond its last line, in order, with nothing lost or
// read twice.
func TestTake(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	l := New(client)
	g := readLikeGoIMAP(l)
	write := func(s string) {
		if _, err := server.Write([]byte(s)); err != nil {
			t.Error(err)
		}
	}

	// go-imap is in the middle of a response with a literal.
	write("* 1 EXISTS\r\n* 1 FETCH (FLAGS () BODY[HEADER] {10}\r\nab")
	g.waitFor(t, "* 1 EXISTS\r\n* 1 FETCH (FLAGS () BODY[HEADER] {10}\r\nab")

	took := make(chan *Direct, 1)
	go func() {
		d, err := l.Take()
		if err != nil {
			t.Error(err)
		}
		took <- d
	}()
	// Once the reader has parked, Take reads the rest of that response
	// itself, to pass it on.
	for parked := false; !parked; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		parked = l.tk != nil && l.tk.signaled
		l.mu.Unlock()
	}
	write("cdefghij)\r\n")
	d := <-took
	if d == nil {
		t.FailNow()
	}

	// Ours, and unilateral data in between, then more for go-imap that
	// Direct reads ahead of its last line.
	go write("* 2 EXPUNGE\r\nL1 OK done\r\n* 5 EXISTS\r\n* 3 FE")
	line, err := d.Line()
	if err != nil || string(line) != "* 2 EXPUNGE\r\n" {
		t.Fatalf("%q, %v", line, err)
	}
	d.Pass(line)
	if line, err = d.Line(); err != nil || string(line) != "L1 OK done\r\n" {
		t.Fatalf("%q, %v", line, err)
	}
	time.Sleep(10 * time.Millisecond) // go-imap stays parked meanwhile
	if got := g.seen(); got != "* 1 EXISTS\r\n* 1 FETCH (FLAGS () BODY[HEADER] {10}\r\nab" {
		t.Fatalf("go-imap read while parked: %q", got)
	}
	want := "* 1 EXISTS\r\n* 1 FETCH (FLAGS () BODY[HEADER] {10}\r\nabcdefghij)\r\n"
	d.Shrink() // something is buffered: kept
	d.Release()
	write("TCH (FLAGS ())\r\n")
	g.waitFor(t, want+"* 2 EXPUNGE\r\n* 5 EXISTS\r\n* 3 FETCH (FLAGS ())\r\n")

	// Taken again at a line start, reading a literal straight into p.
	d, err = l.Take()
	if err != nil {
		t.Fatal(err)
	}
	go write("* 4 FETCH (UID 9 BODY[] {6}\r\nhello!)\r\n")
	if line, err = d.Line(); err != nil || string(line) != "* 4 FETCH (UID 9 BODY[] {6}\r\n" {
		t.Fatalf("%q, %v", line, err)
	}
	body := make([]byte, 6)
	if _, err := io.ReadFull(d, body); err != nil || string(body) != "hello!" {
		t.Fatalf("%q, %v", body, err)
	}
	if line, err = d.Line(); err != nil || string(line) != ")\r\n" {
		t.Fatalf("%q, %v", line, err)
	}
	d.Shrink()
	d.Release()
	before := g.seen()
	write("* BYE\r\n")
	g.waitFor(t, before+"* BYE\r\n")

	// The connection fails while taken: Take reports it, go-imap gets it.
	server.Close()
	if err := <-g.done; err != io.EOF {
		t.Fatalf("go-imap's reader ended with %v", err)
	}
	if _, err := l.Take(); err == nil {
		t.Fatal("Take of a connection whose reader has ended")
	}
}

// TestTakeReaderEnds: go-imap's reader meets the connection's end while a
// Take waits for it to park: Take fails instead of hanging.
func TestTakeReaderEnds(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	l := New(&noDeadlineConn{client})
	g := readLikeGoIMAP(l)
	go server.Write([]byte("* 1 EXISTS\r\n"))
	g.waitFor(t, "* 1 EXISTS\r\n") // and it reads on, blocked
	errc := make(chan error, 1)
	go func() {
		_, err := l.Take()
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	server.Close()
	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Take succeeded on an ended connection")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Take hangs")
	}
	<-g.done
}

// noDeadlineConn ignores read deadlines, so that only the connection's
// end can wake a blocked read.
type noDeadlineConn struct{ net.Conn }

func (noDeadlineConn) SetReadDeadline(time.Time) error { return nil }

// TestReadLast: the last octets of a literal come through the buffer,
// with the answer's end read in the same read: once the server has hung
// up, the lines after the literal are still there.
func TestReadLast(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	l := New(client)
	readLikeGoIMAP(l)
	d, err := l.Take()
	if err != nil {
		t.Fatal(err)
	}
	go server.Write([]byte("* 4 FETCH (UID 9 BODY[] {6}\r\nhel"))
	if line, err := d.Line(); err != nil || string(line) != "* 4 FETCH (UID 9 BODY[] {6}\r\n" {
		t.Fatalf("%q, %v", line, err)
	}
	body := make([]byte, 6)
	if n, err := d.Read(body); err != nil || string(body[:n]) != "hel" {
		t.Fatalf("Read %q, %v", body[:n], err)
	}
	wrote := make(chan error, 1)
	go func() { _, err := server.Write([]byte("lo!)\r\nL1 OK done\r\n")); wrote <- err }()
	if n, err := d.ReadLast(body[3:]); err != nil || string(body[3:3+n]) != "lo!" {
		t.Fatalf("ReadLast %q, %v", body[3:3+n], err)
	}
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("the answer's end was not read with the literal's last octets")
	}
	server.Close()
	for _, want := range []string{")\r\n", "L1 OK done\r\n"} {
		if line, err := d.Line(); err != nil || string(line) != want {
			t.Fatalf("Line = %q, %v; want %q", line, err, want)
		}
	}
	d.Release()
}
