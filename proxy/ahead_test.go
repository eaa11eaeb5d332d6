package proxy_test

// RETR with the next message fetched ahead (pop3.RetrieveAheader): the same
// answers and the same upstream changes as without, whatever the client
// does instead of the RETR that was guessed.

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3/pop3client"
)

// peeks counts the upstream commands UID FETCH set (UID BODY.PEEK[]) whose
// UID set holds uid: one message fetched, or a batch fetched ahead.
func peeks(r *faultrelay.Relay, uid uint32) int {
	n := 0
	for _, c := range r.Commands() {
		set, ok := strings.CutPrefix(c, "UID FETCH ")
		if !ok {
			continue
		}
		set, ok = strings.CutSuffix(set, " (UID BODY.PEEK[])")
		if ok && uidSetHas(set, uid) {
			n++
		}
	}
	return n
}

// uidSetHas reports whether the IMAP UID set (n, a:b, comma-separated)
// holds uid.
func uidSetHas(set string, uid uint32) bool {
	for _, part := range strings.Split(set, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		a, err := strconv.ParseUint(lo, 10, 32)
		if err != nil {
			continue
		}
		b := a
		if isRange {
			if b, err = strconv.ParseUint(hi, 10, 32); err != nil {
				continue
			}
		}
		if a > b {
			a, b = b, a
		}
		if uint64(uid) >= a && uint64(uid) <= b {
			return true
		}
	}
	return false
}

