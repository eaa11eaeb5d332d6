package grants_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/oidc"
	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/uidmap/boltstore"
	"github.com/popbridge/popbridge/uidmap/pgstore"
)

func TestMain(m *testing.M) { os.Exit(postgres.Run(m)) }

const password = "user-password"

// env is a provider with one user, a Dovecot that checks tokens at it, and
// a sealer.
type env struct {
	as     *oidc.Server
	imap   *dovecot.Server
	sealer *grants.Sealer
	key    grants.Key
}

func newEnv(t *testing.T) *env {
	t.Helper()
	as := oidc.Start(t)
	e := &env{
		as:   as,
		imap: dovecot.Start(t, dovecot.WithOAuth2Introspection(as.IntrospectionURL, as.ResourceID, as.ResourceSecret)),
	}
	e.key = grants.Key{Upstream: e.imap.IMAPAddr, User: dovecot.User(t) + "@example.org"}
	as.AddUser(e.key.User, password)
	var err error
	if e.sealer, err = grants.NewSealer([]byte("a test secret of at least 32 bytes, not a real one")); err != nil {
		t.Fatal(err)
	}
	return e
}

// tokenCalls counts the requests a Manager makes to the token endpoint.
type tokenCalls struct {
	n        atomic.Int64
	tokenURL string
}

func (c *tokenCalls) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.String() == c.tokenURL {
		c.n.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (e *env) manager(store grants.Store, calls *tokenCalls, opts grants.Options) *grants.Manager {
	if calls != nil {
		calls.tokenURL = e.as.TokenURL
		opts.HTTPClient = &http.Client{Transport: calls}
	}
	return grants.NewManager(store, e.sealer, e.as.DeviceClient(), opts)
}

// enroll runs the device flow through m, the user approving on the
// provider's pages when shown the code.
func (e *env) enroll(t *testing.T, m *grants.Manager) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := m.EnrollDevice(ctx, e.key, func(da *oauth2.DeviceAuthResponse) error {
		if err := e.as.ApproveDevice(ctx, da.VerificationURIComplete, e.key.User, password); err != nil {
			return err
		}
		da.Interval = 1 // the provider asks for 5 s and does not enforce it
		return nil
	})
	if err != nil {
		t.Fatalf("EnrollDevice: %v", err)
	}
}

// login logs in to Dovecot with the token, as popbridge will.
func (e *env) login(token string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := imapupstream.NewDialer(imapupstream.Config{Address: e.imap.IMAPAddr, TLS: imapupstream.TLSNone}, nil)
	if err != nil {
		return err
	}
	c, err := d.Login(ctx, imapupstream.Credentials{Username: e.key.User, Token: token, Mechanism: "XOAUTH2"})
	if err != nil {
		return err
	}
	return c.Close()
}

