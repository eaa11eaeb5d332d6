package proxy_test

import (
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/proxy"
)

// moveMessage moves the user's only message with subject from one mailbox
// to another over IMAP, as a mail client filing it would.
func moveMessage(t *testing.T, dv *dovecot.Server, user, from, to, subject string) {
	t.Helper()
	c := dv.Client(t, user)
	defer c.Close()
	if _, err := c.Select(from, nil).Wait(); err != nil {
		t.Fatal(err)
	}
	data, err := c.UIDSearch(&imap.SearchCriteria{Header: []imap.SearchCriteriaHeaderField{{Key: "Subject", Value: subject}}}, nil).Wait()
	if err != nil || len(data.AllUIDs()) != 1 {
		t.Fatalf("search %q in %s: %v %v", subject, from, data, err)
	}
	if _, err := c.Move(imap.UIDSetNum(data.AllUIDs()[0]), to).Wait(); err != nil {
		t.Fatalf("move: %v", err)
	}
}

// subjectsOf returns the Subject of every listed message, in order.
func subjectsOf(t *testing.T, b *bridge, user string) []string {
	t.Helper()
	c := b.loginEventually(t, user)
	defer c.Quit()
	n, _, err := c.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for i := 1; i <= n; i++ {
		h, err := c.Top(i, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(h), "\r\n") {
			if s, ok := strings.CutPrefix(line, "Subject: "); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

func withFolders(folders ...string) bridgeOption {
	return withViews(func(o *proxy.Options) { o.Folders = folders })
}

// TestFoldersOneMaildrop: INBOX and Junk make one maildrop; UIDLs are
// unique across them; RETR and DELE act on the message's own folder.
func TestFoldersOneMaildrop(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	dv.Append(t, user, "INBOX", message("inbox one", "1\r\n"))
	dv.Append(t, user, "INBOX", message("inbox two", "2\r\n"))
	dv.Append(t, user, "Junk", message("junk one", "spam\r\n"))
	b := startBridge(t, dv, withFolders("INBOX", "Junk"))

	if got := subjectsOf(t, b, user); strings.Join(got, "|") != "inbox one|inbox two|junk one" {
		t.Fatalf("listed %q", got)
	}
	c := b.loginEventually(t, user)
	ids := listUIDLs(t, c)
	if len(ids) != 3 || ids[0] == ids[2] || ids[1] == ids[2] || !strings.Contains(ids[2], "-") {
		t.Fatalf("UIDLs %q: want three distinct, Junk's with its folder's suffix", ids)
	}
	body, err := c.Retr(3)
	if err != nil || !strings.Contains(string(body), "spam") {
		t.Fatalf("RETR 3 = %q %v", body, err)
	}
	if _, err := c.Cmd("DELE 3"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
	if _, left := imapState(t, dv, user, "Junk"); len(left) != 0 {
		t.Fatalf("Junk still has %d messages after DELE+QUIT", len(left))
	}
	_, inbox := imapState(t, dv, user, "INBOX")
	if len(inbox) != 1 || !strings.Contains(string(inbox[0].Body), "inbox two") {
		t.Fatalf("INBOX after DELE 1: %+v", inbox)
	}
	if got := listUIDLs(t, b.loginEventually(t, user)); len(got) != 1 || got[0] != ids[1] {
		t.Fatalf("after the deletions: %q, want only %q", got, ids[1])
	}
}

// TestFolderMoveKeepsUIDL: a message moved from Junk to INBOX between
// sessions keeps its UIDL (a leave-on-server client does not download it
// again), and so does its hidden mark.
func TestFolderMoveKeepsUIDL(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	pol := defaultPolicy()
	pol.OnDele = proxy.OnDeleHide
	dv.Append(t, user, "INBOX", message("inbox", "1\r\n"))
	dv.Append(t, user, "Junk", message("not spam", "ham\r\n"))
	dv.Append(t, user, "Junk", message("seen spam", "spam\r\n"))
	b := startBridge(t, dv, withPolicy(pol), withFolders("INBOX", "Junk"))

	c := b.loginEventually(t, user)
	before := listUIDLs(t, c)
	if _, err := c.Cmd("DELE 3"); err != nil { // hides "seen spam"
		t.Fatal(err)
	}
	c.Quit()

	moveMessage(t, dv, user, "Junk", "INBOX", "not spam")
	moveMessage(t, dv, user, "Junk", "INBOX", "seen spam")
	if got := subjectsOf(t, b, user); strings.Join(got, "|") != "inbox|not spam" {
		t.Fatalf("after the moves: %q (the hidden one must stay hidden)", got)
	}
	after := listUIDLs(t, b.loginEventually(t, user))
	if len(after) != 2 || after[0] != before[0] || after[1] != before[1] {
		t.Fatalf("UIDLs before %q, after the move %q: the moved message must keep its UIDL", before, after)
	}
}
