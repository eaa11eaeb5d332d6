package imapupstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// readAll reads r to its end in reads of size, and closes it.
func readAll(t *testing.T, r io.ReadCloser, size int) ([]byte, error) {
	t.Helper()
	var got bytes.Buffer
	buf := make([]byte, size)
	for {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			return got.Bytes(), err
		}
	}
	return got.Bytes(), r.Close()
}

// timesAsked counts the UID FETCH (UID BODY.PEEK[]) commands sent whose
// UID set holds uid.
func timesAsked(t *testing.T, w *wire, uid uint32) int {
	t.Helper()
	n := 0
	for _, c := range w.commands() {
		set, ok := strings.CutPrefix(c, "UID FETCH ")
		if !ok {
			continue
		}
		set, ok = strings.CutSuffix(set, " (UID BODY.PEEK[])")
		if !ok {
			continue
		}
		for _, r := range strings.Split(set, ",") {
			lo, hi, isRange := strings.Cut(r, ":")
			a, err1 := strconv.ParseUint(lo, 10, 32)
			b, err2 := a, error(nil)
			if isRange {
				b, err2 = strconv.ParseUint(hi, 10, 32)
			}
			if err1 != nil || err2 != nil {
				t.Fatalf("UID set %q in %q", r, c)
			}
			if uint64(uid) >= min(a, b) && uint64(uid) <= max(a, b) {
				n++
			}
		}
	}
	return n
}

