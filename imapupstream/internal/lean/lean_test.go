package lean

import (
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"reflect"
	"testing"
	"time"
)

// chunkConn serves a fixed byte stream in chunks of the given sizes (then
// the rest), as a network would, and EOF at the end.
type chunkConn struct {
	net.Conn
	data   []byte
	chunks []int
	onRead func() // once, as the next Read starts (while go-imap is "blocked" in it)
}

func (c *chunkConn) Read(p []byte) (int, error) {
	if f := c.onRead; f != nil {
		c.onRead = nil
		f()
	}
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := len(c.data)
	if len(c.chunks) > 0 {
		n, c.chunks = min(c.chunks[0], n), c.chunks[1:]
	}
	n = copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func (c *chunkConn) Write(p []byte) (int, error)     { return len(p), nil }
func (c *chunkConn) SetReadDeadline(time.Time) error { return nil }

// The stream of a lean snapshot with everything a server may put around
// and inside it; want is what go-imap must see, in order.
const (
	leanBefore = "* 3 EXISTS\r\n* 1 FETCH (FLAGS (\\Seen) BODY[] {13}\r\nL1 OK {3}\r\n\r\n)\r\n"
	leanDuring = "* 1 FETCH (UID 7 RFC822.SIZE 100)\r\n" +
		"* 2 EXPUNGE\r\n" +
		"* 2 FETCH (RFC822.SIZE 250 UID 9)\r\n" +
		"* OK [ALERT] literal ahead {5}\r\nL1 OK)\r\n" +
		"* 3 fetch (uid 12 rfc822.size 0)\r\n"
	leanEnd    = "L1 OK Fetch completed.\r\n"
	leanAfter  = "* 4 EXISTS\r\n"
	leanGoIMAP = leanBefore + "* 2 EXPUNGE\r\n" + "* OK [ALERT] literal ahead {5}\r\nL1 OK)\r\n" + leanAfter
)

// meta is one message of a snapshot.
type meta struct {
	UID  uint32
	Size int64
}

func runLean(t *testing.T, chunks []int, startAfter int) ([]byte, []meta, error) {
	t.Helper()
	// The command's answer exists only once the command is armed (and
	// then written).
	src := &chunkConn{data: []byte(leanBefore), chunks: chunks}
	l := New(src)
	var metas []meta
	cmd := &Command{Tag: "L1", Line: func(line []byte) bool {
		uid, size, ok := ParseSizeFetch(line)
		if ok {
			metas = append(metas, meta{UID: uid, Size: size})
		}
		return ok
	}}
	var got []byte
	buf := make([]byte, 7) // go-imap's reads may be small too
	armed := false
	var done error
	for {
		if !armed && len(got) >= startAfter {
			l.Start(cmd)
			armed = true
			src.data = append(src.data, leanDuring+leanEnd+leanAfter...)
		}
		n, err := l.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			break
		}
	}
	select {
	case done = <-cmd.Done():
	default:
		t.Fatal("the lean command never completed")
	}
	return got, metas, done
}

func TestLeanConnSortsTheStream(t *testing.T) {
	wantMetas := []meta{{7, 100}, {9, 250}, {12, 0}}
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range 300 {
		var chunks []int
		for range 40 {
			chunks = append(chunks, 1+rnd.IntN(40))
		}
		// Armed at once, or partway through what comes before (even in
		// the middle of its literal): the capture starts at the next
		// response of its own.
		startAfter := []int{0, 5, 30, 55, len(leanBefore) - 3}[i%5]
		got, metas, err := runLean(t, chunks, startAfter)
		if err != nil {
			t.Fatalf("chunks %v: completion %v", chunks, err)
		}
		if string(got) != leanGoIMAP {
			t.Fatalf("chunks %v, armed after %d: go-imap got\n%q\nwant\n%q", chunks, startAfter, got, leanGoIMAP)
		}
		if !reflect.DeepEqual(metas, wantMetas) {
			t.Fatalf("chunks %v: captured %v, want %v", chunks, metas, wantMetas)
		}
	}
}

// The usual order in life: go-imap's goroutine already waits in Read
// (straight into its own buffer) when the command is armed and its answer
// arrives in that very read.
func TestLeanConnArmedDuringRead(t *testing.T) {
	src := &chunkConn{}
	l := New(src)
	var got []uint32
	cmd := &Command{Tag: "L1", Line: func(line []byte) bool {
		uid, _, ok := ParseSizeFetch(line)
		if ok {
			got = append(got, uid)
		}
		return ok
	}}
	src.onRead = func() {
		l.Start(cmd)
		src.data = []byte("* 1 FETCH (UID 5 RFC822.SIZE 9)\r\nL1 OK done\r\n* 2 EXISTS\r\n")
	}
	all, _ := io.ReadAll(l)
	if err := <-cmd.Done(); err != nil || len(got) != 1 || got[0] != 5 {
		t.Fatalf("captured %v, completion %v", got, err)
	}
	if string(all) != "* 2 EXISTS\r\n" {
		t.Fatalf("go-imap got %q", all)
	}
}

