package pop3

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
)

// stuff runs chunks through a dotWriter and returns the wire bytes.
func stuff(t testing.TB, chunks ...string) string {
	t.Helper()
	return stuffOpt(t, false, chunks...)
}

// stuffOpt is stuff with the OutlookNoNULs option.
func stuffOpt(t testing.TB, noNULs bool, chunks ...string) string {
	t.Helper()
	var out bytes.Buffer
	bw := bufio.NewWriterSize(&out, 16) // small, so the buffer fills often
	var d dotWriter
	d.reset(bw)
	d.noNULs = noNULs
	for _, ch := range chunks {
		n, err := d.Write([]byte(ch))
		if err != nil || n != len(ch) {
			t.Fatalf("Write(%q) = %d, %v", ch, n, err)
		}
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if err := bw.Flush(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}

func TestDotWriter(t *testing.T) {
	long := strings.Repeat("x", 70000) // longer than any buffer involved
	tests := []struct {
		name   string
		chunks []string
		want   string
	}{
		{"empty message", nil, ".\r\n"},
		{"empty writes", []string{"", ""}, ".\r\n"},
		{"one line", []string{"hello\r\n"}, "hello\r\n.\r\n"},
		{"no final CRLF", []string{"hello"}, "hello\r\n.\r\n"},
		{"only a dot line", []string{".\r\n"}, "..\r\n.\r\n"},
		{"dot at the very start", []string{".hidden\r\n"}, "..hidden\r\n.\r\n"},
		{"a lone dot without line end", []string{"."}, "..\r\n.\r\n"},
		{"dot lines inside", []string{"a\r\n.\r\nb\r\n"}, "a\r\n..\r\nb\r\n.\r\n"},
		{"two dots", []string{"..two\r\n"}, "...two\r\n.\r\n"},
		{"dot not at line start", []string{"a.b\r\n x.\r\n"}, "a.b\r\n x.\r\n.\r\n"},
		{"bare LF", []string{"a\nb\n"}, "a\r\nb\r\n.\r\n"},
		{"bare LF then dot", []string{"a\n.\n"}, "a\r\n..\r\n.\r\n"},
		{"empty lines", []string{"\r\n\n\r\n"}, "\r\n\r\n\r\n.\r\n"},
		{"leading bare LF", []string{"\nx"}, "\r\nx\r\n.\r\n"},
		{"CRLF split across writes", []string{"a\r", "\nb\r\n"}, "a\r\nb\r\n.\r\n"},
		{"CRLF split, then dot", []string{"a\r", "\n", ".b\r\n"}, "a\r\n..b\r\n.\r\n"},
		{"dot in its own write", []string{"a\r\n", ".", "\r\n"}, "a\r\n..\r\n.\r\n"},
		{"lone CR is data", []string{"a\rb\r\n"}, "a\rb\r\n.\r\n"},
		{"lone CR then dot", []string{"a\r.\r\n"}, "a\r.\r\n.\r\n"},
		{"trailing lone CR", []string{"a\r"}, "a\r\r\n.\r\n"},
		{"CR CR LF", []string{"a\r\r\n"}, "a\r\r\n.\r\n"},
		{"one byte at a time", strings.Split("x\r\n.\r\n..\n.", ""), "x\r\n..\r\n...\r\n..\r\n.\r\n"},
		{"long line", []string{long + "\r\n." + long}, long + "\r\n.." + long + "\r\n.\r\n"},
		{"NUL passes", []string{"a\x00b\r\n"}, "a\x00b\r\n.\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := stuff(t, tt.chunks...); got != tt.want {
				t.Errorf("got  %q\nwant %q", abbrev(got), abbrev(tt.want))
			}
		})
	}
}

func abbrev(s string) string {
	if len(s) > 200 {
		return s[:90] + "…" + s[len(s)-90:]
	}
	return s
}

