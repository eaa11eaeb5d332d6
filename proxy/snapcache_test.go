package proxy_test

import (
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
)

// commandCounter counts the upstream operations of a bridge by name.
type commandCounter struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *commandCounter) LoginDone(time.Duration, error) {}
func (c *commandCounter) StreamFailed(error)             {}
func (c *commandCounter) CommandDone(op string, _ time.Duration, _ error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[op]++
}

func (c *commandCounter) count(op string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[op]
}

// TestSnapshotCache: a login that finds the mailbox as the last one left it
// (UIDVALIDITY, UIDNEXT and the count unchanged) sends no UID FETCH 1:*;
// a new message, an expunge, or both at once (the same count, a new
// UIDNEXT) make it snapshot again, and every listing is the mailbox's.
func TestSnapshotCache(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	cc := &commandCounter{}
	b := startBridge(t, dv, func(_ *proxy.Options, c *imapupstream.Config, _ *pop3.Server) { c.Observer = cc })
	dv.Append(t, user, "INBOX", message("one", "1\r\n"))
	dv.Append(t, user, "INBOX", message("two", "2\r\n"))

	session := func(t *testing.T) []string {
		t.Helper()
		c := b.loginEventually(t, user)
		ids := listUIDLs(t, c)
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
		return ids
	}
	check := func(t *testing.T, what string, snapshots int, want []string) {
		t.Helper()
		got := session(t)
		if len(got) != len(want) {
			t.Fatalf("%s: listed %q, want %q", what, got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("%s: listed %q, want %q", what, got, want)
			}
		}
		if n := cc.count("snapshot"); n != snapshots {
			t.Fatalf("%s: %d snapshots so far, want %d", what, n, snapshots)
		}
	}
	first := session(t)
	check(t, "unchanged", 1, first)
	check(t, "unchanged again", 1, first)

	dv.Append(t, user, "INBOX", message("three", "3\r\n"))
	third := session(t)
	if len(third) != 3 || cc.count("snapshot") != 2 {
		t.Fatalf("after a new message: %q, %d snapshots", third, cc.count("snapshot"))
	}
	check(t, "unchanged after the new one", 2, third)

	// An expunge and an arrival at once: the count is the same.
	c := dv.Client(t, user)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	if err := c.Store(imap.UIDSetNum(1), &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Expunge().Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	dv.Append(t, user, "INBOX", message("four", "4\r\n"))
	fourth := session(t)
	if len(fourth) != 3 || fourth[0] != third[1] || cc.count("snapshot") != 3 {
		t.Fatalf("after an expunge and an arrival: %q (before %q), %d snapshots", fourth, third, cc.count("snapshot"))
	}
	check(t, "unchanged at the end", 3, fourth)
}
