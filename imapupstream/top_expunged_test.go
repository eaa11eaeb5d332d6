package imapupstream

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestTopExpungedBetweenFetches: the message is expunged by another client
// between Top's two FETCHes, and the server answers the TEXT partial with
// NIL, as Dovecot does (then OK [EXPUNGEISSUED]). Top itself reports
// ErrNoSuchMessage, before anything was read from it, instead of a header
// with an empty body that would pass for the whole answer; the Conn stays
// usable.
func TestTopExpungedBetweenFetches(t *testing.T) {
	const header = "Subject: x\r\n\r\n"
	addr := newFake(t, func(fc *fakeConn) {
		fc.send(fakeGreeting)
		fc.serve(func(tag, cmd, line string) bool {
			switch {
			case cmd == "UID FETCH" && strings.Contains(line, "HEADER"):
				fc.send("* 1 FETCH (UID 1 RFC822.SIZE 20 BODY[HEADER] {14}\r\n" + header + ")\r\n" + tag + " OK done\r\n")
			case cmd == "UID FETCH" && strings.Contains(line, "TEXT"):
				fc.send("* 1 FETCH (UID 1 RFC822.SIZE 20 BODY[TEXT]<0> NIL)\r\n* 1 EXPUNGE\r\n" +
					tag + " OK [EXPUNGEISSUED] Some messages were already expunged\r\n")
			default:
				return false
			}
			return true
		})
	})
	c := fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	if _, err := c.Select(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Top(context.Background(), MessageMeta{UID: 1, Size: 20}, 3); !errors.Is(err, ErrNoSuchMessage) {
		if r != nil {
			r.Close()
		}
		t.Fatalf("Top of a message expunged between the FETCHes: %v, want ErrNoSuchMessage", err)
	}
	// Only the header was asked for: one FETCH, nothing to lose.
	r, err := c.Top(context.Background(), MessageMeta{UID: 1, Size: 20}, 0)
	if err != nil {
		t.Fatalf("Top 0 lines: %v", err)
	}
	buf := make([]byte, 100)
	n, _ := r.Read(buf)
	if string(buf[:n]) != header {
		t.Fatalf("Top 0 lines: %q", buf[:n])
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
}