func openBolt(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func openPG(t *testing.T, dsn string) *pgstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := pgstore.Open(ctx, dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// The token's lifetime at the example provider is 5 minutes: a Margin
// longer than that makes every token due for a refresh.
const alwaysDue = 10 * time.Minute

// TestEnrollRefreshRotate: the enrolled token is used while fresh, with no
// call to the provider; once due, it is refreshed, the rotated refresh
// token replaces the spent one in the store, and the new access token logs
// in to Dovecot.
func TestEnrollRefreshRotate(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	store := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	e.enroll(t, e.manager(store, nil, grants.Options{}))
	ctx := context.Background()

	var calls tokenCalls
	var outcomes []grants.Outcome
	observe := func(_ grants.Key, o grants.Outcome, _ error) { outcomes = append(outcomes, o) }
	fresh := e.manager(store, &calls, grants.Options{Observe: observe})
	first, err := fresh.AccessToken(ctx, e.key)
	if err != nil {
		t.Fatalf("AccessToken: %v", err)
	}
	if calls.n.Load() != 0 || len(outcomes) != 0 {
		t.Fatalf("a fresh token was refreshed (%d calls, %v)", calls.n.Load(), outcomes)
	}
	if err := e.login(first); err != nil {
		t.Fatalf("login with the enrolled token: %v", err)
	}
	before, _ := fresh.Grant(ctx, e.key)

	due := e.manager(store, &calls, grants.Options{Margin: alwaysDue, Observe: observe})
	second, err := due.AccessToken(ctx, e.key)
	if err != nil {
		t.Fatalf("AccessToken when due: %v", err)
	}
	if second == first || calls.n.Load() != 1 || len(outcomes) != 1 || outcomes[0] != grants.Refreshed {
		t.Fatalf("refresh: same token %v, %d calls, outcomes %v", second == first, calls.n.Load(), outcomes)
	}
	after, _ := fresh.Grant(ctx, e.key)
	if after.RefreshToken == before.RefreshToken || after.AccessToken != second || after.Refreshed.IsZero() || !after.Enrolled.Equal(before.Enrolled) {
		t.Fatalf("the store did not take the rotated grant: %v → %v", before, after)
	}
	// The spent refresh token is dead at the provider; the stored one works.
	if _, err := e.as.DeviceClient().TokenSource(ctx, &oauth2.Token{RefreshToken: before.RefreshToken}).Token(); err == nil {
		t.Fatal("the spent refresh token still refreshes")
	}
	if err := e.login(second); err != nil {
		t.Fatalf("login with the refreshed token: %v", err)
	}
	if err := e.login(first); !errors.Is(err, imapupstream.ErrAuthFailed) {
		t.Fatalf("login with the superseded token: %v, want ErrAuthFailed", err)
	}
	third, err := due.AccessToken(ctx, e.key)
	if err != nil || third == second {
		t.Fatalf("a second refresh: %v (same token %v)", err, third == second)
	}
	if err := e.login(third); err != nil {
		t.Fatalf("login after the second rotation: %v", err)
	}
}

// TestRevokedGrant: a refresh token revoked at the provider makes the grant
// broken: ErrReauthorize, and no instance asks the provider again.
func TestRevokedGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	store := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	m := e.manager(store, nil, grants.Options{})
	e.enroll(t, m)
	ctx := context.Background()
	g, _ := m.Grant(ctx, e.key)
	if err := e.as.Revoke(ctx, g.RefreshToken); err != nil {
		t.Fatal(err)
	}
	var calls tokenCalls
	var revoked int
	due := e.manager(store, &calls, grants.Options{Margin: alwaysDue, Observe: func(_ grants.Key, o grants.Outcome, _ error) {
		if o == grants.Revoked {
			revoked++
		}
	}})
	for range 3 {
		if _, err := due.AccessToken(ctx, e.key); !errors.Is(err, grants.ErrReauthorize) {
			t.Fatalf("AccessToken of a revoked grant: %v, want ErrReauthorize", err)
		}
	}
	if calls.n.Load() != 1 || revoked != 1 {
		t.Fatalf("%d calls to the provider and %d revocations seen, want 1 and 1", calls.n.Load(), revoked)
	}
	if g, _ := m.Grant(ctx, e.key); g.Broken == "" {
		t.Fatal("the grant is not marked broken")
	}
	// Enrolling again mends it.
	e.enroll(t, m)
	tok, err := due.AccessToken(ctx, e.key)
	if err != nil {
		t.Fatalf("AccessToken after a new enrolment: %v", err)
	}
	if err := e.login(tok); err != nil {
		t.Fatalf("login after a new enrolment: %v", err)
	}
}

// TestProviderDown: with the provider unreachable, a token that is due but
// still valid is used as it is; an expired one is ErrRefreshFailed; and
// the grant stays good.
func TestProviderDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	store := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	m := e.manager(store, nil, grants.Options{})
	e.enroll(t, m)
	enrolled, _ := m.Grant(context.Background(), e.key)
	e.as.Close()
	var failed int
	countFailed := func(_ grants.Key, o grants.Outcome, _ error) {
		if o == grants.Failed {
			failed++
		}
	}
	due := e.manager(store, nil, grants.Options{Margin: alwaysDue, Observe: countFailed})
	if tok, err := due.AccessToken(context.Background(), e.key); err != nil || tok != enrolled.AccessToken {
		t.Fatalf("AccessToken of a valid token with the provider down: %v (the enrolled token: %v)", err, tok == enrolled.AccessToken)
	}
	later := func() time.Time { return enrolled.Expiry.Add(time.Second) }
	expired := e.manager(store, nil, grants.Options{Now: later, Observe: countFailed})
	if _, err := expired.AccessToken(context.Background(), e.key); !errors.Is(err, grants.ErrRefreshFailed) || errors.Is(err, grants.ErrReauthorize) {
		t.Fatalf("AccessToken of an expired token with the provider down: %v, want ErrRefreshFailed", err)
	}
	if failed != 2 {
		t.Fatalf("%d failed refreshes observed, want 2", failed)
	}
	if g, _ := m.Grant(context.Background(), e.key); g.Broken != "" {
		t.Fatalf("an unreachable provider broke the grant: %v", g)
	}
	if _, err := m.AccessToken(context.Background(), grants.Key{Upstream: e.key.Upstream, User: "nobody"}); !errors.Is(err, grants.ErrNoGrant) {
		t.Fatalf("AccessToken of a user not enrolled: %v, want ErrNoGrant", err)
	}
}

