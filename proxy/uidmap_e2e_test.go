package proxy_test

import (
	"fmt"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
)

func withStore(s uidmap.Store) bridgeOption {
	return func(o *proxy.Options, _ *imapupstream.Config, _ *pop3.Server) {
		o.Map = uidmap.New(s, uidmap.Options{})
	}
}

func uidls(t *testing.T, b *bridge, user string) []string {
	t.Helper()
	c := b.loginEventually(t, user)
	list, err := c.Listing("UIDL")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	out := make([]string, len(list))
	for i, e := range list {
		out[i] = e.Value
	}
	return out
}

// TestUIDValidityChangeKeepsUIDLs changes the mailbox's UIDVALIDITY with
// doveadm, as an upstream migration or repair would: a leave-on-server
// client must see the same UIDLs and so download nothing again.
func TestUIDValidityChangeKeepsUIDLs(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv)
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n"),
		[]byte("Subject: no message-id\r\n\r\nc\r\n")})
	before := uidls(t, b, user)
	oldValidity, _ := imapState(t, dv, user, "INBOX")

	dv.Doveadm(t, "mailbox", "update", "-u", user, "--uid-validity", fmt.Sprint(oldValidity+1000), "INBOX")
	newValidity, _ := imapState(t, dv, user, "INBOX")
	if newValidity == oldValidity {
		t.Fatal("doveadm did not change UIDVALIDITY")
	}
	if after := uidls(t, b, user); !reflect.DeepEqual(after, before) {
		t.Fatalf("UIDLs after the UIDVALIDITY change %v, before %v", after, before)
	}
	dv.Append(t, user, "INBOX", message("d", "new\r\n"))
	after := uidls(t, b, user)
	if len(after) != 4 || !reflect.DeepEqual(after[:3], before) || after[3] == "" {
		t.Fatalf("with a new message: %v (before %v)", after, before)
	}
	if want := (uidmap.FormatDovecot{}).UIDL(newValidity, 4, nil); after[3] != want {
		t.Errorf("new message UIDL %q, want %q", after[3], want)
	}
}

// TestRecreatedMailboxKeepsUIDLs deletes the mailbox and APPENDs the same
// messages again: new UIDs, a new UIDVALIDITY, new INTERNALDATEs.
func TestRecreatedMailboxKeepsUIDLs(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv)
	user := dovecot.User(t)
	msgs := [][]byte{message("a", "a\r\n"), message("dup", "same\r\n"), message("dup", "same\r\n"),
		[]byte("Subject: no message-id\r\nFrom: x@y\r\n\r\nc\r\n")}
	seed(t, dv, user, msgs)
	before := uidls(t, b, user)

	dv.EmptyWithNewUIDValidity(t, user, "INBOX")
	// Reverse order: the copies get other UIDs than before.
	for i := len(msgs) - 1; i >= 0; i-- {
		dv.Append(t, user, "INBOX", msgs[i])
	}
	after := uidls(t, b, user)
	if len(after) != len(before) {
		t.Fatalf("after re-creating: %v, before %v", after, before)
	}
	got := map[string]int{}
	for _, u := range after {
		got[u]++
	}
	for _, u := range before {
		if got[u] != 1 {
			t.Fatalf("UIDL %s served %d times after re-creating the mailbox (before %v, after %v)", u, got[u], before, after)
		}
	}
}

func TestHideLeavesMailAndHidesIt(t *testing.T) {
	dv := dovecot.Start(t)
	p := defaultPolicy()
	p.OnDele = proxy.OnDeleHide
	store := uidmap.NewMemoryStore()
	b := startBridge(t, dv, withPolicy(p), withStore(store))
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n"), message("c", "c\r\n")})
	_, before := imapState(t, dv, user, "INBOX")
	all := uidls(t, b, user)

	c := b.login(t, user)
	if _, err := c.Cmd("DELE 2"); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if got := uidls(t, b, user); !reflect.DeepEqual(got, []string{all[0], all[2]}) {
		t.Fatalf("after hiding message 2: %v, want %v", got, []string{all[0], all[2]})
	}
	_, after := imapState(t, dv, user, "INBOX")
	if len(after) != 3 || hasFlag(after[1], imap.FlagDeleted) || hasFlag(after[1], imap.FlagSeen) {
		t.Fatalf("hide touched IMAP beyond its keyword: %+v", after)
	}
	if !hasFlag(after[1], imap.Flag(proxy.HiddenKeyword)) || hasFlag(after[0], imap.Flag(proxy.HiddenKeyword)) {
		t.Fatalf("keyword %s on the wrong messages: %+v", proxy.HiddenKeyword, after)
	}
	for i := range before {
		if after[i].UID != before[i].UID {
			t.Fatal("UIDs changed")
		}
	}

	// The store is lost: a popbridge with an empty store still hides it.
	b2 := startBridge(t, dv, withPolicy(p), withStore(uidmap.NewMemoryStore()))
	if got := uidls(t, b2, user); !reflect.DeepEqual(got, []string{all[0], all[2]}) {
		t.Fatalf("with a new store: %v, want the hidden message still hidden", got)
	}
}

// TestStateSurvivesRestart: a bridge on a bolt file is stopped and another
// started on the same file: UIDLs that the format alone could not give
// (after a UIDVALIDITY change) and hidden marks are still there.
func TestStateSurvivesRestart(t *testing.T) {
	dv := dovecot.Start(t)
	path := filepath.Join(t.TempDir(), "state.db")
	p := defaultPolicy()
	p.OnDele = proxy.OnDeleHide
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n")})

	s1, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b1 := startBridge(t, dv, withPolicy(p), withStore(s1))
	before := uidls(t, b1, user)
	c := b1.login(t, user)
	c.Cmd("DELE 1")
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	validity, _ := imapState(t, dv, user, "INBOX")
	dv.Doveadm(t, "mailbox", "update", "-u", user, "--uid-validity", fmt.Sprint(validity+1), "INBOX")
	if got := uidls(t, b1, user); !reflect.DeepEqual(got, before[1:]) {
		t.Fatalf("before restart: %v, want %v", got, before[1:])
	}
	b1.stop(t)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	s2, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	b2 := startBridge(t, dv, withPolicy(p), withStore(s2))
	if got := uidls(t, b2, user); !reflect.DeepEqual(got, before[1:]) {
		t.Fatalf("after restart: %v, want %v", got, before[1:])
	}
}
