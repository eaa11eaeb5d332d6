package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/apppass"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/uidmap/boltstore"
	"github.com/popbridge/popbridge/uidmap/pgstore"
)

// state migrate also takes the users' sealed OAuth2 grants and app
// passwords: after it, PostgreSQL opens the grant (with the same secret)
// and checks the passwords; a grant PostgreSQL has already is kept.
func TestStateMigrateOAuth2(t *testing.T) {
	const upstream = "outlook.office365.com:993"
	ctx := context.Background()
	boltPath := filepath.Join(t.TempDir(), "state.db")
	sealer, err := grants.NewSealer([]byte("a test secret of at least 32 bytes, not a real one"))
	if err != nil {
		t.Fatal(err)
	}
	gk := grants.Key{Upstream: upstream, User: "alice@example.org"}
	pk := apppass.Key{Upstream: upstream, User: "alice@example.org"}
	cheap := apppass.Params{Memory: 64, Time: 1, Threads: 1}

	src, err := boltstore.Open(boltPath)
	if err != nil {
		t.Fatal(err)
	}
	tok := &oauth2.Token{AccessToken: "at-1", RefreshToken: "rt-1", Expiry: time.Now().Add(time.Hour)}
	if err := grants.NewManager(src, sealer, &oauth2.Config{}, grants.Options{}).Enroll(ctx, gk, tok); err != nil {
		t.Fatal(err)
	}
	ps := apppass.New(src, cheap)
	scanner, _, _ := ps.Create(ctx, pk, "scanner")
	fetch, _, _ := ps.Create(ctx, pk, "fetchmail")
	src.Close()

	dsn := postgres.DSN(t)
	cfg := postgresConfig(t, upstream, dsn, "")
	code, out, errOut := runState("migrate", "-config", cfg, "-from-bolt", boltPath)
	if code != 0 || !strings.Contains(out, "copied 1 OAuth2 grants (still sealed: keep the same state.secret_file) and 2 app passwords") {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	pg, err := pgstore.Open(ctx, dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	g, err := grants.NewManager(pg, sealer, &oauth2.Config{}, grants.Options{}).Grant(ctx, gk)
	if err != nil || g.AccessToken != "at-1" || g.RefreshToken != "rt-1" {
		t.Fatalf("the grant in PostgreSQL: %v, %v", g, err)
	}
	pps := apppass.New(pg, cheap)
	for _, pw := range []string{scanner, fetch} {
		if _, err := pps.Verify(ctx, pk, pw); err != nil {
			t.Fatalf("an app password after the migration: %v", err)
		}
	}

	// Again: the grant in PostgreSQL (maybe refreshed there since) stays.
	code, out, errOut = runState("migrate", "-config", cfg, "-from-bolt", boltPath)
	if code != 0 || !strings.Contains(out, "copied 0 OAuth2 grants") || !strings.Contains(out, "and 0 app passwords") ||
		!strings.Contains(out, "OAuth2 grant not copied, PostgreSQL has one for it already: alice@example.org") {
		t.Fatalf("second migrate: exit %d\n%s%s", code, out, errOut)
	}
}
