package config

import (
	"slices"
	"strings"
	"testing"
)

func TestLegacyLaneValidation(t *testing.T) {
	file := `listeners:
  - address: "0.0.0.0:995"
    tls: implicit
    legacy:
      min_tls_version: "0.9"
      networks: ["0.0.0.0/0", "not-a-net", "192.0.2.0/24"]
  - address: "0.0.0.0:110"
    legacy:
      min_tls_version: "1.0"
  - address: "0.0.0.0:111"
    legacy:
      networks: ["192.0.2.0/24"]
tls:
  cert_file: /x.pem
  key_file: /x.key
upstream:
  address: imap.example.net:993
state:
  path: /tmp/x
`
	_, err := Parse([]byte(file), nil)
	want := map[string]int{
		"listeners.0.legacy.min_tls_version": 5,
		"listeners.0.legacy.networks.0":      6,
		"listeners.0.legacy.networks.1":      6,
		"listeners.1.legacy.min_tls_version": 9, // tls: none
		"listeners.1.legacy.networks":        0, // missing
		"listeners.2.legacy":                 11,
	}
	wantKeyErrors(t, err, want, true)
	if !strings.Contains(err.Error(), "covers every address") {
		t.Errorf("0.0.0.0/0 must be refused as everyone: %v", err)
	}
}

func TestLegacyLaneFromEnvironment(t *testing.T) {
	cfg, err := Parse([]byte(minimal), []string{
		"POPBRIDGE_LISTENERS_0_LEGACY_ALLOW_PLAINTEXT=true",
		"POPBRIDGE_LISTENERS_0_LEGACY_NETWORKS=192.0.2.0/24, 198.51.100.7",
	})
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Listeners[0].Legacy; !l.AllowPlaintext || !slices.Equal(l.Networks, []string{"192.0.2.0/24", "198.51.100.7"}) {
		t.Fatalf("legacy from the environment: %+v", l)
	}
	out, _ := cfg.Redacted()
	if !strings.Contains(string(out), "allow_plaintext: true") {
		t.Fatalf("check-config output lacks the lane:\n%s", out)
	}
	plain, _ := Parse([]byte(minimal), nil)
	if out, _ := plain.Redacted(); strings.Contains(string(out), "legacy") {
		t.Fatalf("a listener without a lane shows one:\n%s", out)
	}
}

func TestDiff(t *testing.T) {
	a, err := Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(minimal+`listeners:
  - address: "0.0.0.0:110"
    tls: none
  - address: "0.0.0.0:995"
auth:
  mechanisms: [PLAIN]
log:
  level: debug
`), []string{"POPBRIDGE_UPSTREAM_MASTER_PASSWORD="})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := Diff(a, b), []string{"listeners", "auth.mechanisms", "log.level"}; !slices.Equal(got, want) {
		t.Fatalf("Diff = %v, want %v", got, want)
	}
	if got := Diff(a, a); len(got) != 0 {
		t.Fatalf("Diff of a config with itself: %v", got)
	}
	c := *a
	c.Listeners = []Listener{{Address: "0.0.0.0:110", TLS: "starttls"}}
	c.State.DSN = "postgres://secret"
	if got, want := Diff(a, &c), []string{"listeners.0.tls", "state.dsn"}; !slices.Equal(got, want) {
		t.Fatalf("Diff = %v, want %v", got, want)
	}
}

func TestWarnings(t *testing.T) {
	cfg, err := Parse([]byte(`listeners:
  - address: "0.0.0.0:110"
  - address: "127.0.0.1:110"
  - address: "[::1]:111"
  - address: "0.0.0.0:995"
    tls: implicit
    legacy:
      allow_plaintext: true
      networks: ["192.0.2.0/24"]
tls:
  cert_file: /x.pem
  key_file: /x.key
  min_version: "1.1"
auth:
  allow_plaintext: true
upstream:
  address: 127.0.0.1:143
  tls: none
state:
  path: /tmp/x
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range cfg.Warnings() {
		got = append(got, w.Error())
	}
	want := []string{
		"auth.allow_plaintext (line 15): listeners.0 (0.0.0.0:110, tls: none) accepts passwords in the clear from other machines",
		"tls.min_version (line 13): TLS 1.1 is obsolete (RFC 8996); a listener's legacy lane can allow it for old devices' networks only",
		"listeners.3.legacy (line 7): legacy lane on 0.0.0.0:995 for 192.0.2.0/24: plaintext login",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("warnings\n got %q\nwant %q", got, want)
	}
	quiet, _ := Parse([]byte(minimal), nil)
	if ws := quiet.Warnings(); len(ws) != 0 {
		t.Fatalf("warnings for the defaults: %v", ws)
	}
}