// checkFraming checks what any output of the dotWriter must be: CRLF line
// endings only, the terminator only at the end, and a body that un-stuffs
// to the normalized input.
func checkFraming(t testing.TB, in []byte, wire string) {
	t.Helper()
	if !strings.HasSuffix(wire, ".\r\n") {
		t.Fatalf("no terminator: %q", abbrev(wire))
	}
	for i := 0; i < len(wire); i++ {
		if wire[i] == '\n' && (i == 0 || wire[i-1] != '\r') {
			t.Fatalf("bare LF at %d in %q", i, abbrev(wire))
		}
	}
	if i := strings.Index("\r\n"+wire, "\r\n.\r\n"); i != len(wire)-3 {
		t.Fatalf("terminator at %d, want only at the end (%d): %q", i, len(wire)-3, abbrev(wire))
	}
	got, err := readMultiline(bufio.NewReader(strings.NewReader(wire)))
	if err != nil {
		t.Fatalf("reading back: %v", err)
	}
	if want := normalize(in); !bytes.Equal(got, want) {
		t.Fatalf("round trip:\n got %q\nwant %q", abbrev(string(got)), abbrev(string(want)))
	}
}

// chunked splits b into pieces of pseudo-random sizes up to max.
func chunked(r *rand.Rand, b []byte, max int) []string {
	var out []string
	for len(b) > 0 {
		n := 1 + r.IntN(max)
		n = min(n, len(b))
		out = append(out, string(b[:n]))
		b = b[n:]
	}
	return out
}

func TestDotWriterRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	// An alphabet heavy in the bytes that matter, so that dots at line
	// starts, CRLFs split across writes and bare CRs and LFs all occur.
	alphabet := []byte("..\r\n\r\n\nab \x00")
	for i := range 2000 {
		msg := make([]byte, r.IntN(200))
		for j := range msg {
			msg[j] = alphabet[r.IntN(len(alphabet))]
		}
		maxChunk := 1 + r.IntN(20)
		if i%10 == 0 {
			maxChunk = 4096
		}
		checkFraming(t, msg, stuff(t, chunked(r, msg, maxChunk)...))
	}
}

func TestDotWriterNoNULs(t *testing.T) {
	for _, tt := range []struct {
		chunks []string
		want   string
	}{
		{[]string{"a\x00b\r\n"}, "a\x80b\r\n.\r\n"},
		{[]string{"\x00"}, "\x80\r\n.\r\n"},
		{[]string{"\x00\x00\n\x00.\n"}, "\x80\x80\r\n\x80.\r\n.\r\n"},
		{[]string{".\x00\r\n"}, "..\x80\r\n.\r\n"},
		{[]string{"a\x00", "\x00\r", "\n\x00"}, "a\x80\x80\r\n\x80\r\n.\r\n"},
		{[]string{"x\x80y\r\n"}, "x\x80y\r\n.\r\n"},
	} {
		if got := stuffOpt(t, true, tt.chunks...); got != tt.want {
			t.Errorf("%q: got %q, want %q", tt.chunks, got, tt.want)
		}
		// Off, NULs pass untouched.
		if got := stuff(t, tt.chunks...); strings.Count(got, "\x00") != strings.Count(strings.Join(tt.chunks, ""), "\x00") {
			t.Errorf("%q without noNULs: %q", tt.chunks, got)
		}
	}
}

func TestDotWriterCRLFExact(t *testing.T) {
	// A message that already is proper CRLF text with no dot lines passes
	// through byte for byte.
	msg := "Subject: x\r\n\r\nbody line\r\n\r\nend\r\n"
	if got := stuff(t, msg); got != msg+".\r\n" {
		t.Fatalf("got %q", got)
	}
}

type failWriter struct{ after int }

func (w *failWriter) Write(p []byte) (int, error) {
	if len(p) > w.after {
		n := w.after
		w.after = 0
		return n, io.ErrClosedPipe
	}
	w.after -= len(p)
	return len(p), nil
}

