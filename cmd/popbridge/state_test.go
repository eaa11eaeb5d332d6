package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

// stateEnv is a config file for a Dovecot and a bolt store.
func stateEnv(t *testing.T, dv *dovecot.Server) (cfgPath, pwFile, addr string) {
	t.Helper()
	dir := t.TempDir()
	addr = freeAddr(t)
	cfgPath = filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("listeners:\n  - address: %q\nupstream:\n  address: %q\n  tls: none\nstate:\n  path: %q\nshutdown_grace: 1s\n",
		addr, dv.IMAPAddr, filepath.Join(dir, "state.db"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	pwFile = filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte(dv.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return cfgPath, pwFile, addr
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out, errOut bytes.Buffer
	if code := run(context.Background(), args, &out, &errOut); code != 0 {
		t.Fatalf("popbridge %v: exit %d: %s", args, code, errOut.String())
	}
	return out.String()
}

func TestStateMarkOldShowReset(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	dv.Append(t, user, "INBOX", []byte("Subject: old 1\r\n\r\nold\r\n"))
	dv.Append(t, user, "INBOX", []byte("Subject: old 2\r\n\r\nold\r\n"))
	cfgPath, pwFile, addr := stateEnv(t, dv)

	if out := runOK(t, "state", "show", "-config", cfgPath, user); !strings.Contains(out, "no state") {
		t.Fatalf("show before any session: %q", out)
	}
	if out := runOK(t, "state", "mark-old", "-config", cfgPath, "-password-file", pwFile, user); !strings.Contains(out, "2 messages marked") {
		t.Fatalf("mark-old: %q", out)
	}
	out := runOK(t, "state", "show", "-config", cfgPath, user)
	if strings.Count(out, "true") != 2 || !strings.Contains(out, "00000001") {
		t.Fatalf("show after mark-old must list both messages hidden:\n%s", out)
	}

	// A device set up now gets only what arrives from now on.
	dv.Append(t, user, "INBOX", []byte("Subject: new\r\n\r\nnew\r\n"))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	stderr := &syncBuffer{}
	go func() { done <- run(ctx, []string{"serve", "-config", cfgPath}, &bytes.Buffer{}, stderr) }()
	waitListening(t, addr, stderr)
	list := curl(t, fmt.Sprintf("pop3://%s:%s@%s/", user, dv.Password, addr))
	if string(list) != "1 21\r\n" {
		t.Fatalf("LIST after mark-old and one new message: %q, want only the new one", list)
	}
	// The store belongs to the running server: the CLI says so.
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"state", "show", "-config", cfgPath, user}, &bytes.Buffer{}, &errOut); code == 0 ||
		!strings.Contains(errOut.String(), "stop popbridge first") {
		t.Fatalf("state show while serving: exit %d, %q", code, errOut.String())
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("serve exited %d: %s", code, stderr.String())
	}

	runOK(t, "state", "reset", "-config", cfgPath, user)
	if out := runOK(t, "state", "show", "-config", cfgPath, user); !strings.Contains(out, "no state") {
		t.Fatalf("show after reset: %q", out)
	}
}

func TestStateMarkOldWrongPassword(t *testing.T) {
	dv := dovecot.Start(t)
	cfgPath, _, _ := stateEnv(t, dv)
	bad := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(bad, []byte("wrong\n"), 0o600)
	var errOut bytes.Buffer
	if code := run(context.Background(), []string{"state", "mark-old", "-config", cfgPath, "-password-file", bad, "someone"}, &bytes.Buffer{}, &errOut); code == 0 {
		t.Fatal("mark-old with a wrong password succeeded")
	}
	if strings.Contains(errOut.String(), "wrong") && strings.Contains(errOut.String(), "password-file") {
		t.Fatalf("the error must not echo the password: %q", errOut.String())
	}
}

// TestStateFollowsRoutes: for a user of a routed domain, state mark-old logs
// in to the route's upstream and show/reset act on the route's maildrop, as
// a POP3 session of that user would.
func TestStateFollowsRoutes(t *testing.T) {
	dv1, dv2 := dovecot.Start(t), dovecot.Start(t)
	user := strings.ToLower(dovecot.User(t)) + "@two.test"
	dv1.Append(t, user, "INBOX", []byte("Subject: on the default\r\n\r\nx\r\n"))
	for i := range 3 {
		dv2.Append(t, user, "INBOX", []byte(fmt.Sprintf("Subject: on the route %d\r\n\r\nx\r\n", i)))
	}
	cfgPath, pwFile, _ := stateEnv(t, dv1)
	f, err := os.OpenFile(cfgPath, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "routes:\n  - domain: two.test\n    upstream:\n      address: %q\n      tls: none\n", dv2.IMAPAddr)
	f.Close()

	if out := runOK(t, "state", "mark-old", "-config", cfgPath, "-password-file", pwFile, user); !strings.Contains(out, "3 messages marked") {
		t.Fatalf("mark-old of a routed user: %q, want the route's 3 messages", out)
	}
	if out := runOK(t, "state", "show", "-config", cfgPath, user); !strings.Contains(out, "on "+dv2.IMAPAddr) || strings.Count(out, "true") != 3 {
		t.Fatalf("show of a routed user:\n%s", out)
	}
	if out := runOK(t, "state", "reset", "-config", cfgPath, user); !strings.Contains(out, "on "+dv2.IMAPAddr) {
		t.Fatalf("reset of a routed user: %q", out)
	}
	if out := runOK(t, "state", "show", "-config", cfgPath, user); !strings.Contains(out, "no state") {
		t.Fatalf("show after reset: %q", out)
	}
}
