package uidmap_test

import (
	"context"
	"errors"
	"testing"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

func TestFormatDovecot(t *testing.T) {
	// Dovecot's default %08Xu%08Xv.
	if got := (uidmap.FormatDovecot{}).UIDL(1795627431, 1, nil); got != "000000016b0719a7" {
		t.Fatalf("got %q, want 000000016b0719a7", got)
	}
	if got := (uidmap.FormatDovecot{}).UIDL(0xffffffff, 0xfffffffe, nil); got != "fffffffeffffffff" {
		t.Fatalf("got %q", got)
	}
}

func TestParseFormat(t *testing.T) {
	cases := map[string]string{ // template → UIDL for UID 26, UIDVALIDITY 1795627431
		"":           "0000001a6b0719a7",
		"dovecot":    "0000001a6b0719a7",
		"%08Xu%08Xv": "0000001a6b0719a7", // the same, spelt as Dovecot's setting
		"%v.%u":      "1795627431.26",
		"%u":         "26",
		"x%%%4xu":    "x%__1a", // padding without 0 uses "_": a space is not allowed in a UIDL
	}
	for spec, want := range cases {
		f, err := uidmap.ParseFormat(spec)
		if err != nil {
			t.Errorf("%q: %v", spec, err)
			continue
		}
		if got := f.UIDL(1795627431, 26, nil); got != want {
			t.Errorf("%q: got %q, want %q", spec, got, want)
		}
	}
	for _, bad := range []string{"%v", "plain", "%q", "%u %v", "%", "%08"} {
		if _, err := uidmap.ParseFormat(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTemplateMessageIDHash(t *testing.T) {
	f, err := uidmap.ParseFormat("%m")
	if err != nil {
		t.Fatal(err)
	}
	a := f.UIDL(1, 1, &uidmap.Identity{MessageID: "<a@x>"})
	b := f.UIDL(1, 2, &uidmap.Identity{MessageID: " <a@x> (comment)"})
	c := f.UIDL(1, 3, &uidmap.Identity{MessageID: "<c@x>"})
	if a != b || a == c || !pop3.ValidUIDL(a) {
		t.Fatalf("%%m: %q %q %q", a, b, c)
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
		if got := pop3.ValidUIDL(s); got != want {
			t.Errorf("ValidUIDL(%q) = %v, want %v", s, got, want)
		}
	}
}

type failingStore struct{ uidmap.Store }

var errBroken = errors.New("disk on fire")

func (failingStore) Apply(context.Context, uidmap.Key, *uidmap.Change) error { return errBroken }

func TestResolveFailsWhenStoreFails(t *testing.T) {
	m := uidmap.New(failingStore{uidmap.NewMemoryStore()}, uidmap.Options{})
	_, err := m.Resolve(context.Background(), uidmap.Key{User: "a"}, 1, []uidmap.Message{{UID: 1}}, nil)
	if !errors.Is(err, errBroken) {
		t.Fatalf("got %v, want the store's error: a UIDL that was not stored must not be served", err)
	}
}
