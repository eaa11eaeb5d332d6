package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const withOAuth2 = `
upstream:
  address: outlook.office365.com:993
  oauth2:
    provider: microsoft
    tenant: contoso.onmicrosoft.com
    client_id: 00000000-0000-0000-0000-000000000001
state:
  path: /tmp/state.db
  secret_file: /etc/popbridge/secret
routes:
  - domain: example.org
    upstream:
      address: imap.example.org:993
      oauth2:
        provider: generic
        client_id: popbridge
        client_secret_file: /etc/popbridge/client-secret
        token_url: https://id.example.org/oauth/token
        device_auth_url: https://id.example.org/device_authorization
        scopes: [openid, offline_access]
`

func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// An oauth2 block loads, for serve and the oauth2 subcommands alike, with
// its client secret from the environment and redacted.
func TestOAuth2Loads(t *testing.T) {
	cfg, err := Load(writeConfig(t, withOAuth2), []string{"POPBRIDGE_UPSTREAM_OAUTH2_CLIENT_SECRET=from-env"})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if s, _ := cfg.Upstream.OAuth2.Secret(); s != "from-env" {
		t.Fatalf("the environment's client secret is %q", s)
	}
	u, err := cfg.UpstreamByAddress("imap.example.org:993")
	if err != nil || u.OAuth2.Provider != "generic" {
		t.Fatalf("UpstreamByAddress: %+v %v", u, err)
	}
	if _, err := cfg.UpstreamByAddress("nowhere:993"); err == nil {
		t.Fatal("UpstreamByAddress found an address nobody has")
	}
	red, err := cfg.Redacted()
	if err != nil || strings.Contains(string(red), "from-env") {
		t.Fatalf("the redacted config shows the client secret (%v)", err)
	}
	// Other problems are still reported.
	if _, err := Load(writeConfig(t, strings.Replace(withOAuth2, "provider: generic", "provider: yahoo", 1)), nil); err == nil ||
		!strings.Contains(err.Error(), "routes.0.upstream.oauth2.provider") {
		t.Fatalf("Load of a bad provider: %v", err)
	}
}

