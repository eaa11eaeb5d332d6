package proxy_test

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/apppass"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/oidc"
	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap/pgstore"
)

// countingTransport counts the requests to one URL (the token endpoint).
type countingTransport struct {
	url string
	n   atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.String() == c.url {
		c.n.Add(1)
	}
	return http.DefaultTransport.RoundTrip(r)
}

// TestOAuth2TwoInstances: two popbridge instances on one PostgreSQL store
// share a user's grant and app password; a burst of POP3 logins on both,
// while the grant is due, makes one refresh at the provider, and every
// login gets in.
func TestOAuth2TwoInstances(t *testing.T) {
	t.Parallel()
	as := oidc.Start(t)
	dv := dovecot.Start(t, dovecot.WithOAuth2Introspection(as.IntrospectionURL, as.ResourceID, as.ResourceSecret))
	user := dovecot.User(t) + "@example.org"
	as.AddUser(user, "pw")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	sealer, err := grants.NewSealer([]byte("a test secret of at least 32 bytes, not a real one"))
	if err != nil {
		t.Fatal(err)
	}
	dsn := postgres.DSN(t)
	openStore := func() *pgstore.Store {
		s, err := pgstore.Open(ctx, dsn, pgstore.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	cheap := apppass.Params{Memory: 64, Time: 1, Threads: 1}
	gk := grants.Key{Upstream: dv.IMAPAddr, User: user}

	setup := openStore()
	enrolment := grants.NewManager(setup, sealer, as.DeviceClient(), grants.Options{})
	err = enrolment.EnrollDevice(ctx, gk, func(da *oauth2.DeviceAuthResponse) error {
		da.Interval = 1
		return as.ApproveDevice(ctx, da.VerificationURIComplete, user, "pw")
	})
	if err != nil {
		t.Fatalf("EnrollDevice: %v", err)
	}
	appPW, _, err := apppass.New(setup, cheap).Create(ctx, apppass.Key{Upstream: dv.IMAPAddr, User: user}, "scanner")
	if err != nil {
		t.Fatal(err)
	}
	g, _ := enrolment.Grant(ctx, gk)
	// A clock at which the enrolled token is due and one issued a second
	// later is not (see internal/grants' TestRefreshOnceAcrossInstances).
	at := g.Expiry.Add(500*time.Millisecond - grants.DefaultMargin)
	time.Sleep(time.Second)

	calls := &countingTransport{url: as.TokenURL}
	instance := func() *bridge {
		store := openStore()
		up := &proxy.OAuth2Upstream{
			Grants: grants.NewManager(store, sealer, as.DeviceClient(), grants.Options{
				Now: func() time.Time { return at }, PollInterval: 20 * time.Millisecond, HTTPClient: &http.Client{Transport: calls}}),
			Passwords: apppass.New(store, cheap),
		}
		noLock := defaultPolicy()
		noLock.Exclusive = false // many sessions of one user at once
		// Eight logins at once on a busy 2-core machine: Dovecot's login
		// and auth processes (each introspecting at the provider) may
		// take longer than the harness's 5 s to greet.
		patient := func(_ *proxy.Options, u *imapupstream.Config, _ *pop3.Server) { u.ConnectTimeout = 30 * time.Second }
		return startBridgeWith(t, dv, func(next pop3.Backend) pop3.Backend {
			return proxy.WithOAuth2(next.(*proxy.Backend), map[string]*proxy.OAuth2Upstream{dv.IMAPAddr: up})
		}, withPolicy(noLock), patient)
	}
	bridges := []*bridge{instance(), instance()}

	const logins = 8
	errs := make([]error, logins)
	var wg sync.WaitGroup
	for i := range logins {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pop3client.Dial(bridges[i%2].Addr)
			if err != nil {
				errs[i] = err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(60 * time.Second))
			if errs[i] = c.Login(user, appPW); errs[i] == nil {
				errs[i] = c.Quit()
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("login %d on instance %d: %v", i, i%2, err)
		}
	}
	if n := calls.n.Load(); n != 1 {
		t.Fatalf("the provider saw %d refreshes, want 1", n)
	}
}
