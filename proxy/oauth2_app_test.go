package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/apppass"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/nginxauth"
	"github.com/popbridge/popbridge/internal/testenv/oidc"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap/boltstore"
)

// appAccess is a provider with the app client, a Dovecot that admits the
// app's tokens to every mailbox, and a store.
type appAccess struct {
	as     *oidc.Server
	dv     *dovecot.Server
	store  *boltstore.Store
	sealer *grants.Sealer
}

func newAppAccess(t *testing.T) *appAccess {
	t.Helper()
	as := oidc.Start(t)
	store, sealer := grantStore(t)
	return &appAccess{
		as:     as,
		dv:     dovecot.Start(t, dovecot.WithOAuth2AppAccess(as.IntrospectionURL, as.ResourceID, as.ResourceSecret, oidc.AppScope)),
		store:  store,
		sealer: sealer,
	}
}

// upstream is the OAuth2 upstream of the app with secret.
func (e *appAccess) upstream(t *testing.T, secret string) *proxy.OAuth2Upstream {
	t.Helper()
	p := grants.Provider{Name: "generic", ClientID: e.as.AppClientID, ClientSecret: secret, TokenURL: e.as.TokenURL, Scopes: oidc.AppScopes}
	app, err := p.ClientCredentials()
	if err != nil {
		t.Fatal(err)
	}
	return &proxy.OAuth2Upstream{
		Grants:    grants.NewAppManager(e.store, e.sealer, app, grants.Options{}),
		Passwords: apppass.New(e.store, apppass.Params{Memory: 64, Time: 1, Threads: 1}), // cheap: -race slows argon2 a hundredfold
	}
}

func popLogin(t *testing.T, addr, user, password string) (*pop3client.Client, error) {
	t.Helper()
	c, err := pop3client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c, c.Login(user, password)
}

