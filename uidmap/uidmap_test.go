package uidmap_test

import (
	"context"
	"errors"
	"testing"

	"github.com/popbridge/popbridge/uidmap"
)

func TestFormatDovecot(t *testing.T) {
	// Dovecot's %08Xu%08Xv, as REFERENCES.md records it.
	got := uidmap.FormatDovecot{}.UIDL(1795627431, uidmap.Message{UID: 1})
	if got != "000000016b0719a7" {
		t.Fatalf("got %q, want 000000016b0719a7", got)
	}
	got = uidmap.FormatDovecot{}.UIDL(0xffffffff, uidmap.Message{UID: 0xfffffffe})
	if got != "fffffffeffffffff" {
		t.Fatalf("got %q", got)
	}
}

func TestParseFormat(t *testing.T) {
	for _, name := range []string{"", "dovecot", "Dovecot"} {
		if _, err := uidmap.ParseFormat(name); err != nil {
			t.Errorf("%q: %v", name, err)
		}
	}
	if _, err := uidmap.ParseFormat("%u"); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestValidUIDL(t *testing.T) {
	long := make([]byte, 71)
	for i := range long {
		long[i] = 'a'
	}
	cases := map[string]bool{
		"000000016b0719a7": true, "!": true, "~": true, string(long[:70]): true,
		"": false, string(long): false, "a b": false, "a\x7f": false, "é": false,
	}
	for s, want := range cases {
		if got := uidmap.ValidUIDL(s); got != want {
			t.Errorf("ValidUIDL(%q) = %v, want %v", s, got, want)
		}
	}
}

var key = uidmap.Key{Upstream: "u", User: "alice", Mailbox: "INBOX"}

func TestResolveStableAndStored(t *testing.T) {
	ctx := context.Background()
	store := uidmap.NewMemoryStore()
	m := uidmap.New(store, nil)
	msgs := []uidmap.Message{{UID: 1, Size: 10}, {UID: 5, Size: 20}}
	first, err := m.Resolve(ctx, key, 42, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if first[0] != "000000010000002a" || first[1] != "000000050000002a" {
		t.Fatalf("got %v", first)
	}
	// The stored UIDL wins over the format: a stored value that the format
	// would not produce proves the store is read.
	if err := store.Assign(ctx, key, 42, []uidmap.Entry{{UID: 9, UIDL: "imported-9"}}); err != nil {
		t.Fatal(err)
	}
	second, err := m.Resolve(ctx, key, 42, append(msgs, uidmap.Message{UID: 9}))
	if err != nil {
		t.Fatal(err)
	}
	if second[0] != first[0] || second[1] != first[1] || second[2] != "imported-9" {
		t.Fatalf("second session: %v, first %v", second, first)
	}
}

func TestResolveKeepsUniqueness(t *testing.T) {
	ctx := context.Background()
	store := uidmap.NewMemoryStore()
	// An imported UIDL equal to what the format gives another message.
	if err := store.Assign(ctx, key, 1, []uidmap.Entry{{UID: 3, UIDL: "0000000200000001"}}); err != nil {
		t.Fatal(err)
	}
	got, err := uidmap.New(store, nil).Resolve(ctx, key, 1, []uidmap.Message{{UID: 2}, {UID: 3}})
	if err != nil {
		t.Fatal(err)
	}
	if got[1] != "0000000200000001" || got[0] == got[1] || !uidmap.ValidUIDL(got[0]) {
		t.Fatalf("got %v: UIDLs must stay unique and the stored one must not move", got)
	}
}

func TestResolveNewUIDValidity(t *testing.T) {
	ctx := context.Background()
	m := uidmap.New(uidmap.NewMemoryStore(), nil)
	if _, err := m.Resolve(ctx, key, 1, []uidmap.Message{{UID: 1}}); err != nil {
		t.Fatal(err)
	}
	got, err := m.Resolve(ctx, key, 2, []uidmap.Message{{UID: 1}})
	if err != nil {
		t.Fatal(err)
	}
	if got[0] != "0000000100000002" {
		t.Fatalf("got %v", got)
	}
}

type failingStore struct{ uidmap.Store }

var errBroken = errors.New("disk on fire")

func (failingStore) Assign(context.Context, uidmap.Key, uint32, []uidmap.Entry) error {
	return errBroken
}

func TestResolveFailsWhenStoreFails(t *testing.T) {
	m := uidmap.New(failingStore{uidmap.NewMemoryStore()}, nil)
	_, err := m.Resolve(context.Background(), key, 1, []uidmap.Message{{UID: 1}})
	if !errors.Is(err, errBroken) {
		t.Fatalf("got %v, want the store's error: a UIDL that was not stored must not be served", err)
	}
}
