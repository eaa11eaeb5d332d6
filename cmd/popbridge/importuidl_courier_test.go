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

	"github.com/popbridge/popbridge/internal/testenv/courier"
	"github.com/popbridge/popbridge/uidmap"
)

// TestImportUIDLFromCourierPOP3: Courier's own pop3d serves UIDLs of its
// own numbering ("UID<n>-<uidv>", its courierpop3dsizelist), which no
// policy.uidl_format can make from what IMAP shows: after an expunge over
// IMAP, before the first POP3 session, its n are not the IMAP UIDs, and its
// uidv is the time of its first session. uidl_format "courier" is refused;
// import-uidl is the way, and after it popbridge in front of the same
// Courier lists exactly what Courier's pop3d listed.
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

	old := popUIDLs(t, srv.POP3Addr, user, srv.Password, true)
	if len(old) != len(importMessages()) {
		t.Fatalf("Courier's pop3d lists %v", old)
	}
	for i, u := range old {
		imapUID := gone + 1 + uint32(i)
		if u == fmt.Sprintf("UID%d-%d", imapUID, sel.UIDValidity) {
			t.Errorf("message %d: pop3d's UIDL %s is made of the IMAP UID and UIDVALIDITY: the test shows nothing", i+1, u)
		}
		t.Logf("message %d: pop3d UIDL %s; IMAP UID %d, UIDVALIDITY %d", i+1, u, imapUID, sel.UIDValidity)
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
	if got := popUIDLs(t, addr, user, srv.Password, false); !reflect.DeepEqual(got, old) {
		t.Fatalf("popbridge lists %v, Courier's pop3d listed %v", got, old)
	}
}
