package daemon

import (
	"fmt"
	"slices"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/nginxauth"
	"github.com/popbridge/popbridge/pop3/pop3client"
)

// TestReloadHook: SIGHUP that adds auth.http_hook makes the next logins
// the hook's to decide (it accepts only its own device password), and one
// that removes it gives them back to the upstream.
func TestReloadHook(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	hook := nginxauth.Start(t, map[string]nginxauth.User{user: {Pass: "device-pw", PassUpstream: dv.Password}})
	addr := freeAddr(t)
	cfg := func(auth string) string {
		return fmt.Sprintf("listeners:\n  - address: %q\n%supstream:\n  address: %q\n  tls: none\nstate:\n  driver: memory\nshutdown_grace: 1s\n",
			addr, auth, dv.IMAPAddr)
	}
	s := startOps(t, cfg(""), opsOptions{})
	login := func(password string) error {
		t.Helper()
		c, err := pop3client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Login(user, password); err != nil {
			return err
		}
		return c.Quit()
	}
	if err := login(dv.Password); err != nil {
		t.Fatalf("before the hook: %v", err)
	}
	s.writeConfig(cfg(fmt.Sprintf("auth:\n  http_hook:\n    url: %q\n    headers: {X-Auth-Key: %q}\n", hook.URL, nginxauth.Key)))
	if err := s.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, s.logs.String())
	}
	if rl := s.logged("config reloaded"); len(rl) != 1 || !slices.Contains(toStrings(rl[0]["changed"]), "auth.http_hook.url") {
		t.Fatalf("reload log: %v", rl)
	}
	if err := login("device-pw"); err != nil {
		t.Fatalf("the hook's password after the reload: %v", err)
	}
	if err := login(dv.Password); err == nil {
		t.Fatal("the upstream's own password got past the hook")
	}
	s.writeConfig(cfg(""))
	if err := s.reload(); err != nil {
		t.Fatalf("reload: %v", err)
	}
	if err := login(dv.Password); err != nil {
		t.Fatalf("after the hook was removed: %v", err)
	}
}
