package proxy_test

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

// fixtures are the messages every end-to-end test starts from: each one is
// a framing trap a bridge has fallen into before.
func fixtures() [][]byte {
	big := strings.Repeat(strings.Repeat("x", 75)+"\r\n", 5<<20/77) // ~5 MB
	return [][]byte{
		message("plain", "Hello over POP3.\r\n"),
		message("dots", "before\r\n.\r\n..two\r\n.lead\r\nafter\r\n"),
		message("utf8", "Grüße aus München, 日本語, Ærøskøbing.\r\n"),
		[]byte("Subject: no final newline\r\n\r\nlast line without CRLF"),
		message("big", big),
	}
}

func seed(t *testing.T, up upstream, user string, msgs [][]byte) {
	t.Helper()
	for _, m := range msgs {
		up.Append(t, user, "INBOX", m)
	}
}

func TestListingMatchesIMAP(t *testing.T) { testListingMatchesIMAP(t, dovecot.Start(t)) }

func testListingMatchesIMAP(t *testing.T, up upstream) {
	b := startBridge(t, up)
	user := newUser(t, up)
	seed(t, up, user, fixtures())
	uidValidity, want := imapState(t, up, user, "INBOX")

	c := b.login(t, user)
	count, total, err := c.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var wantTotal int64
	for _, m := range want {
		wantTotal += m.Size
	}
	if count != len(want) || total != wantTotal {
		t.Fatalf("STAT %d %d, IMAP has %d messages of %d octets", count, total, len(want), wantTotal)
	}
	list, err := c.Listing("LIST")
	if err != nil {
		t.Fatal(err)
	}
	uidl, err := c.Listing("UIDL")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != len(want) || len(uidl) != len(want) {
		t.Fatalf("LIST %d and UIDL %d entries, want %d", len(list), len(uidl), len(want))
	}
	seen := map[string]bool{}
	for i, m := range want {
		if list[i].N != i+1 || list[i].Value != strconv.FormatInt(m.Size, 10) {
			t.Errorf("LIST line %d = %+v, want size %d (RFC822.SIZE)", i+1, list[i], m.Size)
		}
		wantUIDL := uidmap.FormatDovecot{}.UIDL(uidValidity, m.UID, nil)
		if uidl[i].Value != wantUIDL {
			t.Errorf("UIDL %d = %q, want Dovecot's %q", i+1, uidl[i].Value, wantUIDL)
		}
		if seen[uidl[i].Value] || !pop3.ValidUIDL(uidl[i].Value) {
			t.Errorf("UIDL %q duplicate or invalid", uidl[i].Value)
		}
		seen[uidl[i].Value] = true
	}
	// Single-message forms.
	if line, err := c.Cmd("LIST 2"); err != nil || line != fmt.Sprintf("+OK 2 %d", want[1].Size) {
		t.Errorf("LIST 2 = %q, %v", line, err)
	}
	if line, err := c.Cmd("UIDL 3"); err != nil || line != "+OK 3 "+uidl[2].Value {
		t.Errorf("UIDL 3 = %q, %v", line, err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}

	// A second session sees the same UIDLs.
	c2 := b.login(t, user)
	uidl2, err := c2.Listing("UIDL")
	if err != nil {
		t.Fatal(err)
	}
	for i := range uidl {
		if uidl2[i] != uidl[i] {
			t.Errorf("session 2 UIDL %d = %q, session 1 had %q", i+1, uidl2[i].Value, uidl[i].Value)
		}
	}
	c2.Quit()
}

func TestRetrIsByteExact(t *testing.T) { testRetrIsByteExact(t, dovecot.Start(t)) }

func testRetrIsByteExact(t *testing.T, up upstream) {
	b := startBridge(t, up)
	user := newUser(t, up)
	seed(t, up, user, fixtures())
	_, want := imapState(t, up, user, "INBOX")

	c := b.login(t, user)
	for i, m := range want {
		got, err := c.Retr(i + 1)
		if err != nil {
			t.Fatalf("RETR %d: %v", i+1, err)
		}
		if !bytes.Equal(got, wantRETR(m.Body)) {
			t.Errorf("RETR %d: %d octets differ from IMAP BODY[] (%d octets)", i+1, len(got), len(m.Body))
		}
		if int64(len(bytes.TrimSuffix(got, []byte("\r\n")))) > m.Size || int64(len(got)) < m.Size {
			t.Errorf("RETR %d: %d octets for RFC822.SIZE %d", i+1, len(got), m.Size)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

func TestTop(t *testing.T) { testTop(t, dovecot.Start(t)) }

func testTop(t *testing.T, up upstream) {
	b := startBridge(t, up)
	user := newUser(t, up)
	body := "line 1\n.line 2\nline 3\nline 4\nline 5\n" // message() makes the CRLFs
	seed(t, up, user, [][]byte{message("top", body)})
	_, want := imapState(t, up, user, "INBOX")
	header, _, _ := bytes.Cut(want[0].Body, []byte("\r\n\r\n"))
	header = append(header, "\r\n\r\n"...)

	c := b.login(t, user)
	got, err := c.Top(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, header) {
		t.Errorf("TOP 1 0 = %q, want the header and blank line %q", got, header)
	}
	got, err = c.Top(1, 3)
	if err != nil {
		t.Fatal(err)
	}
	if w := string(header) + "line 1\r\n.line 2\r\nline 3\r\n"; string(got) != w {
		t.Errorf("TOP 1 3 = %q, want %q", got, w)
	}
	got, err = c.Top(1, 99999999) // fetchmail's "whole message"
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want[0].Body) {
		t.Errorf("TOP 1 99999999 = %q, want the whole message", got)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	_, after := imapState(t, up, user, "INBOX")
	if hasFlag(after[0], imap.FlagSeen) {
		t.Error("TOP set \\Seen upstream")
	}
}

func TestDeleQuitExpungesOnlyDeleted(t *testing.T) {
	testDeleQuitExpungesOnlyDeleted(t, dovecot.Start(t))
}

func testDeleQuitExpungesOnlyDeleted(t *testing.T, up upstream) {
	b := startBridge(t, up)
	user := newUser(t, up)
	for i := range 4 {
		up.Append(t, user, "INBOX", message(fmt.Sprintf("m%d", i), "body\r\n"))
	}
	// Another IMAP client's message, flagged \Deleted but not expunged by
	// it: a bare EXPUNGE from the bridge would take it too.
	othersUID := up.Append(t, user, "INBOX", message("other client", "keep me\r\n"), imap.FlagDeleted)
	_, before := imapState(t, up, user, "INBOX")

	c := b.login(t, user)
	for _, n := range []int{1, 3} {
		if _, err := c.Cmd("DELE %d", n); err != nil {
			t.Fatal(err)
		}
	}
	if count, _, _ := c.Stat(); count != 3 {
		t.Errorf("STAT after two DELE: %d messages, want 3", count)
	}
	if _, err := c.Cmd("RETR 1"); err == nil {
		t.Error("RETR of a DELEted message succeeded")
	}
	// Nothing happens upstream before QUIT.
	if _, mid := imapState(t, up, user, "INBOX"); len(mid) != len(before) {
		t.Fatalf("upstream changed before QUIT: %d messages, had %d", len(mid), len(before))
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	_, after := imapState(t, up, user, "INBOX")
	var uids []uint32
	for _, m := range after {
		uids = append(uids, m.UID)
	}
	wantUIDs := []uint32{before[1].UID, before[3].UID, othersUID}
	if fmt.Sprint(uids) != fmt.Sprint(wantUIDs) {
		t.Fatalf("after QUIT upstream has UIDs %v, want %v", uids, wantUIDs)
	}
	if !hasFlag(after[2], imap.FlagDeleted) {
		t.Error("the other client's \\Deleted flag was changed")
	}
}

func TestDropDeletesNothing(t *testing.T) { testDropDeletesNothing(t, dovecot.Start(t)) }

func testDropDeletesNothing(t *testing.T, up upstream) {
	b := startBridge(t, up)
	user := newUser(t, up)
	seed(t, up, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n")})

	c := b.login(t, user)
	if _, err := c.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cmd("DELE 2"); err != nil {
		t.Fatal(err)
	}
	c.Close() // no QUIT: not an UPDATE

	// The next session (which also proves the lock was released) still
	// sees both messages, and so does IMAP.
	c2 := b.loginEventually(t, user)
	if count, _, err := c2.Stat(); err != nil || count != 2 {
		t.Fatalf("after a dropped session: STAT %d, %v; want 2 messages", count, err)
	}
	c2.Quit()
	if _, after := imapState(t, up, user, "INBOX"); len(after) != 2 || hasFlag(after[0], imap.FlagDeleted) {
		t.Fatalf("upstream changed by a dropped session: %+v", after)
	}
}

func TestRset(t *testing.T) { testRset(t, dovecot.Start(t)) }

func testRset(t *testing.T, up upstream) {
	b := startBridge(t, up)
	user := newUser(t, up)
	seed(t, up, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n")})

	c := b.login(t, user)
	c.Cmd("DELE 1")
	c.Cmd("DELE 2")
	if _, err := c.Cmd("RSET"); err != nil {
		t.Fatal(err)
	}
	if count, _, _ := c.Stat(); count != 2 {
		t.Errorf("STAT after RSET: %d, want 2", count)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if _, after := imapState(t, up, user, "INBOX"); len(after) != 2 {
		t.Fatalf("RSET then QUIT removed messages: %d left", len(after))
	}
}

func TestOnDeleTrashAndKeep(t *testing.T) {
	testOnDele(t, dovecot.Start(t), "Trash", proxy.OnDeleTrash, proxy.OnDeleKeep)
}

// testOnDele checks what QUIT does to a DELEted message under each of the
// policy.on_dele modes, with trash as the trash mailbox.
func testOnDele(t *testing.T, up upstream, trash string, modes ...proxy.OnDele) {
	for _, mode := range modes {
		t.Run(string(mode), func(t *testing.T) {
			p := defaultPolicy()
			p.OnDele, p.TrashMailbox = mode, trash
			b := startBridge(t, up, withPolicy(p))
			user := newUser(t, up)
			seed(t, up, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n")})
			_, before := imapState(t, up, user, "INBOX")

			c := b.login(t, user)
			if _, err := c.Cmd("DELE 1"); err != nil {
				t.Fatal(err)
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
			_, inbox := imapState(t, up, user, "INBOX")
			switch mode {
			case proxy.OnDeleExpunge:
				if len(inbox) != 1 || inbox[0].UID != before[1].UID {
					t.Fatalf("INBOX after expunge: %+v", inbox)
				}
			case proxy.OnDeleTrash:
				if len(inbox) != 1 || inbox[0].UID != before[1].UID {
					t.Fatalf("INBOX after trash: %+v", inbox)
				}
				_, trashed := imapState(t, up, user, trash)
				if len(trashed) != 1 || !bytes.Equal(trashed[0].Body, before[0].Body) {
					t.Fatalf("%s holds %d messages, want the DELEted one", trash, len(trashed))
				}
			case proxy.OnDeleHide:
				hidden := imap.Flag(proxy.HiddenKeyword)
				if len(inbox) != 2 || hasFlag(inbox[0], imap.FlagDeleted) || !hasFlag(inbox[0], hidden) || hasFlag(inbox[1], hidden) {
					t.Fatalf("INBOX after hide: %+v", inbox)
				}
				c2 := b.login(t, user)
				if count, _, _ := c2.Stat(); count != 1 {
					t.Errorf("hide: next session sees %d messages, want 1", count)
				}
				c2.Quit()
			case proxy.OnDeleKeep:
				if len(inbox) != 2 || hasFlag(inbox[0], imap.FlagDeleted) {
					t.Fatalf("INBOX after keep: %+v", inbox)
				}
				c2 := b.login(t, user)
				if count, _, _ := c2.Stat(); count != 2 {
					t.Errorf("keep: next session sees %d messages, want 2", count)
				}
				c2.Quit()
			}
		})
	}
}

func TestMarkSeen(t *testing.T) { testMarkSeen(t, dovecot.Start(t)) }

func testMarkSeen(t *testing.T, up upstream) {
	for _, markSeen := range []bool{true, false} {
		t.Run(fmt.Sprint("mark_seen=", markSeen), func(t *testing.T) {
			p := defaultPolicy()
			p.MarkSeen = markSeen
			b := startBridge(t, up, withPolicy(p))
			user := newUser(t, up)
			seed(t, up, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n"), message("c", "c\r\n")})
			c := b.login(t, user)
			if _, err := c.Retr(1); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Top(2, 1); err != nil {
				t.Fatal(err)
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
			_, after := imapState(t, up, user, "INBOX")
			if hasFlag(after[0], imap.FlagSeen) != markSeen {
				t.Errorf("RETRieved message \\Seen = %v, want %v", hasFlag(after[0], imap.FlagSeen), markSeen)
			}
			if hasFlag(after[1], imap.FlagSeen) || hasFlag(after[2], imap.FlagSeen) {
				t.Error("TOP or an untouched message got \\Seen")
			}
		})
	}
}

func TestWrongPassword(t *testing.T) { testWrongPassword(t, dovecot.Start(t)) }

// testWrongPassword returns how long the upstream took to refuse the wrong
// password.
func testWrongPassword(t *testing.T, up upstream, opts ...bridgeOption) time.Duration {
	b := startBridge(t, up, opts...)
	user := newUser(t, up)
	c, err := pop3client.Dial(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Cmd("USER %s", user); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = c.Cmd("PASS wrong-%s", b.Password)
	took := time.Since(start)
	if code := errCode(err); code != "AUTH" {
		t.Fatalf("wrong password: %v after %v, want -ERR [AUTH]", err, took)
	}
	// The session goes on: the right password still works.
	if err := c.Login(user, b.Password); err != nil {
		t.Fatalf("login after a failed attempt: %v", err)
	}
	c.Quit()
	return took
}

func TestUpstreamDown(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv)
	dv.Stop(t)
	c, err := pop3client.Dial(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Cmd("USER someone")
	_, err = c.Cmd("PASS %s", dv.Password)
	if code := errCode(err); code != "SYS/TEMP" {
		t.Fatalf("upstream down: %v, want -ERR [SYS/TEMP]", err)
	}
}

func TestSecondSessionIsInUse(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv)
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n")})
	c := b.login(t, user)

	c2, err := pop3client.Dial(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.Cmd("USER %s", user)
	_, err = c2.Cmd("PASS %s", dv.Password)
	if code := errCode(err); code != "IN-USE" {
		t.Fatalf("second session: %v, want -ERR [IN-USE]", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	// Released at QUIT: the same connection may log in now.
	if _, err := c2.Cmd("PASS %s", dv.Password); err != nil {
		if err := c2.Login(user, dv.Password); err != nil {
			t.Fatalf("login after the first session quit: %v", err)
		}
	}
	c2.Quit()
}

func TestExpungedDuringSession(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv)
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n"), message("c", "c\r\n")})
	_, before := imapState(t, dv, user, "INBOX")
	c := b.login(t, user)

	// Another IMAP client removes message 2 while the POP3 session is open.
	ic := dv.Client(t, user)
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var set imap.UIDSet
	set.AddNum(imap.UID(before[1].UID))
	if err := ic.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := ic.UIDExpunge(set).Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := c.Cmd("RETR 2"); err == nil {
		t.Fatal("RETR of an expunged message succeeded")
	}
	if _, err := c.Cmd("TOP 2 0"); err == nil {
		t.Fatal("TOP of an expunged message succeeded")
	}
	for _, n := range []int{1, 3} {
		got, err := c.Retr(n)
		if err != nil || !bytes.Equal(got, before[n-1].Body) {
			t.Fatalf("RETR %d after another client's expunge: %v", n, err)
		}
	}
	c.Cmd("DELE 3")
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	_, after := imapState(t, dv, user, "INBOX")
	if len(after) != 1 || after[0].UID != before[0].UID {
		t.Fatalf("after QUIT: %+v, want only message 1", after)
	}
}

func TestMissingMailboxIsPermanent(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv, func(o *proxy.Options, u *imapupstream.Config, _ *pop3.Server) {
		o.Mailbox, u.Mailbox = "NoSuchFolder", "NoSuchFolder"
	})
	c, err := pop3client.Dial(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Cmd("USER %s", dovecot.User(t))
	_, err = c.Cmd("PASS %s", dv.Password)
	if code := errCode(err); code != "SYS/PERM" {
		t.Fatalf("missing upstream mailbox: %v, want -ERR [SYS/PERM]", err)
	}
}
