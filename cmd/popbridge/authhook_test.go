package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/nginxauth"
)

// TestServeWithHookAndMasterUser runs `popbridge serve` as an ISP would
// with an nginx auth_http service: the service checks each device's own
// password and popbridge logs in to Dovecot as its master user, in
// Dovecot's user*master form. curl reads the mailbox with the device
// password; neither that password, the master password nor the hook's
// shared secret reaches the log, even at debug level, or check-config's
// output.
func TestServeWithHookAndMasterUser(t *testing.T) {
	const masterPW, devicePW = "m4ster-secret", "device-secret"
	dv := dovecot.Start(t, dovecot.WithMasterUser("popbridge", masterPW))
	user := dovecot.User(t)
	dv.Append(t, user, "INBOX", []byte("Subject: via master\r\n\r\nhello\r\n"))
	hook := nginxauth.Start(t, map[string]nginxauth.User{user: {Pass: devicePW}})

	addr := freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf(`listeners:
  - address: %q
auth:
  http_hook:
    url: %q
    timeout: 3s
    headers:
      X-Auth-Key: %q
upstream:
  address: %q
  tls: none
  master_user: popbridge
  master_password: %q
  master_separator: "*"
state:
  path: %q
log:
  level: debug
shutdown_grace: 2s
`, addr, hook.URL, nginxauth.Key, dv.IMAPAddr, masterPW, filepath.Join(t.TempDir(), "state.db"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}

	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check-config", "-config", cfgPath}, &out, &errOut); code != 0 {
		t.Fatalf("check-config: exit %d: %s", code, errOut.String())
	}
	for _, secret := range []string{masterPW, nginxauth.Key} {
		if strings.Contains(out.String()+errOut.String(), secret) {
			t.Fatalf("check-config printed a secret:\n%s%s", out.String(), errOut.String())
		}
	}

	_, stderr := startRun(t, "serve", "-config", cfgPath)
	waitListening(t, addr, stderr)
	got := curl(t, fmt.Sprintf("pop3://%s:%s@%s/1", user, devicePW, addr))
	if !strings.Contains(string(got), "Subject: via master") {
		t.Fatalf("curl RETR 1 = %q", got)
	}
	// Dovecot's own password for the user is not the device's: the hook
	// refuses it, and nothing else would let it through.
	cmd := exec.Command(requireCommand(t, "curl"), "-sS", "--max-time", "30", fmt.Sprintf("pop3://%s:%s@%s/", user, dv.Password, addr))
	if b, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("curl with a password the hook refuses got in: %s", b)
	}
	for _, secret := range []string{masterPW, devicePW, nginxauth.Key} {
		if strings.Contains(stderr.String(), secret) {
			t.Fatalf("a secret (%q...) appeared in popbridge's log", secret[:3])
		}
	}
}
