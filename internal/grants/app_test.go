package grants_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/oidc"
	"github.com/popbridge/popbridge/internal/testenv/postgres"
)

// appEnv is a provider with the app client, and a Dovecot that admits the
// app's tokens for every mailbox.
type appEnv struct {
	as     *oidc.Server
	imap   *dovecot.Server
	sealer *grants.Sealer
}

func newAppEnv(t *testing.T) *appEnv {
	t.Helper()
	as := oidc.Start(t)
	sealer, err := grants.NewSealer([]byte("a test secret of at least 32 bytes, not a real one"))
	if err != nil {
		t.Fatal(err)
	}
	return &appEnv{
		as:     as,
		imap:   dovecot.Start(t, dovecot.WithOAuth2AppAccess(as.IntrospectionURL, as.ResourceID, as.ResourceSecret, oidc.AppScope)),
		sealer: sealer,
	}
}

func (e *appEnv) manager(t *testing.T, store grants.Store, secret string, calls *tokenCalls, opts grants.Options) *grants.Manager {
	t.Helper()
	p := grants.Provider{Name: "generic", ClientID: e.as.AppClientID, ClientSecret: secret,
		TokenURL: e.as.TokenURL, DeviceAuthURL: e.as.DeviceAuthURL, Scopes: oidc.AppScopes}
	app, err := p.ClientCredentials()
	if err != nil {
		t.Fatal(err)
	}
	if calls != nil {
		calls.tokenURL = e.as.TokenURL
		opts.HTTPClient = &http.Client{Transport: calls}
	}
	return grants.NewAppManager(store, e.sealer, app, opts)
}

func (e *appEnv) login(user, token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := imapupstream.NewDialer(imapupstream.Config{Address: e.imap.IMAPAddr, TLS: imapupstream.TLSNone}, nil)
	if err != nil {
		return err
	}
	c, err := d.Login(ctx, imapupstream.Credentials{Username: user, Token: token, Mechanism: "XOAUTH2"})
	if err != nil {
		return err
	}
	return c.Close()
}

// TestClientCredentials: with no enrolment, the first AccessToken fetches
// the app's token, which every user shares and which logs in to each
// user's mailbox; while fresh it is reused with no call to the provider;
// once due, a new one is fetched and stored.
func TestClientCredentials(t *testing.T) {
	t.Parallel()
	e := newAppEnv(t)
	ctx := context.Background()
	store := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	var calls tokenCalls
	m := e.manager(t, store, e.as.AppClientSecret, &calls, grants.Options{})
	if !m.App() {
		t.Fatal("an app manager says it is not")
	}
	alice, bob := grants.Key{Upstream: e.imap.IMAPAddr, User: "alice@example.org"}, grants.Key{Upstream: e.imap.IMAPAddr, User: "bob@example.org"}
	ta, err := m.AccessToken(ctx, alice)
	if err != nil {
		t.Fatalf("first token: %v", err)
	}
	tb, err := m.AccessToken(ctx, bob)
	if err != nil {
		t.Fatal(err)
	}
	if ta != tb || calls.n.Load() != 1 {
		t.Fatalf("two users: same token %v, %d calls to the provider; want one shared token, one call", ta == tb, calls.n.Load())
	}
	for _, k := range []grants.Key{alice, bob} {
		if err := e.login(k.User, ta); err != nil {
			t.Errorf("app token as %s: %v", k.User, err)
		}
	}
	g, err := m.Grant(ctx, alice)
	if err != nil || g.AccessToken != ta || g.RefreshToken != "" || g.Enrolled.IsZero() {
		t.Fatalf("stored app grant %v (same token %v, refresh token %v), %v", g, g.AccessToken == ta, g.RefreshToken != "", err)
	}
	if _, err := store.LoadGrant(ctx, grants.Key{Upstream: e.imap.IMAPAddr}); err != nil {
		t.Fatalf("the shared token is not under the upstream alone: %v", err)
	}

	due := e.manager(t, store, e.as.AppClientSecret, &calls, grants.Options{Margin: alwaysDue})
	next, err := due.AccessToken(ctx, alice)
	if err != nil || next == ta || calls.n.Load() != 2 {
		t.Fatalf("a due token: new %v, %d calls, %v", next != ta, calls.n.Load(), err)
	}
	if again, _ := m.AccessToken(ctx, bob); again != next {
		t.Fatal("the token fetched when due was not stored for the others")
	}
	if err := e.login("bob@example.org", next); err != nil {
		t.Fatalf("the new app token: %v", err)
	}

	// Revoked at the provider before its expiry: the upstream refuses it,
	// Refused fetches a new one.
	if err := e.as.RevokeApp(ctx, next); err != nil {
		t.Fatal(err)
	}
	if err := e.login("alice@example.org", next); !errors.Is(err, imapupstream.ErrAuthFailed) {
		t.Fatalf("revoked app token: %v", err)
	}
	after, err := m.Refused(ctx, alice, next)
	if err != nil || after == next {
		t.Fatalf("Refused: new %v, %v", after != next, err)
	}
	if err := e.login("alice@example.org", after); err != nil {
		t.Fatalf("the token after the refusal: %v", err)
	}
}

