package proxy_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/nginxauth"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
)

const masterPassword = "m4ster-pw"

// withMaster logs in upstream as the master user admin (with separator
// sep, "" for SASL PLAIN's authzid); verify sets Options.VerifyUpstream.
func withMaster(sep string, verify bool) bridgeOption {
	return func(o *proxy.Options, c *imapupstream.Config, _ *pop3.Server) {
		c.MasterUser, c.MasterPassword, c.MasterSeparator = "admin", masterPassword, sep
		o.VerifyUpstream = verify
	}
}

// upstreamLogins returns the upstream mechanisms of the bridge's successful
// upstream logins so far.
func (b *bridge) upstreamLogins() []string {
	var out []string
	for _, e := range b.Logs.FilterMessage("upstream login ok").All() {
		out = append(out, fmt.Sprint(e.ContextMap()["upstream_mechanism"]))
	}
	return out
}

// noMasterPassword fails if the master password is in any log line.
func (b *bridge) noMasterPassword(t *testing.T) {
	t.Helper()
	for _, e := range b.Logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), masterPassword) {
			t.Fatalf("the master password was logged: %s %v", e.Message, e.ContextMap())
		}
	}
}

// TestMasterUser: popbridge logs in to Dovecot through its master passdb,
// but only once something has checked the user's own password: Dovecot
// itself (auth.verify: upstream) or the auth hook.
func TestMasterUser(t *testing.T) {
	dv := dovecot.Start(t, dovecot.WithMasterUser("admin", masterPassword))
	user := dovecot.User(t)
	dv.Append(t, user, "INBOX", message("for the user", "hello\r\n"))

	t.Run("verified upstream", func(t *testing.T) {
		b := startBridge(t, dv, withMaster("", true))
		c := b.dial(t)
		if err := c.Login(user, dv.Password); err != nil {
			t.Fatalf("login: %v", err)
		}
		if n, _, err := c.Stat(); err != nil || n != 1 {
			t.Fatalf("STAT %d %v: want the user's one message", n, err)
		}
		c.Quit()
		if got := b.upstreamLogins(); len(got) != 2 || got[0] != "LOGIN" || got[1] != "PLAIN (master user)" {
			t.Fatalf("upstream logins %q, want the user's own LOGIN (the check), then the master's", got)
		}
		c = b.dial(t)
		if err := c.Login(user, "wrong"); errCode(err) != "AUTH" {
			t.Fatalf("wrong user password with a master user configured: %v", err)
		}
		if got := b.upstreamLogins(); len(got) != 2 {
			t.Fatalf("upstream logins after a wrong password: %q", got)
		}
		b.noMasterPassword(t)
	})

	t.Run("hook checks, separator form", func(t *testing.T) {
		// The device password is the hook's, not Dovecot's: only the
		// master user can open the mailbox with it.
		hook := nginxauth.Start(t, map[string]nginxauth.User{user: {Pass: "device-pw"}})
		b := startBridge(t, dv, withMaster("*", false), withHook(t, hook.URL, 2*time.Second))
		c := b.dial(t)
		if err := c.Login(user, "device-pw"); err != nil {
			t.Fatalf("login: %v", err)
		}
		if n, _, err := c.Stat(); err != nil || n != 1 {
			t.Fatalf("STAT %d %v", n, err)
		}
		c.Quit()
		if got := b.upstreamLogins(); len(got) != 1 || got[0] != "LOGIN (master user)" {
			t.Fatalf("upstream logins %q, want one as user*admin", got)
		}
		c = b.dial(t)
		if err := c.Login(user, dv.Password); errCode(err) != "AUTH" {
			t.Fatalf("a password the hook refuses: %v", err)
		}
		if got := b.upstreamLogins(); len(got) != 1 {
			t.Fatalf("upstream logins after a refusal: %q", got)
		}
		b.noMasterPassword(t)
	})

	t.Run("nothing checks", func(t *testing.T) {
		b := startBridge(t, dv, withMaster("", false))
		c := b.dial(t)
		if err := c.Login(user, "anything"); errCode(err) != "SYS/PERM" {
			t.Fatalf("a master user with nothing checking passwords logged in: %v", err)
		}
		if got := b.upstreamLogins(); len(got) != 0 {
			t.Fatalf("upstream logins %q", got)
		}
	})
}
