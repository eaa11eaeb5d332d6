package grantstest

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/grants"
)

var (
	alice    = grants.Key{Upstream: "imap.example:993", User: "alice"}
	bob      = grants.Key{Upstream: "imap.example:993", User: "bob"}
	aliceAlt = grants.Key{Upstream: "imap2.example:993", User: "alice"}
)

// Run runs the suite; newStore returns a fresh, empty store for each case.
func Run(t *testing.T, newStore func(t *testing.T) grants.Store) {
	t.Helper()
	t.Run("Swap", func(t *testing.T) { testSwap(t, newStore(t)) })
	t.Run("VersionsNeverReused", func(t *testing.T) { testVersions(t, newStore(t)) })
	t.Run("ConcurrentSwapOneWins", func(t *testing.T) { testConcurrentSwap(t, newStore(t)) })
	t.Run("Lease", func(t *testing.T) { testLease(t, newStore(t)) })
}

func swap(t *testing.T, s grants.Store, k grants.Key, prev int64, data string) int64 {
	t.Helper()
	v, err := s.SwapGrant(context.Background(), k, prev, []byte(data))
	if err != nil {
		t.Fatalf("SwapGrant(%v, %d): %v", k, prev, err)
	}
	if v <= prev {
		t.Fatalf("SwapGrant(%v, %d) gave version %d, not greater", k, prev, v)
	}
	return v
}

func load(t *testing.T, s grants.Store, k grants.Key) grants.Sealed {
	t.Helper()
	st, err := s.LoadGrant(context.Background(), k)
	if err != nil {
		t.Fatalf("LoadGrant(%v): %v", k, err)
	}
	return st
}

func testSwap(t *testing.T, s grants.Store) {
	ctx := context.Background()
	if _, err := s.LoadGrant(ctx, alice); !errors.Is(err, grants.ErrNoGrant) {
		t.Fatalf("LoadGrant of nothing: %v, want ErrNoGrant", err)
	}
	v1 := swap(t, s, alice, 0, "one")
	if _, err := s.SwapGrant(ctx, alice, 0, []byte("again")); !errors.Is(err, grants.ErrConflict) {
		t.Fatalf("creating an existing grant: %v, want ErrConflict", err)
	}
	if st := load(t, s, alice); st.Version != v1 || string(st.Data) != "one" {
		t.Fatalf("after a refused swap: %d %q", st.Version, st.Data)
	}
	v2 := swap(t, s, alice, v1, "two")
	if _, err := s.SwapGrant(ctx, alice, v1, []byte("stale")); !errors.Is(err, grants.ErrConflict) {
		t.Fatalf("swap from a stale version: %v, want ErrConflict", err)
	}
	if st := load(t, s, alice); st.Version != v2 || string(st.Data) != "two" {
		t.Fatalf("after a stale swap: %d %q", st.Version, st.Data)
	}
	// Keys are separate, by user and by upstream.
	swap(t, s, bob, 0, "bob")
	swap(t, s, aliceAlt, 0, "alt")
	if st := load(t, s, alice); string(st.Data) != "two" {
		t.Fatalf("alice's grant is %q", st.Data)
	}
	// Binary data survives.
	bin := []byte{0, 1, 0xff, 0, '\n'}
	if _, err := s.SwapGrant(ctx, bob, load(t, s, bob).Version, bin); err != nil {
		t.Fatal(err)
	}
	if st := load(t, s, bob); !bytes.Equal(st.Data, bin) {
		t.Fatalf("binary data came back as %x", st.Data)
	}
	if err := s.DeleteGrant(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LoadGrant(ctx, alice); !errors.Is(err, grants.ErrNoGrant) {
		t.Fatalf("LoadGrant after delete: %v", err)
	}
	if err := s.DeleteGrant(ctx, alice); err != nil {
		t.Fatalf("deleting nothing: %v", err)
	}
	if st := load(t, s, aliceAlt); string(st.Data) != "alt" {
		t.Fatalf("delete took another upstream's grant: %q", st.Data)
	}
}

// A grant deleted and enrolled again must not take a version that a
// writer still holding the old grant could match.
func testVersions(t *testing.T, s grants.Store) {
	seen := map[int64]bool{}
	prev := int64(0)
	for i := range 3 {
		v := swap(t, s, alice, prev, "x")
		if seen[v] {
			t.Fatalf("version %d given twice (round %d)", v, i)
		}
		seen[v] = true
		prev = v
	}
	if err := s.DeleteGrant(context.Background(), alice); err != nil {
		t.Fatal(err)
	}
	v := swap(t, s, alice, 0, "new")
	if seen[v] {
		t.Fatalf("the grant enrolled again took old version %d", v)
	}
	if _, err := s.SwapGrant(context.Background(), alice, prev, []byte("stale")); !errors.Is(err, grants.ErrConflict) {
		t.Fatalf("swap from the deleted grant's version: %v, want ErrConflict", err)
	}
}

// Of writers that all read one version, exactly one swaps: the others
// learn of the conflict.
func testConcurrentSwap(t *testing.T, s grants.Store) {
	v := swap(t, s, alice, 0, "base")
	const n = 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins, conflicts := 0, 0
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.SwapGrant(context.Background(), alice, v, []byte{byte('a' + i)})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				wins++
			case errors.Is(err, grants.ErrConflict):
				conflicts++
			default:
				t.Errorf("SwapGrant: %v", err)
			}
		}()
	}
	wg.Wait()
	if wins != 1 || conflicts != n-1 {
		t.Fatalf("%d swaps won and %d conflicted, want 1 and %d", wins, conflicts, n-1)
	}
}

func testLease(t *testing.T, s grants.Store) {
	ctx := context.Background()
	try := func(k grants.Key, holder string, ttl time.Duration) bool {
		t.Helper()
		ok, err := s.TryRefreshLease(ctx, k, holder, ttl)
		if err != nil {
			t.Fatalf("TryRefreshLease: %v", err)
		}
		return ok
	}
	if !try(alice, "A", time.Minute) {
		t.Fatal("A did not get a free lease")
	}
	if try(alice, "B", time.Minute) {
		t.Fatal("B got A's live lease")
	}
	if !try(alice, "A", time.Minute) {
		t.Fatal("A could not take its own lease again")
	}
	if !try(bob, "B", time.Minute) || !try(aliceAlt, "B", time.Minute) {
		t.Fatal("leases of other keys are not separate")
	}
	if err := s.ReleaseRefreshLease(ctx, alice, "B"); err != nil {
		t.Fatal(err)
	}
	if try(alice, "B", time.Minute) {
		t.Fatal("B's release freed A's lease")
	}
	if err := s.ReleaseRefreshLease(ctx, alice, "A"); err != nil {
		t.Fatal(err)
	}
	if !try(alice, "B", 300*time.Millisecond) {
		t.Fatal("B did not get the lease A released")
	}
	// An expired lease is taken over: its holder died.
	time.Sleep(600 * time.Millisecond)
	if !try(alice, "C", time.Minute) {
		t.Fatal("C did not take over B's expired lease")
	}
}
