package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testenv"
	"github.com/popbridge/popbridge/internal/testenv/courier"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/uidmap"
)

// TestImportUIDLFromCourierPOP3: Courier's own pop3d serves UIDLs of its
// own numbering ("UID<n>-<uidv>", its courierpop3dsizelist), which no
// policy.uidl_format can make from what IMAP shows: after an expunge over
// IMAP, before the first POP3 session, its n are not the IMAP UIDs, and its
// uidv is the time of its first session. uidl_format "courier" is refused;
// import-uidl is the way, and after it popbridge in front of the same
// Courier serves every message with the UIDL Courier's pop3d gave it. (Not
// always in the same order: pop3d sorts by maildir file name, popbridge by
// IMAP UID, and two messages delivered within a second may differ.)
func TestImportUIDLFromCourierPOP3(t *testing.T) {
	srv := courier.Start(t, courier.WithPOP3())
	user := srv.User(t)
	gone := srv.Append(t, user, "INBOX", []byte("From: a@example.net\r\nSubject: expunged before POP3\r\n\r\ngone\r\n"))
	for _, m := range importMessages() {
		srv.Append(t, user, "INBOX", m)
	}
	c := srv.Client(t, user)
	sel, err := c.Select("INBOX", nil).Wait()
	if err != nil {
		t.Fatal(err)
	}
	set := imap.UIDSetNum(imap.UID(gone))
	if err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.UIDExpunge(set).Close(); err != nil {
		t.Fatal(err)
	}
	c.Close()
	time.Sleep(1100 * time.Millisecond) // pop3d's uidv: a second later than the mailbox's creation

	popUIDLs(t, srv.POP3Addr, user, srv.Password, true) // a client downloads everything
	old := uidlSubjects(t, srv.POP3Addr, user, srv.Password)
	if len(old) != len(importMessages()) {
		t.Fatalf("Courier's pop3d lists %v", old)
	}
	fromIMAP := map[string]bool{}
	for uid := gone + 1; uid <= gone+uint32(len(importMessages())); uid++ {
		fromIMAP[fmt.Sprintf("UID%d-%d", uid, sel.UIDValidity)] = true
	}
	for u, subject := range old {
		if fromIMAP[u] {
			t.Errorf("pop3d's UIDL %s is made of an IMAP UID and the UIDVALIDITY: the test shows nothing", u)
		}
		t.Logf("pop3d: %s %q (IMAP UIDs %d-%d, UIDVALIDITY %d)", u, subject, gone+1, gone+uint32(len(importMessages())), sel.UIDValidity)
	}
	if _, err := uidmap.ParseFormat("courier"); err == nil {
		t.Error(`uidl_format "courier" accepted`)
	}

	dir := t.TempDir()
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("listeners:\n  - address: %q\nupstream:\n  address: %q\n  tls: none\nstate:\n  path: %q\nlog:\n  level: warn\nshutdown_grace: 1s\n",
		addr, srv.IMAPAddr, filepath.Join(dir, "state.db"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"-config", cfgPath, "-user", user, "-pop3", srv.POP3Addr, "-pop3-tls", "none"}
	if err := cmdImportUIDL(context.Background(), args, strings.NewReader(srv.Password+"\n"), &stdout, &stderr); err != nil {
		t.Fatalf("import-uidl: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	t.Logf("import-uidl:\n%s", stdout.String())
	wantLine(t, stdout.String(), fmt.Sprintf(`written: %d UIDLs`, len(old)))

	e := &impEnv{user: user, cfgPath: cfgPath, addr: addr}

	e.serve(t)
	if got := uidlSubjects(t, addr, user, srv.Password); !reflect.DeepEqual(got, old) {
		t.Fatalf("popbridge serves %v, Courier's pop3d served %v", got, old)
	}
}

// uidlSubjects returns the UIDLs a POP3 server lists, each with the Subject
// of its message (TOP n 0).
func uidlSubjects(t *testing.T, addr, user, password string) map[string]string {
	t.Helper()
	out := map[string]string{}
	testenv.POP3Session(t, addr, user, password, func(c *pop3client.Client) {
		list, err := c.Listing("UIDL")
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range list {
			hdr, err := c.Top(e.N, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, line := range strings.Split(string(hdr), "\r\n") {
				if s, ok := strings.CutPrefix(line, "Subject: "); ok {
					out[e.Value] = s
				}
			}
		}
	})
	return out
}
