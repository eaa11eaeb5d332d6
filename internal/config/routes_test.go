package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

const withRoutes = `
upstream:
  address: imap.example.net:993
  mailbox: Mail
state:
  path: /tmp/state.db
routes:
  - domain: Example.ORG
    upstream:
      address: imap2.example.net:993
      connect_timeout: 3s
    policy:
      on_dele: hide
  - domain: two.test
    upstream:
      address: 127.0.0.1:143
      tls: none
    mailbox: POP
`

func TestRouteDefaults(t *testing.T) {
	cfg, err := Parse([]byte(withRoutes+"policy:\n  on_dele: trash\n  trash_mailbox: Bin\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Routes) != 2 {
		t.Fatalf("routes: %+v", cfg.Routes)
	}
	r := cfg.Routes[0]
	// Keys left out take the defaults of an upstream block, but for the
	// mailbox, which is the default upstream's; policy keys are policy.*'s.
	want := Upstream{Address: "imap2.example.net:993", TLS: "implicit", Mailbox: "Mail",
		ConnectTimeout: 3 * time.Second, CommandTimeout: 60 * time.Second}
	if r.Domain != "Example.ORG" || !reflect.DeepEqual(r.Upstream, want) || r.Mailbox != "Mail" ||
		r.Policy != (RoutePolicy{OnDele: "hide", TrashMailbox: "Bin"}) {
		t.Fatalf("route 0: %+v", r)
	}
	r = cfg.Routes[1]
	if r.Upstream.TLS != "none" || r.Mailbox != "POP" || r.Upstream.Mailbox != "POP" ||
		r.Upstream.ConnectTimeout != 10*time.Second || r.Policy.OnDele != "trash" {
		t.Fatalf("route 1: %+v", r)
	}
	if cfg.Upstream.Mailbox != "Mail" || cfg.Upstream.Address != "imap.example.net:993" {
		t.Fatalf("the default upstream changed: %+v", cfg.Upstream)
	}
}

func TestRouteValidationNamesKey(t *testing.T) {
	file := minimal + `routes:
  - domain: one.test
    upstream:
      address: imap1.example.net:993
  - domain: ONE.test
    upstream:
      address: nonsense
      tls: sometimes
      connect_timeout: -1s
    policy:
      on_dele: shred
  - upstream:
      address: imap3.example.net:993
  - domain: a@b.test
    upstream:
      mailbox: X
    mailbox: Y
    policy:
      on_dele: trash
      trash_mailbox: ""
`
	_, err := Parse([]byte(file), nil)
	want := map[string]int{
		"routes.1.domain":                   10,
		"routes.1.upstream.address":         12,
		"routes.1.upstream.tls":             13,
		"routes.1.upstream.connect_timeout": 14,
		"routes.1.policy.on_dele":           16,
		"routes.2.domain":                   0,
		"routes.3.domain":                   19,
		"routes.3.upstream.address":         0,
		"routes.3.upstream.mailbox":         21,
	}
	wantKeyErrors(t, err, want, true)
	if !strings.Contains(err.Error(), `"ONE.test" is already routed by routes.0`) {
		t.Errorf("the duplicate must name the route it repeats: %v", err)
	}
}

// TestRouteRefused: what a route may not say, each naming its key.
func TestRouteRefused(t *testing.T) {
	route := minimal + "routes:\n  - domain: x.test\n    upstream:\n      address: h:993\n"
	for _, tc := range []struct{ file, key string }{
		{minimal + "policy:\n  trash_mailbox: \"\"\nroutes:\n  - domain: x.test\n    upstream:\n      address: h:993\n    policy:\n      on_dele: trash\n",
			"routes.0.policy.trash_mailbox"},
		{route + "      master_user: m\n      master_password: p\n", "routes.0.upstream.master_user"},
		{route + "      adress: h:993\n", "adress"}, // misspelt
	} {
		if _, err := Parse([]byte(tc.file), nil); err == nil || !strings.Contains(err.Error(), tc.key) {
			t.Errorf("got %v, want an error naming %s", err, tc.key)
		}
	}
}

// The environment sets scalar keys of a route the file has.
func TestRouteFromEnvironment(t *testing.T) {
	cfg, err := Parse([]byte(withRoutes), []string{"POPBRIDGE_ROUTES_1_UPSTREAM_ADDRESS=other:143"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Routes[1].Upstream.Address != "other:143" {
		t.Fatalf("route 1: %+v", cfg.Routes[1])
	}
}

// check-config prints every route, effective values filled in, and it
// reads back as the same configuration.
func TestRouteCheckConfigOutput(t *testing.T) {
	cfg, err := Parse([]byte(withRoutes), nil)
	if err != nil {
		t.Fatal(err)
	}
	out, err := cfg.Redacted()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"routes:", "domain: Example.ORG", "address: imap2.example.net:993", "on_dele: hide",
		"domain: two.test", "mailbox: POP"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("check-config output lacks %q:\n%s", want, out)
		}
	}
	again, err := Parse(out, nil)
	if err != nil {
		t.Fatalf("the output does not read back: %v\n%s", err, out)
	}
	if d := Diff(cfg, again); len(d) != 0 {
		t.Fatalf("the output reads back different: %v", d)
	}
}

func TestRouteWarnings(t *testing.T) {
	file := minimal + "routes:\n  - domain: x.test\n    upstream:\n      address: imap.example.net:143\n      tls: none\n      insecure_skip_verify: true\n"
	cfg, err := Parse([]byte(file), nil)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, w := range cfg.Warnings() {
		got[w.Key] = w.Line
	}
	if got["routes.0.upstream.tls"] != 10 || got["routes.0.upstream.insecure_skip_verify"] != 11 {
		t.Fatalf("warnings: %v", cfg.Warnings())
	}
}

func TestRouteDiff(t *testing.T) {
	a, err := Parse([]byte(withRoutes), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte(strings.Replace(withRoutes, "imap2.example.net", "imap9.example.net", 1)), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := strings.Join(Diff(a, b), ","); d != "routes.0.upstream.address" {
		t.Fatalf("diff: %s", d)
	}
	c, err := Parse([]byte(minimal), nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := strings.Join(Diff(a, c), ","); !strings.Contains(d, "routes") {
		t.Fatalf("diff: %s", d)
	}
}

// wantKeyErrors checks that err is Errors with every key of want at its
// line (0: not from the file); exact: and no other.
func wantKeyErrors(t *testing.T, err error, want map[string]int, exact bool) {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) {
		t.Fatalf("got %v, want key errors", err)
	}
	got := map[string]int{}
	for _, e := range es {
		got[e.Key] = e.Line
	}
	for k, line := range want {
		if l, ok := got[k]; !ok || l != line {
			t.Errorf("key %s: line %d (present %v), want line %d; all: %v", k, l, ok, line, err)
		}
	}
	if exact && len(es) != len(want) {
		t.Errorf("%d errors, want %d: %v", len(es), len(want), err)
	}
}
