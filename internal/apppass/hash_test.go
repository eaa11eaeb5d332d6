package apppass

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestHashCheck(t *testing.T) {
	// Hashes keep their parameters: one made with others still checks.
	for _, p := range []Params{DefaultParams(), {Memory: 64, Time: 3, Threads: 2}} {
		h := hash("s3cret", p)
		if !strings.HasPrefix(h, "$argon2id$v=19$m=") || strings.Contains(h, "s3cret") {
			t.Fatalf("hash %q", h)
		}
		if ok, err := check("s3cret", h); !ok || err != nil {
			t.Fatalf("check of the right secret: %v %v", ok, err)
		}
		if ok, err := check("s3cres", h); ok || err != nil {
			t.Fatalf("check of a wrong secret: %v %v", ok, err)
		}
	}
	if hash("x", DefaultParams()) == hash("x", DefaultParams()) {
		t.Fatal("two hashes of one secret are equal: no salt")
	}
	for _, bad := range []string{"", "$argon2i$v=19$m=64,t=1,p=1$c2FsdA$a2V5", "$argon2id$v=19$m=64,t=0,p=1$c2FsdA$a2V5", "$argon2id$v=19$m=64,t=1,p=1$!!$a2V5", "plain"} {
		if _, err := check("x", bad); err == nil {
			t.Fatalf("check accepted hash %q", bad)
		}
	}
}

func TestSplit(t *testing.T) {
	for in, want := range map[string][2]string{
		"abcd-efgh-ijkl-mnop-qrst":   {"abcd", "efghijklmnopqrst"},
		" ABCDEFGHIJKLMNOPQRST ":     {"abcd", "efghijklmnopqrst"},
		"abcd-efgh-ijkl-mnop-qrs":    {},
		"abcd-efgh-ijkl-mnop-qrs1":   {}, // 1 is not in the alphabet
		"abcd-efgh-ijkl-mnop-qrst-u": {},
	} {
		id, secret, ok := split(in)
		if ok != (want[0] != "") || id != want[0] || secret != want[1] {
			t.Errorf("split(%q) = %q %q %v", in, id, secret, ok)
		}
	}
	if p := randomGroup(1000); strings.Trim(p, alphabet) != "" {
		t.Fatal("randomGroup leaves the alphabet")
	}
}

// A burst of logins hashes at most GOMAXPROCS at once; a login whose
// context ends while it waits is refused, not hashed.
func TestHashingBounded(t *testing.T) {
	ps := New(nil, Params{Memory: 64, Time: 1, Threads: 1})
	for range cap(ps.hashing) {
		ps.hashing <- struct{}{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := ps.check(ctx, "x", ps.dummy); !errors.Is(err, context.Canceled) {
		t.Fatalf("check with every slot taken and the context done: %v", err)
	}
	<-ps.hashing
	if ok, err := ps.check(context.Background(), "x", ps.dummy); ok || err != nil {
		t.Fatalf("check with a free slot: %v %v", ok, err)
	}
}