// TestClientCredentialsRefused: a wrong client secret gives ErrAppRefused
// and stores nothing; the right one then works at once.
func TestClientCredentialsRefused(t *testing.T) {
	t.Parallel()
	e := newAppEnv(t)
	ctx := context.Background()
	store := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	k := grants.Key{Upstream: e.imap.IMAPAddr, User: "alice@example.org"}
	var outcomes []grants.Outcome
	bad := e.manager(t, store, "not-the-secret", nil, grants.Options{Observe: func(_ grants.Key, o grants.Outcome, _ error) { outcomes = append(outcomes, o) }})
	_, err := bad.AccessToken(ctx, k)
	if !errors.Is(err, grants.ErrAppRefused) {
		t.Fatalf("wrong secret: %v, want ErrAppRefused", err)
	}
	if strings.Contains(err.Error(), "not-the-secret") {
		t.Fatal("the error holds the secret")
	}
	if len(outcomes) != 1 || outcomes[0] != grants.Revoked {
		t.Fatalf("outcomes %v, want [revoked]", outcomes)
	}
	if _, err := store.LoadGrant(ctx, grants.Key{Upstream: k.Upstream}); !errors.Is(err, grants.ErrNoGrant) {
		t.Fatalf("a refusal stored something: %v", err)
	}
	if _, err := e.manager(t, store, e.as.AppClientSecret, nil, grants.Options{}).AccessToken(ctx, k); err != nil {
		t.Fatalf("the right secret after a wrong one: %v", err)
	}
}

// TestClientCredentialsOnceAcrossInstances: two instances on PostgreSQL
// with no token yet, twelve logins at once: one fetch.
func TestClientCredentialsOnceAcrossInstances(t *testing.T) {
	t.Parallel()
	e := newAppEnv(t)
	dsn := postgres.DSN(t)
	var calls tokenCalls
	instances := []*grants.Manager{
		e.manager(t, openPG(t, dsn), e.as.AppClientSecret, &calls, grants.Options{PollInterval: 20 * time.Millisecond}),
		e.manager(t, openPG(t, dsn), e.as.AppClientSecret, &calls, grants.Options{PollInterval: 20 * time.Millisecond}),
	}
	users := []string{"alice@example.org", "bob@example.org", "carol@example.org"}
	oneToken(t, 12, func(i int) (string, error) {
		return instances[i%2].AccessToken(context.Background(), grants.Key{Upstream: e.imap.IMAPAddr, User: users[i%3]})
	})
	if n := calls.n.Load(); n != 1 {
		t.Fatalf("the provider saw %d token requests, want 1", n)
	}
}

// TestServiceAccount: a Google service account's token request is the
// JWT-bearer grant (RFC 7523) signed with the key from its JSON file,
// with the user as the subject, Gmail's scope and the token URI as the
// audience; each user's token is kept apart. Google's token endpoint is
// not reachable here: this one checks the assertion as Google documents
// it, and answers.
func TestServiceAccount(t *testing.T) {
	t.Parallel()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var subjects []string
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" {
			http.Error(w, `{"error":"unsupported_grant_type"}`, http.StatusBadRequest)
			return
		}
		claims, err := verifyAssertion(r.Form.Get("assertion"), &key.PublicKey)
		if err != nil || claims.Iss != "popbridge@project.iam.gserviceaccount.com" || claims.Aud != srv.URL+"/token" ||
			claims.Scope != "https://mail.google.com/" || time.Unix(claims.Exp, 0).Before(time.Now()) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusBadRequest)
			w.Write([]byte(`{"error":"invalid_grant","error_description":"Invalid JWT"}`))
			return
		}
		sub := claims.Sub
		if sub == "nobody@example.org" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error":"unauthorized_client","error_description":"Client is unauthorized to retrieve access tokens using this method"}`))
			return
		}
		mu.Lock()
		subjects = append(subjects, sub)
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"access_token": "ya29.token-for-" + sub, "token_type": "Bearer", "expires_in": 3599})
	}))
	defer srv.Close()

	keyJSON, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"client_email":   "popbridge@project.iam.gserviceaccount.com",
		"private_key_id": "k1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})),
		"token_uri":      srv.URL + "/token",
	})
	if err != nil {
		t.Fatal(err)
	}
	app, err := grants.Provider{Name: "google"}.ServiceAccount(keyJSON)
	if err != nil {
		t.Fatal(err)
	}
	if app.Shared {
		t.Fatal("a service account's tokens are per user")
	}
	sealer, _ := grants.NewSealer([]byte("a test secret of at least 32 bytes, not a real one"))
	m := grants.NewAppManager(openBolt(t, filepath.Join(t.TempDir(), "state.db")), sealer, app, grants.Options{})
	ctx := context.Background()
	for _, user := range []string{"alice@example.org", "bob@example.org", "alice@example.org"} {
		tok, err := m.AccessToken(ctx, grants.Key{Upstream: "imap.gmail.com:993", User: user})
		if err != nil || tok != "ya29.token-for-"+user {
			t.Fatalf("%s: token %q, %v", user, tok, err)
		}
	}
	if len(subjects) != 2 || subjects[0] != "alice@example.org" || subjects[1] != "bob@example.org" {
		t.Fatalf("the provider was asked for %v, want each user once", subjects)
	}
	if _, err := m.AccessToken(ctx, grants.Key{Upstream: "imap.gmail.com:993", User: "nobody@example.org"}); !errors.Is(err, grants.ErrAppRefused) {
		t.Fatalf("a user outside the delegation: %v, want ErrAppRefused", err)
	}
}

// assertion is the claim set Google's token endpoint requires of a
// service account's JWT.
type assertion struct {
	Iss, Sub, Aud, Scope string
	Exp                  int64
}

// verifyAssertion checks the JWT's RS256 signature with key and returns its
// claims.
func verifyAssertion(s string, key *rsa.PublicKey) (assertion, error) {
	var a assertion
	jws, err := jose.ParseSigned(s, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return a, err
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return a, err
	}
	err = json.Unmarshal(payload, &a)
	return a, err
}