func TestLeanConnFailedCommand(t *testing.T) {
	src := &chunkConn{data: []byte("* 1 FETCH (UID 1 RFC822.SIZE 5)\r\nL1 NO [SERVERBUG] oops\r\n* BYE\r\n")}
	l := New(src)
	cmd := &Command{Tag: "L1", Line: func([]byte) bool { return true }}
	l.Start(cmd)
	got, _ := io.ReadAll(l)
	if err := <-cmd.Done(); err == nil || !bytes.Contains([]byte(err.Error()), []byte("SERVERBUG")) {
		t.Fatalf("completion %v, want the NO", err)
	}
	if string(got) != "* BYE\r\n" {
		t.Fatalf("go-imap got %q", got)
	}
}

func TestLeanConnConnectionLost(t *testing.T) {
	src := &chunkConn{data: []byte("* 1 FETCH (UID 1 RFC822.SIZE 5)\r\n* 2 FETCH (UI")}
	l := New(src)
	cmd := &Command{Tag: "L1", Line: func([]byte) bool { return true }}
	l.Start(cmd)
	io.ReadAll(l)
	if err := <-cmd.Done(); err == nil {
		t.Fatal("a cut connection completed the command")
	}
}

func TestParseSizeFetch(t *testing.T) {
	for _, c := range []struct {
		line string
		uid  uint32
		size int64
		ok   bool
	}{
		{"* 1 FETCH (UID 7 RFC822.SIZE 100)\r\n", 7, 100, true},
		{"* 1 FETCH (RFC822.SIZE 100 UID 7)\r\n", 7, 100, true},
		{"* 123456 FETCH (UID 4294967295 RFC822.SIZE 0)\r\n", 4294967295, 0, true},
		{"* 1 FETCH (UID 4294967296 RFC822.SIZE 1)\r\n", 0, 0, false},
		{"* 1 FETCH (UID 0 RFC822.SIZE 1)\r\n", 0, 0, false},
		{"* 1 FETCH (UID 7)\r\n", 0, 0, false},
		{"* 1 FETCH (UID 7 FLAGS (\\Seen))\r\n", 0, 0, false},
		{"* 1 FETCH (UID 7 RFC822.SIZE 100 FLAGS ())\r\n", 0, 0, false},
		{"* 1 FETCH (UID 7 UID 8)\r\n", 0, 0, false},
		{"* 1 FETCH (UID 7 RFC822.SIZE -1)\r\n", 0, 0, false},
		{"* 1 FETCH (UID 7 RFC822.SIZE 10)\n", 0, 0, false},
		{"* X FETCH (UID 7 RFC822.SIZE 10)\r\n", 0, 0, false},
		{"* 1 EXISTS\r\n", 0, 0, false},
	} {
		uid, size, ok := ParseSizeFetch([]byte(c.line))
		if ok != c.ok || (ok && (uid != c.uid || size != c.size)) {
			t.Errorf("%q: got %d %d %v", c.line, uid, size, ok)
		}
	}
	if !IsFetch([]byte("* 9 Fetch (FLAGS ())\r\n")) || IsFetch([]byte("* 9 EXPUNGE\r\n")) {
		t.Error("isFetch")
	}
}

// track finds a literal at the end of a line however long the line and
// however it is cut, and the tail it keeps for that stays small: a
// connection keeps it for as long as it lives.
func TestTrackLongLines(t *testing.T) {
	long := "* OK [CAPABILITY " + string(bytes.Repeat([]byte("X-SOME-CAPABILITY "), 40)) + "] {4}\r\n"
	stream := long + "a\r\nb" + ")\r\n* 1 EXISTS\r\n"
	for _, cut := range []int{1, 7, 31, 32, 33, 100, len(long) - 3, len(long)} {
		l := New(nil)
		for s := stream; len(s) > 0; {
			n := min(cut, len(s))
			l.track([]byte(s[:n]))
			s = s[n:]
			if cap(l.tail) > 64 {
				t.Fatalf("cut %d: tail capacity %d", cut, cap(l.tail))
			}
		}
		if !l.lineStart || l.literal != 0 {
			t.Fatalf("cut %d: lineStart %v, literal %d after the stream", cut, l.lineStart, l.literal)
		}
		l = New(nil)
		l.track([]byte(long))
		if l.literal != 4 {
			t.Fatalf("literal %d, want 4", l.literal)
		}
	}
}
