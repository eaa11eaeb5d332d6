package apppasstest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/apppass"
)

// Cheap parameters: the suite is about the store, not the hash's cost.
var cheap = apppass.Params{Memory: 64, Time: 1, Threads: 1}

// Run runs the suite; newStore returns a fresh, empty store for each case.
func Run(t *testing.T, newStore func(t *testing.T) apppass.Store) {
	t.Helper()
	t.Run("SeveralPerUser", func(t *testing.T) { testSeveral(t, newStore(t)) })
	t.Run("UsersApart", func(t *testing.T) { testUsersApart(t, newStore(t)) })
}

var (
	alice = apppass.Key{Upstream: "outlook.office365.com:993", User: "alice@example.org"}
	bob   = apppass.Key{Upstream: "outlook.office365.com:993", User: "bob@example.org"}
	other = apppass.Key{Upstream: "imap.gmail.com:993", User: "alice@example.org"}
)

func testSeveral(t *testing.T, s apppass.Store) {
	ctx := context.Background()
	ps := apppass.New(s, cheap)
	scanner, sp, err := ps.Create(ctx, alice, "scanner 2nd floor")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // distinct creation times, for the order
	fetch, fp, err := ps.Create(ctx, alice, "fetchmail")
	if err != nil {
		t.Fatal(err)
	}
	if scanner == fetch || sp.ID == fp.ID {
		t.Fatal("two app passwords are the same")
	}
	list, err := ps.List(ctx, alice)
	if err != nil || len(list) != 2 || list[0].ID != sp.ID || list[1].ID != fp.ID || list[0].Label != "scanner 2nd floor" {
		t.Fatalf("List: %+v, %v", list, err)
	}
	for _, p := range list {
		if strings.Contains(p.Hash, strings.ReplaceAll(scanner, "-", "")[4:]) || !strings.HasPrefix(p.Hash, "$argon2id$") || !p.LastUsed.IsZero() {
			t.Fatalf("stored %+v", p)
		}
	}
	for _, pw := range []string{scanner, fetch, strings.ToUpper(scanner), strings.ReplaceAll(fetch, "-", "")} {
		if _, err := ps.Verify(ctx, alice, pw); err != nil {
			t.Fatalf("Verify(%q): %v", pw, err)
		}
	}
	if p, _ := s.AppPassword(ctx, alice, sp.ID); p.LastUsed.IsZero() {
		t.Fatal("a login did not record its use")
	}
	// A wrong secret with a real ID, an unknown ID, and junk.
	wrong := sp.ID + "-aaaa-aaaa-aaaa-aaaa"
	for _, pw := range []string{wrong, "zzzz-aaaa-aaaa-aaaa-aaaa", "password", ""} {
		if _, err := ps.Verify(ctx, alice, pw); !errors.Is(err, apppass.ErrWrongPassword) {
			t.Fatalf("Verify(%q): %v, want ErrWrongPassword", pw, err)
		}
	}
	// Revoking one leaves the other.
	if err := ps.Revoke(ctx, alice, strings.ToUpper(sp.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := ps.Verify(ctx, alice, scanner); !errors.Is(err, apppass.ErrWrongPassword) {
		t.Fatalf("a revoked password: %v", err)
	}
	if _, err := ps.Verify(ctx, alice, fetch); err != nil {
		t.Fatalf("the other password after a revocation: %v", err)
	}
	if err := ps.Revoke(ctx, alice, sp.ID); !errors.Is(err, apppass.ErrNotFound) {
		t.Fatalf("revoking twice: %v, want ErrNotFound", err)
	}
	if n, err := ps.RevokeAll(ctx, alice); err != nil || n != 1 {
		t.Fatalf("RevokeAll: %d, %v", n, err)
	}
	if list, _ := ps.List(ctx, alice); len(list) != 0 {
		t.Fatalf("after RevokeAll: %+v", list)
	}
}

func testUsersApart(t *testing.T, s apppass.Store) {
	ctx := context.Background()
	ps := apppass.New(s, cheap)
	pw, p, err := ps.Create(ctx, alice, "phone")
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []apppass.Key{bob, other} {
		if _, err := ps.Verify(ctx, k, pw); !errors.Is(err, apppass.ErrWrongPassword) {
			t.Fatalf("%v logs in with alice's password: %v", k, err)
		}
		if err := ps.Revoke(ctx, k, p.ID); !errors.Is(err, apppass.ErrNotFound) {
			t.Fatalf("%v revoked alice's password: %v", k, err)
		}
		if list, err := ps.List(ctx, k); err != nil || len(list) != 0 {
			t.Fatalf("%v lists %+v, %v", k, list, err)
		}
	}
}
