package uidmap_test

import (
	"context"
	"slices"
	"testing"

	"github.com/popbridge/popbridge/uidmap"
)

// TestCopy: maildrops are copied whole; a second run finds them present;
// other state in dst is left alone without Force and replaced with it; a
// maildrop whose lock is held is left for later; empty ones are skipped.
// (popbridge state migrate runs it from bolt to PostgreSQL end to end.)
func TestCopy(t *testing.T) {
	ctx := context.Background()
	src, dst := uidmap.NewMemoryStore(), uidmap.NewMemoryStore()
	key := func(u string) uidmap.Key { return uidmap.Key{Upstream: "imap:993", User: u, Mailbox: "INBOX"} }
	a, b, empty := key("a"), key("b"), key("empty")
	for i, k := range []uidmap.Key{a, b} {
		ch := &uidmap.Change{UIDValidity: 7, Add: []uidmap.Record{{UID: 1, UIDL: "one"}, {UID: uint32(2 + i), UIDL: "two", Hidden: true}}}
		if err := src.Apply(ctx, k, ch); err != nil {
			t.Fatal(err)
		}
	}
	keys := []uidmap.Key{a, b, empty}

	res, err := uidmap.Copy(ctx, dst, src, keys, uidmap.CopyOptions{Owner: "test"})
	if err != nil || res.Copied != 2 || res.Records != 4 || len(res.Maildrops) != 2 {
		t.Fatalf("first copy: %+v, %v", res, err)
	}
	for _, k := range []uidmap.Key{a, b} {
		want, _ := src.Load(ctx, k)
		got, _ := dst.Load(ctx, k)
		if got.UIDValidity != want.UIDValidity || !slices.Equal(got.Records, want.Records) {
			t.Fatalf("%s: copied %+v, want %+v", k.User, got, want)
		}
	}
	if res, err := uidmap.Copy(ctx, dst, src, keys, uidmap.CopyOptions{}); err != nil || res.Copied != 0 || res.Present != 2 {
		t.Fatalf("second copy: %+v, %v", res, err)
	}

	// dst moved on for a; b is locked there.
	if err := dst.Apply(ctx, a, &uidmap.Change{Expect: 7, UIDValidity: 7, Put: []uidmap.Record{{UID: 1, UIDL: "one", Hidden: true}}}); err != nil {
		t.Fatal(err)
	}
	lease, err := dst.Lock(ctx, b, "session")
	if err != nil {
		t.Fatal(err)
	}
	res, err = uidmap.Copy(ctx, dst, src, keys, uidmap.CopyOptions{})
	if err != nil || res.Copied != 0 || !slices.Equal(res.Refused, []uidmap.Key{a}) || !slices.Equal(res.InUse, []uidmap.Key{b}) {
		t.Fatalf("copy over changed and locked state: %+v, %v", res, err)
	}
	lease.Release()
	res, err = uidmap.Copy(ctx, dst, src, keys, uidmap.CopyOptions{Force: true})
	if err != nil || res.Copied != 1 || res.Overwritten != 1 || res.Present != 1 {
		t.Fatalf("copy -force: %+v, %v", res, err)
	}
	if got, _ := dst.Load(ctx, a); got.Records[0].Hidden {
		t.Fatal("Force did not restore src's state")
	}
}