// TestRefreshOnceAcrossInstances: two instances on one PostgreSQL database,
// many logins at once of a user whose token is due: the provider sees one
// refresh, and every login gets its token.
func TestRefreshOnceAcrossInstances(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dsn := postgres.DSN(t)
	enrolment := e.manager(openPG(t, dsn), nil, grants.Options{})
	e.enroll(t, enrolment)
	g, err := enrolment.Grant(context.Background(), e.key)
	if err != nil {
		t.Fatal(err)
	}
	// A clock at which the enrolled token is due (it expires within the
	// default Margin) and any token issued a second later is not: a login
	// that comes after the refresh must take its token, not refresh again.
	at := g.Expiry.Add(500*time.Millisecond - grants.DefaultMargin)
	clock := func() time.Time { return at }
	time.Sleep(time.Second)
	var calls tokenCalls
	instances := []*grants.Manager{
		e.manager(openPG(t, dsn), &calls, grants.Options{Now: clock, PollInterval: 20 * time.Millisecond}),
		e.manager(openPG(t, dsn), &calls, grants.Options{Now: clock, PollInterval: 20 * time.Millisecond}),
	}

	token := oneToken(t, 12, func(i int) (string, error) {
		return instances[i%2].AccessToken(context.Background(), e.key)
	})
	if n := calls.n.Load(); n != 1 {
		t.Fatalf("the provider saw %d refreshes, want 1", n)
	}
	if err := e.login(token); err != nil {
		t.Fatalf("login with the shared token: %v", err)
	}
}

// TestNoTokenInClear reads the bolt file and PostgreSQL's files (data and
// WAL, after a checkpoint) byte by byte: no token is in them.
func TestNoTokenInClear(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()

	path := filepath.Join(t.TempDir(), "state.db")
	bolt := openBolt(t, path)
	mb := e.manager(bolt, nil, grants.Options{})
	e.enroll(t, mb)
	if _, err := e.manager(bolt, nil, grants.Options{Margin: alwaysDue}).AccessToken(ctx, e.key); err != nil {
		t.Fatal(err) // a rotated grant too
	}
	boltGrant, _ := mb.Grant(ctx, e.key)
	bolt.Close()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	assertNoToken(t, path, data, boltGrant)

	dsn := postgres.DSN(t)
	mp := e.manager(openPG(t, dsn), nil, grants.Options{})
	e.enroll(t, mp)
	pgGrant, _ := mp.Grant(ctx, e.key)
	conn, err := pgx.Connect(ctx, postgres.Shared(t).AdminDSN())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(postgres.Shared(t).Dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil // files come and go under a running server
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		files++
		assertNoToken(t, p, b, pgGrant)
		return nil
	})
	if err != nil || files < 100 {
		t.Fatalf("read %d files of the cluster: %v", files, err)
	}
}

