package oauth2user_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/internal/oauth2user"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
)

func load(t *testing.T, text string) *config.Config {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.yaml")
	os.WriteFile(p, []byte(text), 0o600)
	cfg, err := config.Load(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func TestUpstreams(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("a test secret of at least 32 bytes, not a real one"), 0o600)
	store, err := boltstore.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	base := `upstream:
  address: "outlook.office365.com:993"
  oauth2: {provider: microsoft, client_id: m}
routes:
  - domain: a.example
    upstream:
      address: "imap.a.example:993"
      oauth2: {provider: generic, client_id: g, token_url: "https://id.a.example/t", device_auth_url: "https://id.a.example/d", scopes: [x], mechanism: oauthbearer}
  - domain: b.example
    upstream: {address: "imap.b.example:993"}
%s
state:
  path: %q
  secret_file: %q
`
	cfg := load(t, fmt.Sprintf(base, "", filepath.Join(dir, "x.db"), secret))
	ups, err := oauth2user.Upstreams(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(ups) != 2 || ups["outlook.office365.com:993"] == nil || ups["imap.a.example:993"] == nil || ups["imap.b.example:993"] != nil {
		t.Fatalf("Upstreams: %v", ups)
	}
	if ups["imap.a.example:993"].Mechanism != "OAUTHBEARER" || ups["outlook.office365.com:993"].Mechanism != "" {
		t.Fatalf("mechanisms %q %q", ups["imap.a.example:993"].Mechanism, ups["outlook.office365.com:993"].Mechanism)
	}
	// Exchange Online ends a session when its token expires: Microsoft's
	// tokens are renewed long before.
	if ups["outlook.office365.com:993"].Grants.Margin() != grants.MicrosoftMargin || ups["imap.a.example:993"].Grants.Margin() != grants.DefaultMargin {
		t.Fatalf("margins %v %v", ups["outlook.office365.com:993"].Grants.Margin(), ups["imap.a.example:993"].Grants.Margin())
	}

	// A second route to one upstream with another provider is refused.
	conflict := `  - domain: c.example
    upstream:
      address: "outlook.office365.com:993"
      oauth2: {provider: microsoft, client_id: other}`
	if _, err := oauth2user.Upstreams(load(t, fmt.Sprintf(base, conflict, filepath.Join(dir, "x.db"), secret)), store, nil); err == nil ||
		!strings.Contains(err.Error(), "routes.2.upstream.oauth2") {
		t.Fatalf("two providers for one upstream: %v", err)
	}
	// No secret file, or a store that keeps no grants.
	noSecret := strings.Replace(fmt.Sprintf(base, "", filepath.Join(dir, "x.db"), secret), "  secret_file: \""+secret+"\"\n", "", 1)
	if _, err := oauth2user.Upstreams(load(t, noSecret), store, nil); err == nil || !strings.Contains(err.Error(), "state.secret_file") {
		t.Fatalf("no secret file: %v", err)
	}
	if _, err := oauth2user.Upstreams(cfg, uidmap.NewMemoryStore(), nil); err == nil {
		t.Fatal("the memory store was taken")
	}
	// Without oauth2 blocks there is nothing to do.
	plain := load(t, fmt.Sprintf("upstream: {address: \"imap.example:993\"}\nstate: {path: %q}\n", filepath.Join(dir, "x.db")))
	if ups, err := oauth2user.Upstreams(plain, uidmap.NewMemoryStore(), nil); err != nil || ups != nil {
		t.Fatalf("no oauth2: %v %v", ups, err)
	}
}

// App-only blocks give app managers: client_credentials for Microsoft,
// service_account for Google with its key file read.
func TestUpstreamsAppOnly(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "secret")
	os.WriteFile(secret, []byte("a test secret of at least 32 bytes, not a real one"), 0o600)
	key := filepath.Join(dir, "sa.json")
	os.WriteFile(key, []byte(`{"type": "service_account", "client_email": "pb@p.iam.gserviceaccount.com", "private_key": "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIA==\n-----END PRIVATE KEY-----\n", "token_uri": "https://oauth2.googleapis.com/token"}`), 0o600)
	store, err := boltstore.Open(filepath.Join(dir, "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	cfg := load(t, fmt.Sprintf(`upstream:
  address: "outlook.office365.com:993"
  oauth2: {provider: microsoft, grant: client_credentials, tenant: contoso.onmicrosoft.com, client_id: m, client_secret: s}
routes:
  - domain: g.example
    upstream:
      address: "imap.gmail.com:993"
      oauth2: {provider: google, grant: service_account, service_account_file: %q}
  - domain: u.example
    upstream:
      address: "imap.u.example:993"
      oauth2: {provider: microsoft, client_id: u}
state:
  path: %q
  secret_file: %q
`, key, filepath.Join(dir, "x.db"), secret))
	ups, err := oauth2user.Upstreams(cfg, store, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !ups["outlook.office365.com:993"].Grants.App() || !ups["imap.gmail.com:993"].Grants.App() || ups["imap.u.example:993"].Grants.App() {
		t.Fatalf("app-only: microsoft %v, google %v, user grants %v", ups["outlook.office365.com:993"].Grants.App(),
			ups["imap.gmail.com:993"].Grants.App(), ups["imap.u.example:993"].Grants.App())
	}
	os.Remove(key)
	if _, err := oauth2user.Upstreams(cfg, store, nil); err == nil || !strings.Contains(err.Error(), "service_account_file") {
		t.Fatalf("a missing key file: %v", err)
	}
}
