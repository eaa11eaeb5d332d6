package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const minimal = `
upstream:
  address: imap.example.net:993
state:
  path: /tmp/state.db
`

func TestDefaults(t *testing.T) {
	cfg, err := Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Upstream.TLS != "implicit" || cfg.Upstream.Mailbox != "INBOX" || cfg.Policy.OnDele != "expunge" ||
		!cfg.Policy.MarkSeen || cfg.Limits.IdleTimeout != 10*time.Minute || cfg.Auth.FailureDelay != 2*time.Second ||
		cfg.Policy.UIDLFormat != "dovecot" || cfg.Listeners[0].Address != "0.0.0.0:110" {
		t.Fatalf("defaults not applied: %+v", cfg)
	}
}

func TestEnvironmentWins(t *testing.T) {
	env := []string{
		"POPBRIDGE_UPSTREAM_ADDRESS=other:143",
		"POPBRIDGE_UPSTREAM_CONNECT_TIMEOUT=3s",
		"POPBRIDGE_POLICY_MARK_SEEN=false",
		"POPBRIDGE_LIMITS_MAX_CONNECTIONS_PER_IP=7",
		"POPBRIDGE_AUTH_MECHANISMS=plain, xoauth2",
		"POPBRIDGE_LISTENERS_0_ADDRESS=127.0.0.1:1110",
		"POPBRIDGE_CONFIG=/ignored",
		"HOME=/root",
	}
	cfg, err := Parse([]byte(minimal), env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Upstream.Address != "other:143" || cfg.Upstream.ConnectTimeout != 3*time.Second || cfg.Policy.MarkSeen ||
		cfg.Limits.MaxConnectionsPerIP != 7 || strings.Join(cfg.Auth.Mechanisms, ",") != "PLAIN,XOAUTH2" ||
		cfg.Listeners[0].Address != "127.0.0.1:1110" {
		t.Fatalf("environment not applied: %+v", cfg)
	}
}

func TestEnvironmentErrors(t *testing.T) {
	_, err := Parse([]byte(minimal), []string{"POPBRIDGE_UPSTREAM_NOPE=1", "POPBRIDGE_POLICY_MARK_SEEN=maybe"})
	var es Errors
	if !errors.As(err, &es) || len(es) != 2 {
		t.Fatalf("got %v, want two key errors", err)
	}
	if !strings.Contains(err.Error(), "POPBRIDGE_UPSTREAM_NOPE") || !strings.Contains(err.Error(), "policy.mark_seen") {
		t.Fatalf("errors must name the variable and key: %v", err)
	}
}

func TestValidationNamesKeyAndLine(t *testing.T) {
	file := `upstream:
  address: imap.example.net:993
  tls: sometimes
policy:
  on_dele: shred
listeners:
  - address: "0.0.0.0:110"
  - address: "nonsense"
    tls: implicit
state:
  path: /tmp/x
`
	_, err := Parse([]byte(file), nil)
	want := map[string]int{"upstream.tls": 3, "policy.on_dele": 5, "listeners.1.address": 8, "tls.cert_file": 0}
	wantKeyErrors(t, err, want, false)
}

func TestUnknownKeyIsAnError(t *testing.T) {
	_, err := Parse([]byte(minimal+"polcy:\n  on_dele: keep\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "polcy") {
		t.Fatalf("got %v, want an error naming the misspelt key", err)
	}
}

func TestIdleTimeoutFloor(t *testing.T) {
	_, err := Parse([]byte(minimal+"limits:\n  idle_timeout: 1m\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "limits.idle_timeout") {
		t.Fatalf("got %v", err)
	}
}

func TestRedacted(t *testing.T) {
	cfg, err := Parse([]byte(minimal+"  dsn: postgres://u:sekrit@db/x\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "sekrit") || strings.Contains(string(out), "REDACTED") == false {
		t.Fatalf("secret in output:\n%s", out)
	}
	if !strings.Contains(string(out), "address: imap.example.net:993") || !strings.Contains(string(out), "connect_timeout: 10s") {
		t.Fatalf("output lost non-secret values:\n%s", out)
	}
	if cfg.State.DSN != "postgres://u:sekrit@db/x" {
		t.Fatal("Redacted changed the config itself")
	}
}

// TestMasterUserNeedsAPasswordCheck: a master user opens every mailbox, so
// it is accepted only with something that checks the user's own password:
// the hook or auth.verify: upstream. The master password is never printed.
func TestMasterUserNeedsAPasswordCheck(t *testing.T) {
	master := []string{"POPBRIDGE_UPSTREAM_MASTER_USER=m", "POPBRIDGE_UPSTREAM_MASTER_PASSWORD=mast3rpw"}
	_, err := Parse([]byte(minimal), master)
	if err == nil || !strings.Contains(err.Error(), "upstream.master_user") || !strings.Contains(err.Error(), "auth.verify") {
		t.Fatalf("got %v: a master user without a check of the user's password must be refused, saying what would do", err)
	}
	for _, extra := range []string{
		"auth:\n  verify: upstream\n",
		"auth:\n  http_hook:\n    url: http://127.0.0.1:9000/auth\n    headers: {X-Auth-Key: hooks3cret}\n",
	} {
		cfg, err := Parse([]byte(minimal+extra), master)
		if err != nil {
			t.Fatalf("%q: %v", extra, err)
		}
		out, err := cfg.Redacted()
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(out), "mast3rpw") || strings.Contains(string(out), "hooks3cret") {
			t.Fatalf("a secret in check-config's output:\n%s", out)
		}
		if !strings.Contains(string(out), "master_user: m") {
			t.Fatalf("output lost the master user's name:\n%s", out)
		}
	}
	if _, err := Parse([]byte(minimal+"auth:\n  verify: upstream\n"), []string{"POPBRIDGE_UPSTREAM_MASTER_SEPARATOR=*"}); err == nil ||
		!strings.Contains(err.Error(), "upstream.master_separator") {
		t.Fatalf("a separator without a master user: %v", err)
	}
	for _, bad := range []struct{ yaml, key string }{
		{"auth:\n  http_hook:\n    url: ftp://x/\n", "auth.http_hook.url"},
		{"auth:\n  http_hook:\n    url: http://x/\n    timeout: 0s\n", "auth.http_hook.timeout"},
		{"auth:\n  http_hook:\n    url: http://x/\n    headers: {Auth-User: x}\n", "auth.http_hook.headers"},
		{"auth:\n  verify: ldap\n", "auth.verify"},
	} {
		if _, err := Parse([]byte(minimal+bad.yaml), nil); err == nil || !strings.Contains(err.Error(), bad.key) {
			t.Errorf("%q: got %v, want an error about %s", bad.yaml, err, bad.key)
		}
	}
}

func TestProxyProtocolAccepted(t *testing.T) {
	cfg, err := Parse([]byte(minimal+`listeners:
  - address: 0.0.0.0:110
    proxy_protocol: true
  - address: 127.0.0.1:1110
limits:
  trusted_proxies: [10.0.0.5, 192.0.2.0/24]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Listeners[0].ProxyProtocol || cfg.Listeners[1].ProxyProtocol || len(cfg.Limits.TrustedProxies) != 2 {
		t.Fatalf("parsed %+v %+v", cfg.Listeners, cfg.Limits)
	}
	// For containers: both from the environment.
	cfg, err = Parse([]byte(minimal), []string{"POPBRIDGE_LISTENERS_0_PROXY_PROTOCOL=true",
		"POPBRIDGE_LIMITS_TRUSTED_PROXIES=10.0.0.5, 2001:db8::/64"})
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.Listeners[0].ProxyProtocol || strings.Join(cfg.Limits.TrustedProxies, ",") != "10.0.0.5,2001:db8::/64" {
		t.Fatalf("from the environment: %+v %+v", cfg.Listeners, cfg.Limits)
	}
}

func TestProxyProtocolNeedsTrustedProxies(t *testing.T) {
	file := minimal + `listeners:
  - address: 0.0.0.0:110
  - address: 0.0.0.0:1110
    proxy_protocol: true
limits:
  trusted_proxies: []
`
	_, err := Parse([]byte(file), nil)
	var es Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Key != "limits.trusted_proxies" || es[0].Line != 11 ||
		!strings.Contains(es[0].Problem, "listeners.1") {
		t.Fatalf("got %v, want one error on limits.trusted_proxies (line 11) naming listeners.1", err)
	}
	// From the environment too.
	_, err = Parse([]byte(minimal), []string{"POPBRIDGE_LISTENERS_0_PROXY_PROTOCOL=true"})
	if err == nil || !strings.Contains(err.Error(), "limits.trusted_proxies: required") {
		t.Fatalf("got %v", err)
	}
	// And bad entries are named.
	_, err = Parse([]byte(minimal+"limits:\n  trusted_proxies: [10.0.0.5, lb.example.net]\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "limits.trusted_proxies.1 (line") {
		t.Fatalf("got %v", err)
	}
}

func TestProxyProtocolWarnings(t *testing.T) {
	cfg, err := Parse([]byte(minimal+`listeners:
  - address: 127.0.0.1:1110
    proxy_protocol: true
auth:
  allow_plaintext: true
limits:
  trusted_proxies: [0.0.0.0/0]
`), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, w := range cfg.Warnings() {
		got[w.Key] = true
	}
	if !got["auth.allow_plaintext"] || !got["limits.trusted_proxies.0"] {
		t.Fatalf("warnings %v: a loopback listener behind a proxy serves remote clients, and 0.0.0.0/0 trusts everyone", cfg.Warnings())
	}
}
