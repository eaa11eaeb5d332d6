package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// The daemon's own tests (metrics, shutdown, reloads, rate limits, legacy
// lanes, the PROXY protocol) run it in-process: internal/daemon. Here the
// binary's side of them: a real SIGHUP, and check-config's warnings.

// TestSIGHUPReloadsLogLevel sends a real SIGHUP to `popbridge serve`.
func TestSIGHUPReloadsLogLevel(t *testing.T) {
	addr := freeAddr(t)
	path := filepath.Join(t.TempDir(), "config.yaml")
	write := func(level string) {
		cfg := fmt.Sprintf("listeners:\n  - address: %q\nupstream:\n  address: \"127.0.0.1:9\"\n  tls: none\nstate:\n  driver: memory\nlog:\n  level: %s\nshutdown_grace: 1s\n", addr, level)
		if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("info")
	_, stderr := startRun(t, "serve", "-config", path)
	waitListening(t, addr, stderr) // serve registers for SIGHUP before it listens
	if strings.Contains(stderr.String(), `"connection opened"`) {
		t.Fatal("debug lines at log.level info")
	}
	write("debug")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reload", func() bool { return strings.Contains(stderr.String(), `"config reloaded"`) })
	if !strings.Contains(stderr.String(), `"changed":["log.level"]`) {
		t.Fatalf("reload log: %s", stderr.String())
	}
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	waitFor(t, "a debug line", func() bool { return strings.Contains(stderr.String(), `"connection opened"`) })
}

// TestCheckConfigLegacyLane: check-config warns about a listener's legacy
// lane (TestLegacyLane in internal/daemon runs one), naming its line.
func TestCheckConfigLegacyLane(t *testing.T) {
	addr := freeAddr(t)
	path := filepath.Join(t.TempDir(), "legacy.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`listeners:
  - address: %q
    tls: implicit
    legacy:
      min_tls_version: "1.0"
      networks: [127.0.0.2/32, 192.0.2.0/24]
tls: {cert_file: /etc/popbridge/cert.pem, key_file: /etc/popbridge/key.pem}
upstream: {address: "127.0.0.1:9", tls: none}
state: {driver: memory}
`, addr)), 0o600)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check-config", "-config", path}, &out, &errOut); code != 0 {
		t.Fatalf("check-config: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(errOut.String(), "warning: listeners.0.legacy (line 4): legacy lane on "+addr) {
		t.Errorf("check-config warnings: %q", errOut.String())
	}
}

// TestCheckConfigWarnings: risky settings are warned about on stderr, and
// check-config still succeeds.
func TestCheckConfigWarnings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "risky.yaml")
	os.WriteFile(path, []byte(`listeners:
  - address: "0.0.0.0:110"
  - address: "127.0.0.1:1110"
auth:
  allow_plaintext: true
upstream:
  address: "imap.example.net:143"
  tls: none
  insecure_skip_verify: true
state:
  path: /tmp/x.db
`), 0o600)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check-config", "-config", path}, &out, &errOut); code != 0 {
		t.Fatalf("check-config: exit %d: %s", code, errOut.String())
	}
	warnings := errOut.String()
	for _, want := range []string{
		"warning: auth.allow_plaintext (line 5): listeners.0 (0.0.0.0:110, tls: none) accepts passwords in the clear",
		"warning: upstream.insecure_skip_verify (line 9):",
		"warning: upstream.tls (line 8): none: passwords and mail go to imap.example.net:143 in the clear",
	} {
		if !strings.Contains(warnings, want) {
			t.Errorf("missing %q in:\n%s", want, warnings)
		}
	}
	if strings.Contains(warnings, "127.0.0.1:1110") {
		t.Errorf("a loopback listener is not a risk: %s", warnings)
	}
	if !strings.Contains(out.String(), ": OK") {
		t.Errorf("stdout: %s", out.String())
	}
}
