package boltstore_test

import (
	"context"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/uidmap"
)

func TestMaildrops(t *testing.T) {
	ctx := context.Background()
	s := openBolt(t, filepath.Join(t.TempDir(), "state.db"))
	if keys, err := s.Maildrops(ctx); err != nil || len(keys) != 0 {
		t.Fatalf("empty store: %v, %v", keys, err)
	}
	want := []uidmap.Key{
		{Upstream: "imap:993", User: "alice", Mailbox: "INBOX"},
		{Upstream: "imap:993", User: "bob@example.org", Mailbox: "INBOX"},
		{Upstream: "other:143", User: "alice", Mailbox: "Archive"},
		{Upstream: "", User: "", Mailbox: ""},
	}
	for _, k := range want {
		if err := s.Apply(ctx, k, &uidmap.Change{UIDValidity: 1, Add: []uidmap.Record{{UID: 1, UIDL: "x"}}}); err != nil {
			t.Fatal(err)
		}
	}
	gone := uidmap.Key{Upstream: "imap:993", User: "carol", Mailbox: "INBOX"}
	s.Apply(ctx, gone, &uidmap.Change{UIDValidity: 1, Add: []uidmap.Record{{UID: 1, UIDL: "x"}}})
	s.Reset(ctx, gone)
	keys, err := s.Maildrops(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sortKeys := func(ks []uidmap.Key) {
		slices.SortFunc(ks, func(a, b uidmap.Key) int {
			return strings.Compare(a.Upstream+"\x00"+a.User+"\x00"+a.Mailbox, b.Upstream+"\x00"+b.User+"\x00"+b.Mailbox)
		})
	}
	sortKeys(keys)
	sortKeys(want)
	if !reflect.DeepEqual(keys, want) {
		t.Fatalf("Maildrops = %+v, want %+v", keys, want)
	}
}