func TestOAuth2Validation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		block OAuth2
		keys  []string // besides the refusal
	}{
		{"microsoft", OAuth2{Provider: "microsoft", ClientID: "id"}, nil},
		{"google", OAuth2{Provider: "google", ClientID: "id", ClientSecret: "s"}, nil},
		{"generic loopback http", OAuth2{Provider: "generic", ClientID: "id", TokenURL: "http://127.0.0.1:9/t", DeviceAuthURL: "http://localhost/d", Scopes: []string{"a"}}, nil},
		{"no client id", OAuth2{Provider: "microsoft"}, []string{"k.client_id"}},
		{"unknown provider", OAuth2{Provider: "yahoo", ClientID: "id"}, []string{"k.provider"}},
		{"built-in endpoints", OAuth2{Provider: "google", ClientID: "id", TokenURL: "https://x/t"}, []string{"k.token_url"}},
		{"generic without endpoints or scopes", OAuth2{Provider: "generic", ClientID: "id"}, []string{"k.token_url", "k.device_auth_url", "k.scopes"}},
		{"generic code flow only", OAuth2{Provider: "generic", ClientID: "id", TokenURL: "https://i/t", AuthURL: "https://i/a", Scopes: []string{"a"}}, nil},
		{"generic bad auth_url", OAuth2{Provider: "generic", ClientID: "id", TokenURL: "https://i/t", DeviceAuthURL: "https://i/d", AuthURL: "http://i/a", Scopes: []string{"a"}}, []string{"k.auth_url"}},
		{"built-in auth_url", OAuth2{Provider: "microsoft", ClientID: "id", AuthURL: "https://x/a"}, []string{"k.auth_url"}},
		{"generic over http", OAuth2{Provider: "generic", ClientID: "id", TokenURL: "http://id.example.org/t", DeviceAuthURL: "https://id.example.org/d", Scopes: []string{"a"}}, []string{"k.token_url"}},
		{"tenant elsewhere", OAuth2{Provider: "google", ClientID: "id", Tenant: "t"}, []string{"k.tenant"}},
		{"bad tenant", OAuth2{Provider: "microsoft", ClientID: "id", Tenant: "a/b"}, []string{"k.tenant"}},
		{"two secrets", OAuth2{Provider: "google", ClientID: "id", ClientSecret: "s", ClientSecretFile: "/f"}, []string{"k.client_secret"}},
		{"bad scope", OAuth2{Provider: "microsoft", ClientID: "id", Scopes: []string{"a b"}}, []string{"k.scopes.0"}},
		{"oauthbearer", OAuth2{Provider: "generic", ClientID: "id", TokenURL: "https://i/t", DeviceAuthURL: "https://i/d", Scopes: []string{"a"}, Mechanism: "OAUTHBEARER"}, nil},
		{"bad mechanism", OAuth2{Provider: "microsoft", ClientID: "id", Mechanism: "plain"}, []string{"k.mechanism"}},
		{"microsoft app-only", OAuth2{Provider: "microsoft", Grant: "client_credentials", ClientID: "id", ClientSecretFile: "/f", Tenant: "contoso.onmicrosoft.com"}, nil},
		{"app-only without tenant", OAuth2{Provider: "microsoft", Grant: "client_credentials", ClientID: "id", ClientSecret: "s", Tenant: "organizations"}, []string{"k.tenant"}},
		{"app-only without secret", OAuth2{Provider: "microsoft", Grant: "client_credentials", ClientID: "id", Tenant: "t"}, []string{"k.client_secret"}},
		{"generic app-only, no flows", OAuth2{Provider: "generic", Grant: "client_credentials", ClientID: "id", ClientSecret: "s", TokenURL: "https://i/t", Scopes: []string{"a"}}, nil},
		{"google client credentials", OAuth2{Provider: "google", Grant: "client_credentials", ClientID: "id", ClientSecret: "s"}, []string{"k.grant"}},
		{"google service account", OAuth2{Provider: "google", Grant: "service_account", ServiceAccountFile: "/sa.json"}, nil},
		{"service account without key", OAuth2{Provider: "google", Grant: "service_account", ClientSecret: "s"}, []string{"k.service_account_file", "k.client_secret"}},
		{"service account elsewhere", OAuth2{Provider: "microsoft", Grant: "service_account", ClientID: "id", ServiceAccountFile: "/sa.json"}, []string{"k.grant"}},
		{"key file without service account", OAuth2{Provider: "google", ClientID: "id", ServiceAccountFile: "/sa.json"}, []string{"k.service_account_file"}},
		{"unknown grant", OAuth2{Provider: "microsoft", ClientID: "id", Grant: "password"}, []string{"k.grant"}},
	} {
		var keys []string
		validateOAuth2("k", &tc.block, func(key, format string, args ...any) { keys = append(keys, key) })
		if strings.Join(keys, ",") != strings.Join(tc.keys, ",") {
			t.Errorf("%s: problems at %v, want %v", tc.name, keys, tc.keys)
		}
	}
	var none []string
	validateOAuth2("k", &OAuth2{}, func(key, _ string, _ ...any) { none = append(none, key) })
	if len(none) != 0 {
		t.Fatalf("an empty block: %v", none)
	}
}

func TestOAuth2SecretFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(p, []byte("  s3cret  \nignored\n"), 0o600)
	if s, err := (&OAuth2{ClientSecretFile: p}).Secret(); err != nil || s != "s3cret" {
		t.Fatalf("Secret: %q %v", s, err)
	}
	if _, err := (&OAuth2{ClientSecretFile: p + "x"}).Secret(); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

func TestServiceAccountKeyFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "sa.json")
	os.WriteFile(p, []byte(`{"type":"service_account"}`), 0o600)
	if b, err := (&OAuth2{ServiceAccountFile: p}).ServiceAccountKey(); err != nil || !strings.Contains(string(b), "service_account") {
		t.Fatalf("ServiceAccountKey: %q %v", b, err)
	}
	os.Chmod(p, 0o644)
	if _, err := (&OAuth2{ServiceAccountFile: p}).ServiceAccountKey(); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("a key others may read: %v", err)
	}
}