// TestFetchAheadSequential: fetching every message with the next one sent
// ahead gives each message exactly, sends each command once, sets no flag,
// and leaves the Conn as usable as plain Fetch does.
func TestFetchAheadSequential(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	var big strings.Builder
	big.WriteString("Subject: big\r\n\r\n")
	for big.Len() < 300<<10 {
		big.WriteString(".starts with a dot " + strings.Repeat("y", 50) + "\r\n")
	}
	msgs := []string{
		msg("one", "Hello"),
		big.String(),
		"Subject: no final CRLF\r\n\r\nlast line",
		"Subject: header only\r\n\r\n",
		msg("dots", ".", "..", ".x"),
		big.String() + "tail",
		msg("last", "bye"),
	}
	var uids []uint32
	for _, m := range msgs {
		uids = append(uids, e.append(t, m))
	}
	trace := &wire{}
	c, _ := e.open(t, e.config(), trace)
	for i, uid := range uids {
		var next uint32
		if i+1 < len(uids) {
			next = uids[i+1]
		}
		r, err := c.FetchAhead(context.Background(), e.meta(uid), next)
		if err != nil {
			t.Fatalf("FetchAhead %d: %v", i, err)
		}
		got, err := readAll(t, r, []int{1 << 10, 16 << 10, 7, 64 << 10}[i%4])
		if err != nil || string(got) != msgs[i] {
			t.Fatalf("message %d: %d octets of %d, %v", i, len(got), len(msgs[i]), err)
		}
	}
	// Still usable, with nothing left over.
	if _, err := c.Select(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, uid := range uids {
		if n := timesAsked(t, trace, uid); n != 1 {
			t.Fatalf("UID %d asked for %d times; commands %q", uid, n, trace.commands())
		}
	}
	for uid, flags := range e.state(t, "INBOX") {
		if hasFlag(flags, imap.FlagSeen) {
			t.Fatalf("UID %d got \\Seen", uid)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(trace.sent(), "LOGOUT") {
		t.Fatal("Close did not LOGOUT")
	}
}

// TestFetchAheadNotTaken: whatever comes instead of the message sent
// ahead (another message, TOP, a flag change, SELECT, the end of the
// session, with the current message read or not) finds the Conn working:
// the answer ahead is read and thrown away first, and marks nothing.
func TestFetchAheadNotTaken(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := strings.Repeat("0123456789abcdef\r\n", 20000) // 360 KB
	m := []string{msg("a", "first"), "Subject: b\r\n\r\n" + body, msg("c", "l1", "l2", "l3")}
	var u []uint32
	for _, s := range m {
		u = append(u, e.append(t, s))
	}
	ctx := context.Background()
	// ahead fetches u[0] with u[1] sent ahead, reading read octets of u[0].
	ahead := func(t *testing.T, c *Conn, read int) io.ReadCloser {
		t.Helper()
		r, err := c.FetchAhead(ctx, e.meta(u[0]), u[1])
		if err != nil {
			t.Fatal(err)
		}
		if read < 0 {
			got, err := readAll(t, r, 4096)
			if err != nil || string(got) != m[0] {
				t.Fatalf("u0: %q, %v", got, err)
			}
			return r
		}
		if _, err := io.ReadFull(r, make([]byte, read)); err != nil {
			t.Fatal(err)
		}
		return r
	}
	check := func(t *testing.T, c *Conn) {
		t.Helper()
		if got, err := e.fetchAll(t, c, u[2]); err != nil || string(got) != m[2] {
			t.Fatalf("Fetch u2 afterwards: %q, %v", got, err)
		}
		if got, err := e.fetchAll(t, c, u[1]); err != nil || string(got) != m[1] {
			t.Fatalf("Fetch u1 afterwards: %d octets, %v", len(got), err)
		}
	}

	t.Run("other message", func(t *testing.T) {
		c, _ := e.open(t, e.config(), nil)
		ahead(t, c, -1)
		check(t, c)
	})
	t.Run("other message, current one unread", func(t *testing.T) {
		c, _ := e.open(t, e.config(), nil)
		ahead(t, c, 10)
		check(t, c)
	})
	t.Run("TOP", func(t *testing.T) {
		c, _ := e.open(t, e.config(), nil)
		ahead(t, c, -1)
		if got := e.readTop(t, c, u[1], 2); got != wantTop(m[1], 2) {
			t.Fatalf("Top: %q", got)
		}
		check(t, c)
	})
	t.Run("MarkSeen and SELECT", func(t *testing.T) {
		c, _ := e.open(t, e.config(), nil)
		ahead(t, c, -1)
		if err := c.MarkSeen(ctx, []uint32{u[0]}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Select(ctx); err != nil {
			t.Fatal(err)
		}
		st := e.state(t, "INBOX")
		if !hasFlag(st[u[0]], imap.FlagSeen) || hasFlag(st[u[1]], imap.FlagSeen) {
			t.Fatalf("flags %v", st)
		}
		check(t, c)
	})
	for _, read := range []int{-1, 10} {
		t.Run(fmt.Sprintf("Close, read %d", read), func(t *testing.T) {
			trace := &wire{}
			c, _ := e.open(t, e.config(), trace)
			r := ahead(t, c, read)
			done := make(chan struct{})
			go func() { c.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("Close hangs with a command ahead")
			}
			if read < 0 && !strings.Contains(trace.sent(), "LOGOUT") {
				t.Fatal("Close did not LOGOUT after draining the answer ahead")
			}
			if read >= 0 {
				if _, err := r.Read(make([]byte, 10)); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Read after Close: %v", err)
				}
			}
		})
	}
}

// TestFetchAheadExpunged: a message expunged by another client before its
// command went ahead gives ErrNoSuchMessage when fetched, and the Conn goes
// on, and what was sent ahead behind it is taken.
func TestFetchAheadExpunged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	m := []string{msg("a", "x"), msg("b gone", "y"), msg("c", "z"), msg("d gone", "w"), msg("e", "v")}
	var u []uint32
	for _, s := range m {
		u = append(u, e.append(t, s))
	}
	trace := &wire{}
	c, _ := e.open(t, e.config(), trace)
	ctx := context.Background()
	if _, err := c.Snapshot(ctx); err != nil {
		t.Fatal(err)
	}
	other := e.other(t)
	gone := imap.UIDSetNum(imap.UID(u[1]), imap.UID(u[3]))
	if err := other.Store(gone, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.UIDExpunge(gone).Close(); err != nil {
		t.Fatal(err)
	}

	r, err := c.FetchAhead(ctx, e.meta(u[0]), u[1])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, r, 4096); err != nil || string(got) != m[0] {
		t.Fatalf("u0: %q, %v", got, err)
	}
	if n := timesAsked(t, trace, u[1]); n != 1 {
		t.Fatalf("UID %d asked for %d times, want once (ahead)", u[1], n)
	}
	if _, err := c.FetchAhead(ctx, e.meta(u[1]), u[2]); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("FetchAhead of the expunged message sent ahead: %v", err)
	}
	r, err = c.FetchAhead(ctx, e.meta(u[2]), u[3])
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readAll(t, r, 4096); err != nil || string(got) != m[2] {
		t.Fatalf("u2: %q, %v", got, err)
	}
	// The message after the gone one was asked for ahead of it, once:
	// its answer was under way.
	if n := timesAsked(t, trace, u[2]); n != 1 {
		t.Fatalf("UID %d asked for %d times, want once (ahead)", u[2], n)
	}
	// The message ahead is gone and something else comes: the drain
	// finds nothing and the Conn goes on.
	if got, err := e.fetchAll(t, c, u[4]); err != nil || string(got) != m[4] {
		t.Fatalf("u4: %q, %v", got, err)
	}
	if _, err := c.Fetch(ctx, e.meta(u[3])); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("Fetch of an expunged message: %v", err)
	}
	if _, err := c.Select(ctx); err != nil {
		t.Fatal(err)
	}
}
