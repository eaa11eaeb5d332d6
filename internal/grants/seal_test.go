package grants

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var secret = []byte("0123456789abcdef0123456789abcdef")

func TestSealOpen(t *testing.T) {
	s, err := NewSealer(secret)
	if err != nil {
		t.Fatal(err)
	}
	k := Key{Upstream: "imap.example:993", User: "alice"}
	g := Grant{AccessToken: "at-secret", RefreshToken: "rt-secret", Expiry: time.Unix(1800000000, 0).UTC()}
	sealed, err := s.Seal(k, g)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, []byte("at-secret")) || bytes.Contains(sealed, []byte("rt-secret")) {
		t.Fatal("the sealed grant holds a token in clear")
	}
	again, _ := s.Seal(k, g)
	if bytes.Equal(sealed, again) {
		t.Fatal("two seals of one grant are equal: the nonce is not random")
	}
	got, err := s.Open(k, sealed)
	if err != nil || got.AccessToken != g.AccessToken || got.RefreshToken != g.RefreshToken || !got.Expiry.Equal(g.Expiry) {
		t.Fatalf("Open: %v, %v", got, err)
	}

	other, _ := NewSealer([]byte("another secret, long enough to be taken"))
	if _, err := other.Open(k, sealed); !errors.Is(err, ErrUnsealable) {
		t.Fatalf("another secret opened it: %v", err)
	}
	// A sealed grant copied to another user's (or upstream's) row.
	for _, k2 := range []Key{{k.Upstream, "mallory"}, {"imap2.example:993", k.User}, {k.Upstream + "a", "lice"}} {
		if _, err := s.Open(k2, sealed); !errors.Is(err, ErrUnsealable) {
			t.Fatalf("%v opened alice's grant: %v", k2, err)
		}
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	if _, err := s.Open(k, tampered); !errors.Is(err, ErrUnsealable) {
		t.Fatalf("a tampered grant opened: %v", err)
	}
	if _, err := s.Open(k, []byte{9, 1, 2}); !errors.Is(err, ErrUnsealable) {
		t.Fatalf("an unknown format opened: %v", err)
	}
}

func TestSecretFile(t *testing.T) {
	if _, err := NewSealer([]byte("short")); err == nil {
		t.Fatal("a 5-byte secret was taken")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "secret")
	if err := os.WriteFile(path, append(secret, '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadSealer(path); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a world-readable secret file: %v", err)
	}
	os.Chmod(path, 0o600)
	s, err := LoadSealer(path)
	if err != nil {
		t.Fatal(err)
	}
	// The trailing newline is not part of the secret.
	direct, _ := NewSealer(secret)
	k := Key{User: "u"}
	sealed, _ := s.Seal(k, Grant{AccessToken: "x"})
	if _, err := direct.Open(k, sealed); err != nil {
		t.Fatalf("the file's secret differs from its text: %v", err)
	}
	if _, err := LoadSealer(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestGrantPrintsNoToken(t *testing.T) {
	g := Grant{AccessToken: "at-secret", RefreshToken: "rt-secret", Expiry: time.Now()}
	for _, s := range []string{fmt.Sprint(g), fmt.Sprintf("%v %+v %#v %s", g, g, g, g), fmt.Sprint(&g), (&Grant{Broken: "invalid_grant", RefreshToken: "rt-secret"}).String()} {
		if strings.Contains(s, "secret") {
			t.Fatalf("a printed grant shows a token: %s", s)
		}
	}
}
