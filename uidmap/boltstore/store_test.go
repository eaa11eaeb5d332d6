package boltstore_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
	"github.com/popbridge/popbridge/uidmap/storetest"
)

var key = uidmap.Key{Upstream: "u", User: "alice", Mailbox: "INBOX"}

func openBolt(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) uidmap.Store {
		return openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	})
}

func TestStoreSurvivesReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, key, &uidmap.Change{UIDValidity: 9, Put: []uidmap.Record{{UID: 4, UIDL: "kept"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	d, err := openBolt(t, path).Load(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := d.Find(4); d.UIDValidity != 9 || r.UIDL != "kept" {
		t.Fatalf("after reopen: %+v", d)
	}
}

func TestStoreRefusesGarbage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(path, []byte("this is not a bbolt file, and must not be replaced by an empty one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if s, err := boltstore.Open(path); err == nil {
		s.Close()
		t.Fatal("a damaged store was opened")
	}
	data, _ := os.ReadFile(path)
	if string(data[:8]) != "this is " {
		t.Fatal("the damaged file was overwritten")
	}
}

func TestStoreSecondProcessIsRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	openBolt(t, path)
	if _, err := boltstore.Open(path); !errors.Is(err, boltstore.ErrBusy) {
		t.Fatalf("second open: %v, want ErrBusy", err)
	}
}

func TestLogins(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	storetest.Logins(t, s, s.Logins)
}