// waitPeeks waits until the relay has seen uid in n UID FETCH (UID
// BODY.PEEK[]) commands.
func waitPeeks(t *testing.T, r *faultrelay.Relay, uid uint32, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for peeks(r, uid) < n {
		if time.Now().After(deadline) {
			t.Fatalf("upstream fetched UID %d %d times, want %d; commands %q", uid, peeks(r, uid), n, r.Commands())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRetrAheadIsByteExact: RETR of every message in order, each fetched
// ahead during the RETR before it unless it is over the bound (1 MiB), is
// byte-exact; every message is fetched once, and only the RETRieved ones
// get \Seen.
func TestRetrAheadIsByteExact(t *testing.T) {
	b, r := relayedBridge(t, nil)
	user := dovecot.User(t)
	msgs := fixtures() // the framing traps, a 5 MB one among them
	msgs = append(msgs,
		message("after the big one", "x\r\n"),
		bigMessage("just over the bound", 1<<20+4<<10),
		bigMessage("just under the bound", 1<<20-4<<10),
		message("last", ".\r\n"))
	seed(t, b.DV, user, msgs)
	_, want := imapState(t, b.DV, user, "INBOX")

	c := b.login(t, user)
	for i, m := range want {
		got, err := c.Retr(i + 1)
		if err != nil {
			t.Fatalf("RETR %d: %v", i+1, err)
		}
		if !bytes.Equal(got, wantRETR(m.Body)) {
			t.Fatalf("RETR %d: %d octets differ from IMAP BODY[] (%d octets)", i+1, len(got), len(m.Body))
		}
		if i+1 == len(want) {
			break
		}
		next := want[i+1]
		if next.Size <= 1<<20 {
			waitPeeks(t, r, next.UID, 1) // sent while RETR i+1 streamed (or earlier, in a batch)
			continue
		}
		time.Sleep(50 * time.Millisecond)
		if n := peeks(r, next.UID); n != 0 {
			t.Fatalf("message %d of %d octets was fetched ahead", i+2, next.Size)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	for _, m := range want {
		if n := peeks(r, m.UID); n != 1 {
			t.Errorf("UID %d fetched %d times", m.UID, n)
		}
	}
	for _, cmd := range r.Commands() {
		if strings.Contains(cmd, "BODY[") {
			t.Errorf("upstream command without PEEK: %q", cmd)
		}
	}
	_, after := imapState(t, b.DV, user, "INBOX")
	for _, m := range after {
		if !hasFlag(m, imap.FlagSeen) {
			t.Errorf("UID %d not \\Seen after RETR", m.UID)
		}
	}
}

// TestRetrAheadNotTaken: after RETR 1, which had message 2 fetched ahead,
// the client does something else. Every answer is what it would be without
// the fetch ahead; QUIT deletes only what was DELEted; \Seen goes to the
// messages RETRieved only.
func TestRetrAheadNotTaken(t *testing.T) {
	b, r := relayedBridge(t, nil)
	for _, tc := range []struct {
		name    string
		session func(t *testing.T, c *pop3client.Client, want []imapMessage)
		quit    bool
		deleted []int // message numbers gone upstream after the session
		seen    []int // message numbers \Seen after the session
	}{
		{"DELE next", func(t *testing.T, c *pop3client.Client, _ []imapMessage) {
			cmd(t, c, "DELE 2")
		}, true, []int{2}, []int{1}},
		{"DELE this and next", func(t *testing.T, c *pop3client.Client, _ []imapMessage) {
			cmd(t, c, "DELE 1")
			cmd(t, c, "DELE 2")
		}, true, []int{1, 2}, nil},
		{"TOP next", func(t *testing.T, c *pop3client.Client, want []imapMessage) {
			got, err := c.Top(2, 1)
			head, body, _ := bytes.Cut(want[1].Body, []byte("\r\n\r\n"))
			line, _, _ := bytes.Cut(body, []byte("\r\n"))
			if w := string(head) + "\r\n\r\n" + string(line) + "\r\n"; err != nil || string(got) != w {
				t.Fatalf("TOP 2 1 = %q, %v; want %q", got, err, w)
			}
			retr(t, c, 2, want)
		}, true, nil, []int{1, 2}},
		{"RETR another", func(t *testing.T, c *pop3client.Client, want []imapMessage) {
			retr(t, c, 3, want)
			retr(t, c, 1, want)
		}, true, nil, []int{1, 3}},
		{"listings, then RETR next", func(t *testing.T, c *pop3client.Client, want []imapMessage) {
			if n, _, err := c.Stat(); err != nil || n != len(want) {
				t.Fatalf("STAT %d, %v", n, err)
			}
			if _, err := c.Listing("UIDL"); err != nil {
				t.Fatal(err)
			}
			cmd(t, c, "NOOP")
			cmd(t, c, "DELE 1")
			cmd(t, c, "RSET")
			retr(t, c, 2, want)
		}, true, nil, []int{1, 2}},
		{"QUIT", func(*testing.T, *pop3client.Client, []imapMessage) {}, true, nil, []int{1}},
		{"drop", func(*testing.T, *pop3client.Client, []imapMessage) {}, false, nil, []int{1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			user := dovecot.User(t)
			seed(t, b.DV, user, [][]byte{message("a", "one\r\n"), message("b", "two\r\n.three\r\n"), message("c", "four\r\n"), message("d", "five\r\n")})
			_, want := imapState(t, b.DV, user, "INBOX")
			c := b.login(t, user)
			retr(t, c, 1, want)
			waitPeeks(t, r, want[1].UID, 1)
			tc.session(t, c, want)
			if tc.quit {
				if err := c.Quit(); err != nil {
					t.Fatal(err)
				}
			} else {
				c.Close()
			}
			// The next session of the user works at once: the lock and the
			// upstream connection were let go.
			c2 := b.loginWithin(t, user, 2*time.Second)
			c2.Quit()

			_, after := imapState(t, b.DV, user, "INBOX")
			var wantUIDs []uint32
			for i, m := range want {
				if !slices.Contains(tc.deleted, i+1) {
					wantUIDs = append(wantUIDs, m.UID)
				}
			}
			if !slices.Equal(uidsOf(after), wantUIDs) {
				t.Fatalf("upstream has %v, want %v", uidsOf(after), wantUIDs)
			}
			for _, m := range after {
				n := slices.Index(uidsOf(want), m.UID) + 1
				if hasFlag(m, imap.FlagSeen) != slices.Contains(tc.seen, n) {
					t.Errorf("message %d: flags %v, want \\Seen only on %v", n, m.Flags, tc.seen)
				}
			}
		})
	}
}

// TestRetrAheadSkipsDeleted: the message fetched ahead is the next one not
// marked deleted.
func TestRetrAheadSkipsDeleted(t *testing.T) {
	b, r := relayedBridge(t, nil)
	user := dovecot.User(t)
	seed(t, b.DV, user, [][]byte{message("a", "1\r\n"), message("b", "2\r\n"), message("c", "3\r\n")})
	_, want := imapState(t, b.DV, user, "INBOX")
	c := b.login(t, user)
	cmd(t, c, "DELE 2")
	retr(t, c, 1, want)
	waitPeeks(t, r, want[2].UID, 1)
	if n := peeks(r, want[1].UID); n != 0 {
		t.Fatalf("the DELEted message was fetched ahead")
	}
	retr(t, c, 3, want)
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if _, after := imapState(t, b.DV, user, "INBOX"); !slices.Equal(uidsOf(after), []uint32{want[0].UID, want[2].UID}) {
		t.Fatalf("upstream has %v", uidsOf(after))
	}
}

// TestRetrAheadExpunged: a message another client expunges is answered
// "-ERR message no longer exists" and the session goes on, when it went
// before its fetch ahead was sent, and when it goes after (the message may
// then still be served whole, as it was when it was fetched).
func TestRetrAheadExpunged(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv)
	for _, after := range []bool{false, true} {
		t.Run(fmt.Sprintf("expunged after RETR 1: %v", after), func(t *testing.T) {
			user := dovecot.User(t)
			seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n"), message("c", "c\r\n")})
			_, before := imapState(t, dv, user, "INBOX")
			c := b.login(t, user)
			expunge := func() {
				ic := dv.Client(t, user)
				if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
					t.Fatal(err)
				}
				set := imap.UIDSetNum(imap.UID(before[1].UID))
				if err := ic.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
					t.Fatal(err)
				}
				if err := ic.UIDExpunge(set).Close(); err != nil {
					t.Fatal(err)
				}
			}
			if !after {
				expunge()
			}
			retr(t, c, 1, before)
			if after {
				expunge()
			}
			got, err := c.Retr(2)
			switch {
			case err == nil && after && bytes.Equal(got, wantRETR(before[1].Body)):
				t.Log("message 2 was served whole, as fetched before the expunge")
			case err != nil && strings.Contains(err.Error(), "message no longer exists"):
			default:
				t.Fatalf("RETR 2 of an expunged message: %d octets, %v", len(got), err)
			}
			retr(t, c, 3, before)
			cmd(t, c, "DELE 3")
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
			_, after := imapState(t, dv, user, "INBOX")
			if !slices.Equal(uidsOf(after), []uint32{before[0].UID}) || !hasFlag(after[0], imap.FlagSeen) {
				t.Fatalf("upstream after QUIT: %v", uidsOf(after))
			}
		})
	}
}

func cmd(t *testing.T, c *pop3client.Client, line string) {
	t.Helper()
	if _, err := c.Cmd("%s", line); err != nil {
		t.Fatalf("%s: %v", line, err)
	}
}

func retr(t *testing.T, c *pop3client.Client, n int, want []imapMessage) {
	t.Helper()
	got, err := c.Retr(n)
	if err != nil || !bytes.Equal(got, wantRETR(want[n-1].Body)) {
		t.Fatalf("RETR %d: %d octets, %v; want %d", n, len(got), err, len(want[n-1].Body))
	}
}