// TestOAuth2AppAccess: client-credentials access, every part real: two
// users nobody enrolled log in with app passwords, popbridge logs in to
// each one's own mailbox with the app's one token, and each
// gets their own mail. A wrong app password is refused; the app's token
// revoked at the provider is replaced at the next login; a wrong client
// secret gives the text for the administrator; the logs hold no secret.
func TestOAuth2AppAccess(t *testing.T) {
	t.Parallel()
	e := newAppAccess(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	base := dovecot.User(t)
	alice, bob := "alice-"+base+"@example.org", "bob-"+base+"@example.org"
	up := e.upstream(t, e.as.AppClientSecret)
	pw := map[string]string{}
	for _, u := range []string{alice, bob} {
		p, _, err := up.Passwords.Create(ctx, apppass.Key{Upstream: e.dv.IMAPAddr, User: u}, "scanner")
		if err != nil {
			t.Fatal(err)
		}
		pw[u] = p
		e.dv.Append(t, u, "INBOX", message("for "+u, "the body of "+u))
	}
	ups := map[string]*proxy.OAuth2Upstream{e.dv.IMAPAddr: up}
	var wrapper *proxy.OAuth2Backend
	b := startBridgeWith(t, e.dv, func(next pop3.Backend) pop3.Backend {
		wrapper = proxy.WithOAuth2(next.(*proxy.Backend), ups)
		return wrapper
	})

	for _, u := range []string{alice, bob, alice} {
		c, err := popLogin(t, b.Addr, u, pw[u])
		if err != nil {
			t.Fatalf("login of %s with the app password: %v", u, err)
		}
		got, err := c.Retr(1)
		if err != nil || !bytes.Contains(got, []byte("the body of "+u)) {
			t.Fatalf("RETR of %s: %v\n%q", u, err, got)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Count(e.dv.Log(), "method=XOAUTH2") != 3 {
		t.Fatalf("Dovecot logged %d XOAUTH2 logins, want 3:\n%s", strings.Count(e.dv.Log(), "method=XOAUTH2"), e.dv.Log())
	}
	shared, err := up.Grants.Grant(ctx, grants.Key{Upstream: e.dv.IMAPAddr, User: alice})
	if err != nil {
		t.Fatal(err)
	}

	refused := func(user, password, want string) {
		t.Helper()
		_, err := popLogin(t, b.Addr, user, password)
		if err == nil || errCode(err) != "AUTH" || !strings.Contains(err.Error(), want) {
			t.Fatalf("login of %s: %v, want -ERR [AUTH] …%s…", user, err, want)
		}
	}
	refused(alice, pw[bob], "authentication failed")       // bob's app password is not alice's
	refused(alice, e.dv.Password, "authentication failed") // nor is the upstream's

	// The app's token revoked before its expiry: the next login gets a
	// new one and goes through.
	if err := e.as.RevokeApp(ctx, shared.AccessToken); err != nil {
		t.Fatal(err)
	}
	c, err := popLogin(t, b.Addr, bob, pw[bob])
	if err != nil {
		t.Fatalf("login after the app's token was revoked: %v", err)
	}
	c.Quit()
	if g, _ := up.Grants.Grant(ctx, grants.Key{Upstream: e.dv.IMAPAddr}); g.AccessToken == shared.AccessToken {
		t.Fatal("the refused app token was not replaced")
	}

	// The administrator's mistake: a wrong client secret, and no token
	// stored yet.
	if err := up.Grants.Delete(ctx, grants.Key{Upstream: e.dv.IMAPAddr}); err != nil {
		t.Fatal(err)
	}
	broken := e.upstream(t, "not-the-secret")
	wrapper.SetUpstreams(map[string]*proxy.OAuth2Upstream{e.dv.IMAPAddr: {Grants: broken.Grants, Passwords: up.Passwords}})
	refused(alice, pw[alice], "refused popbridge's application access for "+alice+": ask your administrator")

	var all strings.Builder
	for _, l := range b.Logs.All() {
		fmt.Fprintf(&all, "%s %v\n", l.Message, l.ContextMap())
	}
	for _, secret := range []string{shared.AccessToken, pw[alice], pw[bob], e.as.AppClientSecret, "not-the-secret"} {
		if strings.Contains(all.String(), secret) {
			t.Fatalf("a log line holds a secret:\n%s", all.String())
		}
	}
}

// TestOAuth2AppAccessWithHook: an ISP's setup, nothing per user at
// popbridge: the auth hook checks the POP3 password (and may rewrite the
// user), and popbridge logs in to the mailbox the hook names with the
// app's token. The hook sees the client's password, never a token.
func TestOAuth2AppAccessWithHook(t *testing.T) {
	t.Parallel()
	e := newAppAccess(t)
	base := dovecot.User(t)
	login, mailbox := "dave-"+base, "mailbox-"+base+"@example.org"
	hook := nginxauth.Start(t, map[string]nginxauth.User{
		login: {Pass: "dave's pop password", User: mailbox},
	})
	e.dv.Append(t, mailbox, "INBOX", message("hooked", "through the hook"))
	up := e.upstream(t, e.as.AppClientSecret)
	b := startBridgeWith(t, e.dv, func(next pop3.Backend) pop3.Backend {
		return proxy.WithOAuth2(next.(*proxy.Backend), map[string]*proxy.OAuth2Upstream{e.dv.IMAPAddr: up})
	}, withHook(t, hook.URL, 5*time.Second))

	c, err := popLogin(t, b.Addr, login, "dave's pop password")
	if err != nil {
		t.Fatalf("login the hook accepts: %v", err)
	}
	got, err := c.Retr(1)
	if err != nil || !bytes.Contains(got, []byte("through the hook")) {
		t.Fatalf("RETR: %v\n%q", err, got)
	}
	c.Quit()
	if !strings.Contains(e.dv.Log(), "user=<"+mailbox+">, method=XOAUTH2") {
		t.Fatalf("Dovecot logged no XOAUTH2 login of the hook's user:\n%s", e.dv.Log())
	}
	if _, err := popLogin(t, b.Addr, login, "wrong"); err == nil || errCode(err) != "AUTH" {
		t.Fatalf("a password the hook refuses: %v", err)
	}
	tok, err := up.Grants.AccessToken(context.Background(), grants.Key{Upstream: e.dv.IMAPAddr, User: mailbox})
	if err != nil {
		t.Fatal(err)
	}
	reqs := hook.Requests(t)
	if len(reqs) != 2 {
		t.Fatalf("the hook was asked %d times, want 2", len(reqs))
	}
	for _, r := range reqs {
		if r["Auth-Method"] != "plain" || strings.Contains(fmt.Sprint(r), tok) {
			t.Fatalf("the hook was asked %v: want Auth-Method plain and no token", r)
		}
	}
}
