package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/popbridge/popbridge/imapupstream/dovecottest"
	"github.com/popbridge/popbridge/pop3/pop3test"
	"github.com/popbridge/popbridge/uidmap/pgstore/pgtest"
)

// TestTwoInstancesShareState runs two `popbridge serve` processes on one
// Dovecot and one PostgreSQL (state.driver: postgres), as behind a load
// balancer: both serve the same UIDLs, a session on one keeps the user's
// maildrop from a second session on the other (-ERR [IN-USE]), and a
// message hidden through one (policy.on_dele: hide) is gone on the other.
func TestTwoInstancesShareState(t *testing.T) {
	dv := dovecottest.Start(t)
	user := dovecottest.User(t)
	for i := range 3 {
		dv.Append(t, user, "INBOX", fmt.Appendf(nil, "Subject: %d\r\nMessage-ID: <%d@scale.example>\r\n\r\nbody %d\r\n", i, i, i))
	}
	dsn := pgtest.DSN(t)
	bin := buildBinary(t)
	addrs := [2]string{freeAddr(t), freeAddr(t)}
	for _, addr := range addrs {
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		cfg := fmt.Sprintf("listeners:\n  - address: %q\nupstream:\n  address: %q\n  tls: none\n"+
			"policy:\n  on_dele: hide\nstate:\n  driver: postgres\n  dsn: %q\n  lock_lease: 2s\nshutdown_grace: 1s\n",
			addr, dv.IMAPAddr, dsn)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		startProcess(t, bin, cfgPath, addr)
	}
	login := func(addr string) (*pop3test.Client, error) {
		c, err := pop3test.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Login(user, dv.Password); err != nil {
			c.Close()
			return nil, err
		}
		return c, nil
	}
	uidls := func(c *pop3test.Client) []string {
		entries, err := c.Listing("UIDL")
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range entries {
			out = append(out, e.Value)
		}
		return out
	}

	first, err := login(addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	seen := uidls(first)
	if len(seen) != 3 {
		t.Fatalf("instance 1 lists %v, want 3 UIDLs", seen)
	}
	var resp *pop3test.ErrResponse
	if _, err := login(addrs[1]); !errors.As(err, &resp) || resp.Code() != "IN-USE" {
		t.Fatalf("a second session on instance 2 while instance 1 serves the user: %v, want -ERR [IN-USE]", err)
	}
	if err := first.Quit(); err != nil {
		t.Fatal(err)
	}

	second, err := login(addrs[1])
	if err != nil {
		t.Fatalf("instance 2 after instance 1's session ended: %v", err)
	}
	if got := uidls(second); !reflect.DeepEqual(got, seen) {
		t.Fatalf("instance 2 serves UIDLs %v, instance 1 served %v", got, seen)
	}
	if _, err := second.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if err := second.Quit(); err != nil {
		t.Fatal(err)
	}

	third, err := login(addrs[0])
	if err != nil {
		t.Fatal(err)
	}
	defer third.Quit()
	if got := uidls(third); !reflect.DeepEqual(got, seen[1:]) {
		t.Fatalf("instance 1 after instance 2 hid message 1: %v, want %v", got, seen[1:])
	}
}
