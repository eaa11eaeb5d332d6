package proxy_test

import (
	"bytes"
	"context"
	"fmt"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/apppass"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/testenv"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/oidc"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap/boltstore"
)

// TestOAuth2Chain is the whole chain, every part real: a POP3 client with
// an app password → popbridge (proxy.WithOAuth2) → XOAUTH2 with the user's
// grant → Dovecot → introspection at the provider that issued the grant
// by the device flow. Then the refusals: a wrong app password, the
// upstream's own password, a user not enrolled, and a grant the provider
// revoked, each with its text; no log line holds a token or password.
func TestOAuth2Chain(t *testing.T) {
	t.Parallel()
	as := oidc.Start(t)
	dv := dovecot.Start(t, dovecot.WithOAuth2Introspection(as.IntrospectionURL, as.ResourceID, as.ResourceSecret))
	user := dovecot.User(t) + "@example.org"
	loner := "loner-" + user
	for _, u := range []string{user, loner} {
		as.AddUser(u, "pw")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	store, sealer := grantStore(t)
	// An access token due for a refresh at every login (the example's
	// last 5 minutes): every login below refreshes and rotates.
	gm := grants.NewManager(store, sealer, as.DeviceClient(), grants.Options{Margin: 10 * time.Minute})
	err := gm.EnrollDevice(ctx, grants.Key{Upstream: dv.IMAPAddr, User: user}, func(da *oauth2.DeviceAuthResponse) error {
		da.Interval = 1
		return as.ApproveDevice(ctx, da.VerificationURIComplete, user, "pw")
	})
	if err != nil {
		t.Fatalf("EnrollDevice: %v", err)
	}
	ps := apppass.New(store, apppass.Params{Memory: 64, Time: 1, Threads: 1}) // cheap: -race slows argon2 a hundredfold
	appPW, _, err := ps.Create(ctx, apppass.Key{Upstream: dv.IMAPAddr, User: user}, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	lonerPW, _, err := ps.Create(ctx, apppass.Key{Upstream: dv.IMAPAddr, User: loner}, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	msg := message("via oauth2", "the body")
	dv.Append(t, user, "INBOX", msg)

	ups := map[string]*proxy.OAuth2Upstream{dv.IMAPAddr: {Grants: gm, Passwords: ps}}
	var wrapper *proxy.OAuth2Backend
	b := startBridgeWith(t, dv, func(next pop3.Backend) pop3.Backend {
		wrapper = proxy.WithOAuth2(next.(*proxy.Backend), ups)
		return wrapper
	})

	login := func(user, password string) (*pop3client.Client, error) {
		c, err := pop3client.Dial(b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		c.SetDeadline(time.Now().Add(30 * time.Second))
		return c, c.Login(user, password)
	}
	for round := range 2 { // the second login uses the rotated grant
		c, err := login(user, appPW)
		if err != nil {
			t.Fatalf("login %d with the app password: %v", round, err)
		}
		if n, _, err := c.Stat(); err != nil || n != 1 {
			t.Fatalf("STAT: %d %v", n, err)
		}
		got, err := c.Retr(1)
		if err != nil || !bytes.Equal(got, wantRETR(msg)) {
			t.Fatalf("RETR: %v\n%q", err, got)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
	}

	// OAUTHBEARER upstream instead of XOAUTH2 (upstream.oauth2.mechanism).
	bearer := startBridgeWith(t, dv, func(next pop3.Backend) pop3.Backend {
		return proxy.WithOAuth2(next.(*proxy.Backend), map[string]*proxy.OAuth2Upstream{dv.IMAPAddr: {Grants: gm, Passwords: ps, Mechanism: "OAUTHBEARER"}})
	})
	bc, err := pop3client.Dial(bearer.Addr)
	if err != nil {
		t.Fatal(err)
	}
	bc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := bc.Login(user, appPW); err != nil {
		t.Fatalf("login through OAUTHBEARER: %v", err)
	}
	bc.Quit()
	if !strings.Contains(dv.Log(), "method=OAUTHBEARER") {
		t.Fatal("Dovecot logged no OAUTHBEARER login")
	}

	// A real POP3 client too: curl, with the app password in the URL.
	curl, err := exec.LookPath("curl")
	if err != nil {
		testenv.Unavailable(t, "curl is not installed (apt-get install curl)")
	}
	out, err := exec.CommandContext(ctx, curl, "-sS", "--max-time", "30",
		(&url.URL{Scheme: "pop3", User: url.UserPassword(user, appPW), Host: b.Addr, Path: "/1"}).String()).CombinedOutput()
	if err != nil || !bytes.Contains(out, []byte("the body")) {
		t.Fatalf("curl RETR with the app password: %v\n%s", err, out)
	}

	refused := func(user, password, want string) {
		t.Helper()
		_, err := login(user, password)
		if err == nil || errCode(err) != "AUTH" || !strings.Contains(err.Error(), want) {
			t.Fatalf("login of %s: %v, want -ERR [AUTH] …%s…", user, err, want)
		}
	}
	refused(user, "abcd-efgh-ijkl-mnop-qrst", "authentication failed")
	refused(user, dv.Password, "authentication failed") // the upstream's password is not the device's
	refused(loner, lonerPW, "not enrolled for OAuth2: ask your administrator to run popbridge oauth2 enroll "+loner)

	g, err := gm.Grant(ctx, grants.Key{Upstream: dv.IMAPAddr, User: user})
	if err != nil {
		t.Fatal(err)
	}
	if err := as.Revoke(ctx, g.RefreshToken); err != nil {
		t.Fatal(err)
	}
	refused(user, appPW, "no longer accepts popbridge's access for "+user+": ask your administrator to run popbridge oauth2 enroll "+user)
	// A reload that drops the upstream's oauth2 block: its users log in
	// with their upstream passwords again, and app passwords mean nothing.
	wrapper.SetUpstreams(nil)
	refused(user, appPW, "authentication failed")
	if c, err := login(user, dv.Password); err != nil {
		t.Fatalf("the upstream password once OAuth2 is off: %v", err)
	} else {
		c.Quit()
	}

	// Logs at debug level: no token, no app password, no client secret.
	var all strings.Builder
	for _, e := range b.Logs.All() {
		fmt.Fprintf(&all, "%s %v\n", e.Message, e.ContextMap())
	}
	for _, secret := range []string{g.AccessToken, g.RefreshToken, appPW, strings.ReplaceAll(appPW, "-", "")[4:], lonerPW, as.ClientSecret} {
		if strings.Contains(all.String(), secret) {
			t.Fatalf("a log line holds a secret:\n%s", all.String())
		}
	}
	if !strings.Contains(all.String(), "not enrolled") {
		t.Fatalf("the logs do not say why a login failed:\n%s", all.String())
	}
}

// TestOAuth2RevokedAccessToken: the provider revokes the access token
// before its expiry (a password change, an administrator): the upstream
// refuses it, popbridge refreshes the grant at once and the login goes
// through. With the refresh token revoked too, the login is refused with
// the command to run.
func TestOAuth2RevokedAccessToken(t *testing.T) {
	t.Parallel()
	e := newEnrolled(t)
	as, gm, gk, user, appPW := e.as, e.gm, e.gk, e.user, e.appPW
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b := e.bridge(t)
	login := func() error {
		c, err := pop3client.Dial(b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if err := c.Login(user, appPW); err != nil {
			return err
		}
		return c.Quit()
	}

	before, _ := gm.Grant(ctx, gk)
	if err := as.Revoke(ctx, before.AccessToken); err != nil {
		t.Fatal(err)
	}
	if err := login(); err != nil {
		t.Fatalf("login after the access token was revoked: %v", err)
	}
	after, _ := gm.Grant(ctx, gk)
	if after.AccessToken == before.AccessToken || after.RefreshToken == before.RefreshToken {
		t.Fatal("the refused token did not make the grant refresh")
	}

	if err := as.Revoke(ctx, after.RefreshToken); err != nil { // takes its access token too
		t.Fatal(err)
	}
	if err := login(); err == nil || errCode(err) != "AUTH" || !strings.Contains(err.Error(), "ask your administrator to run popbridge oauth2 enroll "+user) {
		t.Fatalf("login with the whole grant revoked: %v", err)
	}
}

// TestOAuth2TokenDiesDuringSession: the access token a session logged in
// with stops being valid while the session runs (revoked at the provider,
// as it would expire): Dovecot, like most IMAP servers, checked it once,
// at login, so the session goes on, its DELE is carried out at QUIT, and
// the next login refreshes the grant. (Exchange Online instead ends the
// IMAP session when its token expires: docs/oauth2.md.)
func TestOAuth2TokenDiesDuringSession(t *testing.T) {
	t.Parallel()
	e := newEnrolled(t)
	as, dv, gm, gk, user, appPW := e.as, e.dv, e.gm, e.gk, e.user, e.appPW
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	first, second := message("first", "one"), message("second", "two")
	dv.Append(t, user, "INBOX", first)
	dv.Append(t, user, "INBOX", second)
	b := e.bridge(t)

	c, err := pop3client.Dial(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.Login(user, appPW); err != nil {
		t.Fatal(err)
	}
	during, _ := gm.Grant(ctx, gk)
	if err := as.Revoke(ctx, during.AccessToken); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Retr(1); err != nil || !bytes.Equal(got, wantRETR(first)) {
		t.Fatalf("RETR after the token died: %v", err)
	}
	if _, err := c.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT after the token died: %v", err)
	}
	_, msgs := imapState(t, dv, user, "INBOX")
	if len(msgs) != 1 || !bytes.Equal(msgs[0].Body, second) {
		t.Fatalf("upstream after DELE 1 + QUIT: %d messages", len(msgs))
	}

	next, err := pop3client.Dial(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer next.Close()
	next.SetDeadline(time.Now().Add(30 * time.Second))
	if err := next.Login(user, appPW); err != nil {
		t.Fatalf("the next login: %v", err)
	}
	next.Quit()
	if g, _ := gm.Grant(ctx, gk); g.AccessToken == during.AccessToken {
		t.Fatal("the next login did not refresh the dead token")
	}
}

// enrolled is a user enrolled by the device flow at a provider that a
// Dovecot checks tokens at, with one app password; its grant's tokens stay
// fresh (the default Margin).
type enrolled struct {
	as          *oidc.Server
	dv          *dovecot.Server
	gm          *grants.Manager
	ps          *apppass.Passwords
	gk          grants.Key
	user, appPW string
}

func newEnrolled(t *testing.T) *enrolled {
	t.Helper()
	as := oidc.Start(t)
	e := &enrolled{as: as, dv: dovecot.Start(t, dovecot.WithOAuth2Introspection(as.IntrospectionURL, as.ResourceID, as.ResourceSecret))}
	e.user = dovecot.User(t) + "@example.org"
	as.AddUser(e.user, "pw")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, sealer := grantStore(t)
	e.gk = grants.Key{Upstream: e.dv.IMAPAddr, User: e.user}
	e.gm = grants.NewManager(store, sealer, as.DeviceClient(), grants.Options{})
	err := e.gm.EnrollDevice(ctx, e.gk, func(da *oauth2.DeviceAuthResponse) error {
		da.Interval = 1
		return as.ApproveDevice(ctx, da.VerificationURIComplete, e.user, "pw")
	})
	if err != nil {
		t.Fatal(err)
	}
	e.ps = apppass.New(store, apppass.Params{Memory: 64, Time: 1, Threads: 1}) // cheap: -race slows argon2 a hundredfold
	if e.appPW, _, err = e.ps.Create(ctx, apppass.Key{Upstream: e.dv.IMAPAddr, User: e.user}, "scanner"); err != nil {
		t.Fatal(err)
	}
	return e
}

// bridge is popbridge in front of the Dovecot with the user's grant.
func (e *enrolled) bridge(t *testing.T) *bridge {
	return startBridgeWith(t, e.dv, func(next pop3.Backend) pop3.Backend {
		return proxy.WithOAuth2(next.(*proxy.Backend), map[string]*proxy.OAuth2Upstream{e.dv.IMAPAddr: {Grants: e.gm, Passwords: e.ps}})
	})
}

// grantStore is a bolt store and a sealer for a test's grants.
func grantStore(t *testing.T) (*boltstore.Store, *grants.Sealer) {
	t.Helper()
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	sealer, err := grants.NewSealer([]byte("a test secret of at least 32 bytes, not a real one"))
	if err != nil {
		t.Fatal(err)
	}
	return store, sealer
}
