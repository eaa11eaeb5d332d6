// Package storetest is the conformance suite every uidmap.Store must pass.
// Each store's own tests call Run with a constructor, so the embedded and the
// shared stores are held to exactly the same behaviour.
package storetest

import (
	"context"
	"errors"
	"testing"

	"github.com/popbridge/popbridge/uidmap"
)

// Run runs the suite; newStore returns a fresh, empty store for each case.
func Run(t *testing.T, newStore func(t *testing.T) uidmap.Store) {
	t.Helper()
	ctx := context.Background()
	key := uidmap.Key{Upstream: "imap.example:993", User: "alice", Mailbox: "INBOX"}

	t.Run("EmptyMaildrop", func(t *testing.T) {
		s := newStore(t)
		d, err := s.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if d.UIDValidity != 0 || len(d.UIDLs) != 0 {
			t.Fatalf("unknown maildrop: got %+v, want empty", d)
		}
	})

	t.Run("AssignThenLoad", func(t *testing.T) {
		s := newStore(t)
		if err := s.Assign(ctx, key, 7, []uidmap.Entry{{UID: 1, UIDL: "a"}, {UID: 2, UIDL: "b"}}); err != nil {
			t.Fatal(err)
		}
		if err := s.Assign(ctx, key, 7, []uidmap.Entry{{UID: 3, UIDL: "c"}}); err != nil {
			t.Fatal(err)
		}
		d, err := s.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		want := map[uint32]string{1: "a", 2: "b", 3: "c"}
		if d.UIDValidity != 7 || len(d.UIDLs) != len(want) {
			t.Fatalf("got %+v, want uidvalidity 7 and %v", d, want)
		}
		for uid, u := range want {
			if d.UIDLs[uid] != u {
				t.Errorf("UID %d: got %q, want %q", uid, d.UIDLs[uid], u)
			}
		}
	})

	t.Run("KeysAreSeparate", func(t *testing.T) {
		s := newStore(t)
		other := key
		other.User = "bob"
		if err := s.Assign(ctx, key, 1, []uidmap.Entry{{UID: 1, UIDL: "alice-1"}}); err != nil {
			t.Fatal(err)
		}
		d, err := s.Load(ctx, other)
		if err != nil {
			t.Fatal(err)
		}
		if len(d.UIDLs) != 0 {
			t.Fatalf("bob sees alice's state: %+v", d)
		}
	})

	t.Run("LoadIsACopy", func(t *testing.T) {
		s := newStore(t)
		if err := s.Assign(ctx, key, 1, []uidmap.Entry{{UID: 1, UIDL: "x"}}); err != nil {
			t.Fatal(err)
		}
		d, _ := s.Load(ctx, key)
		d.UIDLs[1] = "changed"
		d2, _ := s.Load(ctx, key)
		if d2.UIDLs[1] != "x" {
			t.Fatalf("changing a loaded maildrop changed the store: %q", d2.UIDLs[1])
		}
	})

	t.Run("LockIsExclusive", func(t *testing.T) {
		s := newStore(t)
		release, err := s.Lock(ctx, key, "session-1")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.Lock(ctx, key, "session-2"); !errors.Is(err, uidmap.ErrLocked) {
			t.Fatalf("second Lock: got %v, want ErrLocked", err)
		}
		other := key
		other.User = "bob"
		releaseBob, err := s.Lock(ctx, other, "session-3")
		if err != nil {
			t.Fatalf("another maildrop must not be locked: %v", err)
		}
		releaseBob()
		release()
		release() // twice is harmless
		release2, err := s.Lock(ctx, key, "session-2")
		if err != nil {
			t.Fatalf("Lock after release: %v", err)
		}
		release2()
	})
}