func assertNoToken(t *testing.T, name string, data []byte, g grants.Grant) {
	t.Helper()
	if g.AccessToken == "" || g.RefreshToken == "" {
		t.Fatal("no grant to look for")
	}
	for _, tok := range []string{g.AccessToken, g.RefreshToken} {
		// Any 16 bytes of it would be a leak.
		for i := 0; i+16 <= len(tok); i += 8 {
			if bytes.Contains(data, []byte(tok[i:i+16])) {
				t.Fatalf("%s holds part of a token in clear", name)
			}
		}
	}
}

// TestDeadHolder: an instance that took the refresh lease and died (it
// never refreshes nor releases) holds the others up for one lease at
// most; then one of them takes the lease over and refreshes.
func TestDeadHolder(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	dsn := postgres.DSN(t)
	store := openPG(t, dsn)
	e.enroll(t, e.manager(store, nil, grants.Options{}))
	ctx := context.Background()
	const lease = 2 * time.Second
	if ok, err := store.TryRefreshLease(ctx, e.key, "dead-instance", lease); !ok || err != nil {
		t.Fatalf("the dead instance's lease: %v %v", ok, err)
	}
	var calls tokenCalls
	m := e.manager(openPG(t, dsn), &calls, grants.Options{Margin: alwaysDue, LeaseTTL: lease, PollInterval: 50 * time.Millisecond})
	start := time.Now()
	tok, err := m.AccessToken(ctx, e.key)
	took := time.Since(start)
	if err != nil {
		t.Fatalf("AccessToken behind a dead holder: %v", err)
	}
	if took < lease/2 || took > 5*lease || calls.n.Load() != 1 {
		t.Fatalf("took %v and %d refreshes, want about one lease (%v) and 1", took, calls.n.Load(), lease)
	}
	if err := e.login(tok); err != nil {
		t.Fatalf("login with the token refreshed after the takeover: %v", err)
	}
}

// TestEnrollAuthCode: the authorization-code flow with PKCE and a loopback
// redirect nobody listens on, the address pasted back; its grant refreshes
// and logs in to Dovecot. A pasted address of another enrolment is refused.
func TestEnrollAuthCode(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	ctx := context.Background()
	store := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	m := grants.NewManager(store, e.sealer, e.as.NativeClient(""), grants.Options{Margin: alwaysDue})
	other := m.StartAuthCode("http://127.0.0.1:1/callback")
	en := m.StartAuthCode("http://127.0.0.1:1/callback")
	redirected, err := e.as.ApproveAuthCode(ctx, en.URL, e.key.User, password)
	if err != nil {
		t.Fatalf("ApproveAuthCode: %v", err)
	}
	if err := m.FinishAuthCode(ctx, e.key, other, redirected); !errors.Is(err, grants.ErrAuthCodeAnswer) {
		t.Fatalf("another enrolment's answer: %v, want ErrAuthCodeAnswer", err)
	}
	if err := m.FinishAuthCode(ctx, e.key, en, redirected); err != nil {
		t.Fatalf("FinishAuthCode: %v", err)
	}
	tok, err := m.AccessToken(ctx, e.key) // due: refreshed first
	if err != nil {
		t.Fatalf("AccessToken: %v", err)
	}
	if err := e.login(tok); err != nil {
		t.Fatalf("login with the code flow's grant: %v", err)
	}
}

// oneToken runs n logins at once and returns their token, which must be
// the same for all.
func oneToken(t *testing.T, n int, login func(i int) (string, error)) string {
	t.Helper()
	tokens := make([]string, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			tokens[i], errs[i] = login(i)
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("login %d: %v", i, err)
		}
		if tokens[i] != tokens[0] {
			t.Fatalf("login %d got another token than login 0", i)
		}
	}
	return tokens[0]
}
