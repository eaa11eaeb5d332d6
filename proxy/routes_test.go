package proxy_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

// withRoute sends the users of domain to dv, with on_dele onDele ("" keeps
// the bridge's policy).
func withRoute(t testing.TB, domain string, dv *dovecot.Server, onDele proxy.OnDele) bridgeOption {
	t.Helper()
	d, err := imapupstream.NewDialer(imapupstream.Config{Address: dv.IMAPAddr, TLS: imapupstream.TLSNone,
		ConnectTimeout: 5 * time.Second, CommandTimeout: 20 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return func(o *proxy.Options, _ *imapupstream.Config, _ *pop3.Server) {
		o.Routes = append(o.Routes, proxy.Route{Domain: domain, Dialer: d, OnDele: onDele})
	}
}

// TestRoutesTwoUpstreams: one bridge in front of two Dovecots. Users of
// two.test are on the second (with on_dele hide), everyone else (one.test,
// no domain, a domain without a route) on the first, the default (with
// on_dele expunge). Each user has a message on both Dovecots: what POP3
// shows says which one it logged in to.
func TestRoutesTwoUpstreams(t *testing.T) {
	dv1, dv2 := dovecot.Start(t), dovecot.Start(t)
	if dv1.Password != dv2.Password {
		t.Fatal("the two Dovecots must share the password")
	}
	b := startBridge(t, dv1, withRoute(t, "Two.Test", dv2, proxy.OnDeleHide), withRoute(t, "one.test", dv1, ""))
	base := dovecot.User(t)
	users := map[string]*dovecot.Server{ // user -> the Dovecot it must land on
		"a-" + base + "@one.test":   dv1,
		"b-" + base + "@two.test":   dv2,
		"b2-" + base + "@TWO.TEST":  dv2,
		"c-" + base:                 dv1,
		"d-" + base + "@other.test": dv1,
	}
	for user, want := range users {
		for _, dv := range []*dovecot.Server{dv1, dv2} {
			where := "dovecot-1"
			if dv == dv2 {
				where = "dovecot-2"
			}
			dv.Append(t, strings.ToLower(user), "INBOX", message(where+" "+user, "for "+user+" on "+where+"\r\n"))
		}
		wantBody := "on dovecot-1"
		if want == dv2 {
			wantBody = "on dovecot-2"
		}
		c := b.login(t, user)
		if n, _, err := c.Stat(); err != nil || n != 1 {
			t.Fatalf("%s: STAT %d %v", user, n, err)
		}
		body, err := c.Retr(1)
		if err != nil {
			t.Fatalf("%s: RETR: %v", user, err)
		}
		if !strings.Contains(string(body), wantBody) {
			t.Errorf("%s landed on the wrong upstream: %q", user, body)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}

	// uidmap keys name the upstream each user is on.
	ctx := context.Background()
	for user, dv := range users {
		md, err := b.Store.Load(ctx, uidmap.Key{Upstream: dv.IMAPAddr, User: user, Mailbox: "INBOX"})
		if err != nil || len(md.Records) != 1 {
			t.Errorf("%s: no state under upstream %s: %+v %v", user, dv.IMAPAddr, md, err)
		}
	}

	t.Run("on_dele per route", func(t *testing.T) {
		for _, user := range []string{"b-" + base + "@two.test", "d-" + base + "@other.test"} {
			c := b.loginEventually(t, user)
			if _, err := c.Cmd("DELE 1"); err != nil {
				t.Fatal(err)
			}
			if err := c.Quit(); err != nil {
				t.Fatalf("%s: QUIT: %v", user, err)
			}
			if n, _, err := b.loginEventually(t, user).Stat(); err != nil || n != 0 {
				t.Fatalf("%s: after DELE+QUIT STAT %d %v", user, n, err)
			}
		}
		// two.test hides: the message stays on Dovecot 2, and Dovecot 1's
		// copy for the same user is untouched.
		if _, msgs := imapState(t, dv2, "b-"+base+"@two.test", "INBOX"); len(msgs) != 1 || !hasFlag(msgs[0], proxy.HiddenKeyword) {
			t.Errorf("two.test (on_dele hide) upstream: %+v", msgs)
		}
		// The default expunges.
		if _, msgs := imapState(t, dv1, "d-"+base+"@other.test", "INBOX"); len(msgs) != 0 {
			t.Errorf("default (on_dele expunge) upstream still has %d messages", len(msgs))
		}
		for _, dv := range []*dovecot.Server{dv1, dv2} {
			if _, msgs := imapState(t, dv, "a-"+base+"@one.test", "INBOX"); len(msgs) != 1 {
				t.Errorf("a bystander lost mail: %+v", msgs)
			}
		}
	})

	t.Run("locks per backend", func(t *testing.T) {
		x := "x-" + base
		c1 := b.login(t, x+"@one.test")
		// The same local part on the other backend is another maildrop.
		c2 := b.login(t, x+"@two.test")
		if _, _, err := c2.Stat(); err != nil {
			t.Fatal(err)
		}
		// And the lock works: a second session of x@one.test is refused.
		c := b.dial(t)
		if err := c.Login(x+"@one.test", b.Password); errCode(err) != "IN-USE" {
			t.Fatalf("a second session of %s@one.test: %v, want [IN-USE]", x, err)
		}
		for _, c := range []interface{ Quit() error }{c1, c2} {
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
		}
	})
}
