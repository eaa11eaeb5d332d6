package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/e2e"
)

// viewsEnv writes a config for dv with the given policy.* and limits.*
// lines and returns its path and the POP3 address.
func viewsEnv(t *testing.T, dv *dovecot.Server, policy, limits string) (cfgPath, addr string) {
	t.Helper()
	dir := t.TempDir()
	addr = freeAddr(t)
	cfgPath = filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("listeners:\n  - address: %q\nupstream:\n  address: %q\n  tls: none\nstate:\n  path: %q\npolicy:\n%slimits:\n  max_connections: 100\n%sshutdown_grace: 1s\n",
		addr, dv.IMAPAddr, filepath.Join(dir, "state.db"), policy, limits)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, addr
}

// serveUntil runs `popbridge serve` and returns the function that stops it.
func serveUntil(t *testing.T, cfgPath, addr string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	stderr := &syncBuffer{}
	go func() { done <- run(ctx, []string{"serve", "-config", cfgPath}, &bytes.Buffer{}, stderr) }()
	waitListening(t, addr, stderr)
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("serve exited %d: %s", code, stderr.String())
		}
	}
	t.Cleanup(stop)
	return stop
}

// TestDevicesWithFetchmail: one user's two devices, each a fetchmail that
// deletes what it fetched (on_dele hide: it is hidden, for that device
// only), download every message exactly once each; then popbridge state
// lists the devices, marks a new one old and resets one.
func TestDevicesWithFetchmail(t *testing.T) {
	requireCommand(t, "fetchmail")
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	for _, m := range initialMessages() {
		dv.Append(t, user, "INBOX", m)
	}
	cfgPath, addr := viewsEnv(t, dv, "  on_dele: hide\n  device_separator: \"#\"\n", "")
	stop := serveUntil(t, cfgPath, addr)
	host, port, _ := net.SplitHostPort(addr)
	device := func(name string) *fetchmail {
		return newFetchmailWith(t, clientAccount{Mode: modePlain, Host: host, Port: port, User: user + "#" + name,
			Password: dv.Password, Dir: clientDir(t)}, "no keep")
	}
	phone, laptop := device("phone"), device("laptop")
	_, first := imapInbox(t, dv, user)
	compareDeliveries(t, "phone, first poll", phone.fetch(t), retrOf(first))
	compareDeliveries(t, "phone, second poll", phone.fetch(t), nil)
	compareDeliveries(t, "laptop, first poll", laptop.fetch(t), retrOf(first))
	for _, m := range laterMessages() {
		dv.Append(t, user, "INBOX", m)
	}
	_, all := imapInbox(t, dv, user)
	later := retrOf(all[len(first):])
	compareDeliveries(t, "phone, after new mail", phone.fetch(t), later)
	compareDeliveries(t, "laptop, after new mail", laptop.fetch(t), later)
	compareDeliveries(t, "laptop, again", laptop.fetch(t), nil)
	if _, left := imapInbox(t, dv, user); len(left) != len(all) {
		t.Fatalf("upstream has %d messages, want all %d: hide removes nothing", len(left), len(all))
	}
	stop()

	out := runOK(t, "state", "show", "-config", cfgPath, user)
	for _, want := range []string{"devices of " + user, "laptop", "phone"} {
		if !strings.Contains(out, want) {
			t.Fatalf("state show %s lacks %q:\n%s", user, want, out)
		}
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte(dv.Password+"\n"), 0o600)
	if out := runOK(t, "state", "mark-old", "-config", cfgPath, "-password-file", pw, user+"#tablet"); !strings.Contains(out, fmt.Sprintf("%d messages marked", len(all))) {
		t.Fatalf("mark-old of a new device: %q", out)
	}
	runOK(t, "state", "reset", "-config", cfgPath, user+"#phone")
	out = runOK(t, "state", "show", "-config", cfgPath, user)
	if strings.Contains(out, "phone") || !strings.Contains(out, "tablet") {
		t.Fatalf("after mark-old tablet and reset phone:\n%s", out)
	}

	serveUntil(t, cfgPath, addr)
	for name, want := range map[string]string{"tablet": "+OK 0 0", "phone": fmt.Sprintf("+OK %d ", len(all))} {
		p := e2e.Dial(t, addr, nil, nil)
		p.Login(user+"#"+name, dv.Password)
		if got := p.Cmd("STAT"); !strings.HasPrefix(got, want) {
			t.Errorf("%s: STAT %q, want %q…", name, got, want)
		}
		p.Cmd("QUIT")
	}
}

// TestCAPAPromisesAndLoginDelay: with a window of 30 days CAPA announces
// EXPIRE 30, with limits.login_delay LOGIN-DELAY; a second login within
// the delay is -ERR [LOGIN-DELAY], and the delay is per device.
func TestCAPAPromisesAndLoginDelay(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	cfgPath, addr := viewsEnv(t, dv, "  device_separator: \"#\"\n  window:\n    since: 30d\n", "  login_delay: 1m\n")
	serveUntil(t, cfgPath, addr)
	p := e2e.Dial(t, addr, nil, nil)
	caps := p.Capa()
	if !slices.Contains(caps, "LOGIN-DELAY 60") || !slices.Contains(caps, "EXPIRE 30") {
		t.Fatalf("CAPA %q", caps)
	}
	p.Login(user, dv.Password)
	p.Cmd("QUIT")
	again := e2e.Dial(t, addr, nil, nil)
	again.Cmd("USER %s", user)
	if got := again.Cmd("PASS %s", dv.Password); !strings.HasPrefix(got, "-ERR [LOGIN-DELAY]") {
		t.Fatalf("second login within the delay: %q", got)
	}
	other := e2e.Dial(t, addr, nil, nil)
	other.Login(user+"#phone", dv.Password)

	cfgPath, addr = viewsEnv(t, dv, "  on_dele: keep\n", "")
	serveUntil(t, cfgPath, addr)
	if caps := e2e.Dial(t, addr, nil, nil).Capa(); !slices.Contains(caps, "EXPIRE NEVER") || slices.ContainsFunc(caps, func(c string) bool { return strings.HasPrefix(c, "LOGIN-DELAY") }) {
		t.Fatalf("CAPA without a window or delay: %q", caps)
	}
}