func TestDotWriterWriteError(t *testing.T) {
	bw := bufio.NewWriterSize(&failWriter{after: 10}, 16)
	var d dotWriter
	d.reset(bw)
	msg := []byte(strings.Repeat("line\r\n.dot\n", 100))
	n, err := d.Write(msg)
	if err == nil || n >= len(msg) {
		t.Fatalf("Write = %d, %v; want an error before the end", n, err)
	}
	if err := d.Close(); err == nil {
		t.Fatal("Close after a write error succeeded")
	}
}

func FuzzDotWriter(f *testing.F) {
	for _, s := range []string{"", ".", ".\r\n", "a\r\n.\r\n", "a\n.\n", "a\r", "\r\n.", "..\r\n..", "x\r\r\n\n."} {
		f.Add([]byte(s), uint(1))
		f.Add([]byte(s), uint(3))
	}
	f.Fuzz(func(t *testing.T, msg []byte, chunk uint) {
		size := int(chunk%64) + 1
		var chunks []string
		for b := msg; len(b) > 0; {
			n := min(size, len(b))
			chunks = append(chunks, string(b[:n]))
			b = b[n:]
		}
		wire := stuff(t, chunks...)
		checkFraming(t, msg, wire)
		// OutlookNoNULs changes NULs and nothing else.
		if got, want := stuffOpt(t, true, chunks...), strings.ReplaceAll(wire, "\x00", "\x80"); got != want {
			t.Fatalf("noNULs:\n got %q\nwant %q", abbrev(got), abbrev(want))
		}
	})
}

// benchMessage is about 100 KB of 76-character lines, like a base64 body.
func benchMessage() []byte {
	line := strings.Repeat("A", 76) + "\r\n"
	return []byte(strings.Repeat(line, 100*1024/len(line)))
}

func BenchmarkDotWriter(b *testing.B) { benchDotWriter(b, benchMessage(), false) }

// BenchmarkDotWriterNoNULs is BenchmarkDotWriter with OutlookNoNULs on a
// message with a NUL in every line: still no allocation.
func BenchmarkDotWriterNoNULs(b *testing.B) { benchDotWriter(b, benchMessageNULs(), true) }

// benchMessageNULs is benchMessage with a NUL in the middle of every line.
func benchMessageNULs() []byte {
	line := strings.Repeat("A", 38) + "\x00" + strings.Repeat("A", 37) + "\r\n"
	return []byte(strings.Repeat(line, 100*1024/len(line)))
}

func benchDotWriter(b *testing.B, msg []byte, noNULs bool) {
	bw := bufio.NewWriter(io.Discard)
	var d dotWriter
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		d.reset(bw)
		d.noNULs = noNULs
		// Backend readers hand out chunks of the server's read size.
		for p := msg; len(p) > 0; {
			n := min(bodyReadSize, len(p))
			if _, err := d.Write(p[:n]); err != nil {
				b.Fatal(err)
			}
			p = p[n:]
		}
		if err := d.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSendBody measures the whole RETR body path: backend reader,
// pooled buffer, dot-stuffing, connection buffer.
func BenchmarkSendBody(b *testing.B) { benchSendBody(b, benchMessage(), false) }

// BenchmarkSendBodyNoNULs is BenchmarkSendBody with Server.OutlookNoNULs.
func BenchmarkSendBodyNoNULs(b *testing.B) { benchSendBody(b, benchMessageNULs(), true) }

func benchSendBody(b *testing.B, msg []byte, noNULs bool) {
	srv := &Server{Backend: newMemBackend(), OutlookNoNULs: noNULs}
	defer srv.Close()
	pc := &pipeConn{in: strings.NewReader("")}
	c := srv.trackConn(pc, ListenerConfig{})
	defer srv.untrackConn(c)
	c.setup()
	c.bw = bufio.NewWriter(io.Discard)
	r := bytes.NewReader(msg)
	rc := io.NopCloser(r)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(msg)
		if _, ok := c.sendBody("RETR", 1, "status", rc); !ok {
			b.Fatal("sendBody failed")
		}
	}
}
