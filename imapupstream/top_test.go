package imapupstream

import (
	"context"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
)

// wantTop is TOP's answer computed from the message: the header up to and
// including the blank line, then the first n body lines (a line ends with LF).
func wantTop(msg string, n int) string {
	i := strings.Index(msg, "\r\n\r\n")
	header, body := msg[:i+4], msg[i+4:]
	out := header
	for ; n > 0 && body != ""; n-- {
		j := strings.IndexByte(body, '\n')
		if j < 0 {
			out += body
			break
		}
		out += body[:j+1]
		body = body[j+1:]
	}
	return out
}

func (e *env) readTop(t *testing.T, c *Conn, uid uint32, lines int) string {
	t.Helper()
	r, err := c.Top(context.Background(), e.meta(uid), lines)
	if err != nil {
		t.Fatalf("Top(%d, %d): %v", uid, lines, err)
	}
	data, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("Top(%d, %d) read: %v", uid, lines, err)
	}
	if err := r.Close(); err != nil {
		t.Fatalf("Top(%d, %d) close: %v", uid, lines, err)
	}
	return string(data)
}

func TestTop(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	short := msg("top", "line 1", "line 2", "line 3", "line 4", "line 5")
	noFinalCRLF := "Subject: nocrlf\r\n\r\nl1\r\nl2\r\nunterminated"
	long := "Subject: long first part\r\n\r\n" + strings.Repeat("x", 20000) + "\r\nsecond\r\n" +
		strings.Repeat("y", 50000) + "\r\nfourth\r\nfifth\r\n"
	headerOnly := "Subject: header only\r\n\r\n"
	manyLines := "Subject: many\r\n\r\n"
	for i := range 5000 {
		manyLines += fmt.Sprintf("line %d\r\n", i)
	}
	uShort := e.append(t, short)
	uNoCRLF := e.append(t, noFinalCRLF)
	uLong := e.append(t, long)
	uHeader := e.append(t, headerOnly)
	uMany := e.append(t, manyLines)
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("z", 98)+"\r\n", 6000) // 600 KB, over topMaxFirstChunk
	uBig := e.append(t, big)

	trace := &wire{}
	c, _ := e.open(t, e.config(), trace)
	// TOP n 0: the header and the blank line, and no TEXT fetch at all.
	before := trace.countCommands("UID FETCH")
	if got := e.readTop(t, c, uShort, 0); got != wantTop(short, 0) {
		t.Fatalf("TOP 0: %q", got)
	}
	if strings.Contains(trace.sent(), "[TEXT]") {
		t.Fatalf("TOP n 0 fetched the body: %q", trace.commands())
	}
	if n := trace.countCommands("UID FETCH") - before; n != 1 {
		t.Fatalf("TOP n 0 sent %d FETCH commands", n)
	}

	cases := []struct {
		name      string
		uid       uint32
		msg       string
		lines     int
		maxFetchs int // TEXT fetches at most
	}{
		{"3 lines", uShort, short, 3, 1},
		{"all lines exactly", uShort, short, 5, 2},
		{"more lines than the body", uShort, short, 100, 1},
		{"no final CRLF", uNoCRLF, noFinalCRLF, 10, 1},
		{"no final CRLF, 2 lines", uNoCRLF, noFinalCRLF, 2, 1},
		{"long first line needs growth", uLong, long, 2, 4},
		{"long, 4 lines", uLong, long, 4, 6},
		{"header only", uHeader, headerOnly, 5, 1},
		{"many lines, 1", uMany, manyLines, 1, 1},
		{"many lines, 3000", uMany, manyLines, 3000, 2},
		{"whole message (fetchmail 99999999)", uMany, manyLines, 99999999, 1},
		{"whole message over the first chunk's limit", uBig, big, 99999999, 1},
		{"big message, 5000 lines of 6000", uBig, big, 5000, 1},
		{"big message, 10 lines", uBig, big, 10, 1},
	}
	for _, tc := range cases {
		before := strings.Count(trace.sent(), "PEEK[TEXT]<")
		got := e.readTop(t, c, tc.uid, tc.lines)
		if want := wantTop(tc.msg, tc.lines); got != want {
			t.Fatalf("%s: got %d bytes %q…, want %d bytes", tc.name, len(got), trunc(got), len(want))
		}
		n := strings.Count(trace.sent(), "PEEK[TEXT]<") - before
		if n < 1 || n > tc.maxFetchs {
			t.Fatalf("%s: %d TEXT fetches, want 1..%d", tc.name, n, tc.maxFetchs)
		}
	}
	if !strings.Contains(trace.sent(), "BODY.PEEK[TEXT]<4096.8192>") {
		t.Fatalf("no doubling seen: %q", trace.commands())
	}

	// Stop reading midway: Close drains, and the Conn goes on.
	r, err := c.Top(context.Background(), e.meta(uLong), 4)
	if err != nil {
		t.Fatal(err)
	}
	r.Read(make([]byte, 10))
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := e.readTop(t, c, uShort, 1); got != wantTop(short, 1) {
		t.Fatalf("after early close: %q", got)
	}

	// Nothing got \Seen, and only PEEK was used.
	for uid, flags := range e.state(t, "INBOX") {
		if hasFlag(flags, imap.FlagSeen) {
			t.Fatalf("UID %d got \\Seen from Top", uid)
		}
	}
	for _, cmd := range trace.commands() {
		if strings.Contains(cmd, "BODY[") || strings.Contains(cmd, "RFC822 ") || strings.HasSuffix(cmd, "RFC822)") {
			t.Fatalf("non-PEEK fetch: %s", cmd)
		}
	}
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80]
	}
	return s
}

// TestTopWholeOutlivesExpunge: "TOP n 99999999" (fetchmail's way to read a
// whole message without \Seen) on a message bigger than the first TEXT
// partial, expunged by another client once Top has returned. Asked for in
// one partial, the body still arrives whole (Dovecot has begun the literal
// and serves it to the end); asked for in several, the next one would find
// the message gone in the middle of the answer.
func TestTopWholeOutlivesExpunge(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	big := "Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("w", 98)+"\r\n", 6000) // 600 KB
	uid := e.append(t, big)
	trace := &wire{}
	c, _ := e.open(t, e.config(), trace)
	r, err := c.Top(context.Background(), e.meta(uid), 99999999)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	first := make([]byte, 1024)
	if _, err := io.ReadFull(r, first); err != nil {
		t.Fatal(err)
	}
	o := e.other(t)
	set := imap.UIDSetNum(imap.UID(uid))
	if err := o.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := o.UIDExpunge(set).Close(); err != nil {
		t.Fatal(err)
	}
	rest, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("reading on after the expunge: %v (%d TEXT fetches)", err, strings.Count(trace.sent(), "PEEK[TEXT]<"))
	}
	if got := string(first) + string(rest); got != big {
		t.Fatalf("got %d octets, want the %d of the message", len(got), len(big))
	}
	if n := strings.Count(trace.sent(), "PEEK[TEXT]<"); n != 1 {
		t.Fatalf("%d TEXT fetches, want 1", n)
	}
}
