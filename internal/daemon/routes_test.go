package daemon

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3/pop3client"
)

// TestReloadRoutes: SIGHUP with changed routes sends the new sessions of
// a domain to its new upstream; a session open across the reload keeps
// the upstream it started on.
func TestReloadRoutes(t *testing.T) {
	dv1, dv2 := dovecot.Start(t), dovecot.Start(t)
	user := dovecot.User(t) + "@two.test"
	dv1.Append(t, user, "INBOX", []byte("Subject: one\r\n\r\non dovecot-1\r\n"))
	dv2.Append(t, user, "INBOX", []byte("Subject: two\r\n\r\non dovecot-2\r\n"))
	addr := freeAddr(t)
	cfg := func(routes string) string {
		return fmt.Sprintf(`listeners:
  - address: %q
upstream:
  address: %q
  tls: none
state:
  driver: memory
shutdown_grace: 1s
%s`, addr, dv1.IMAPAddr, routes)
	}
	s := startOps(t, cfg(""), opsOptions{})
	login := func() *pop3client.Client {
		t.Helper()
		c, err := pop3client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Login(user, dv1.Password); err != nil {
			t.Fatalf("login: %v\n%s", err, s.logs.String())
		}
		return c
	}
	retr := func(c *pop3client.Client) string {
		t.Helper()
		body, err := c.Retr(1)
		if err != nil {
			t.Fatalf("RETR: %v", err)
		}
		return string(body)
	}

	before := login()
	if b := retr(before); !strings.Contains(b, "on dovecot-1") {
		t.Fatalf("without routes: %q", b)
	}
	s.writeConfig(cfg(fmt.Sprintf("routes:\n  - domain: TWO.test\n    upstream:\n      address: %q\n      tls: none\n    policy:\n      on_dele: hide\n", dv2.IMAPAddr)))
	if err := s.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, s.logs.String())
	}
	rl := s.logged("config reloaded")
	if len(rl) != 1 || !slices.Contains(toStrings(rl[0]["changed"]), "routes") || len(toStrings(rl[0]["needs_restart"])) != 0 {
		t.Fatalf("reload log: %v", rl)
	}
	if b := retr(before); !strings.Contains(b, "on dovecot-1") {
		t.Fatalf("the session open across the reload: %q", b)
	}
	if err := before.Quit(); err != nil {
		t.Fatal(err)
	}
	after := login()
	if b := retr(after); !strings.Contains(b, "on dovecot-2") {
		t.Fatalf("a new session after the reload: %q", b)
	}
	if err := after.Quit(); err != nil {
		t.Fatal(err)
	}

	// Removing the route sends the domain back to the default.
	s.writeConfig(cfg(""))
	if err := s.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if b := retr(login()); !strings.Contains(b, "on dovecot-1") {
		t.Fatalf("after the route was removed: %q", b)
	}
}
