package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/oidc"
)

// TestOAuth2AppOnlyServe: grant client_credentials, through the CLI: enroll
// needs no approval (it checks the app gets a token and prints an app
// password), status says app-only, and popbridge serve gives curl the
// user's mail through the app's token. forget revokes the user's
// passwords and leaves the app's access. Nothing printed holds a token or
// the client secret.
func TestOAuth2AppOnlyServe(t *testing.T) {
	t.Parallel()
	as := oidc.Start(t)
	imap := dovecot.Start(t, dovecot.WithOAuth2AppAccess(as.IntrospectionURL, as.ResourceID, as.ResourceSecret, oidc.AppScope))
	user := dovecot.User(t) + "@example.org"
	imap.Append(t, user, "INBOX", []byte("Subject: app-only\r\n\r\nthrough the app's token\r\n"))

	dir := t.TempDir()
	secretFile, clientSecretFile := oauth2Secrets(t, dir, as.AppClientSecret)
	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`listeners:
  - address: %q
shutdown_grace: 1s
upstream:
  address: %q
  tls: none
  oauth2:
    provider: generic
    grant: client_credentials
    client_id: %q
    client_secret_file: %q
    token_url: %q
    scopes: [%s]
state:
  path: %q
  secret_file: %q
`, addr, imap.IMAPAddr, as.AppClientID, clientSecretFile, as.TokenURL, strings.Join(oidc.AppScopes, ", "), filepath.Join(dir, "state.db"), secretFile)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var printed strings.Builder
	cmd := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if rc := run(ctx, append(append([]string{"oauth2"}, args...), "-config", cfgPath, user), &out, &errOut); rc != 0 {
			t.Fatalf("oauth2 %v: exit %d: %s", args, rc, errOut.String())
		}
		printed.WriteString(out.String())
		return out.String()
	}
	enrolled := cmd("enroll", "-label", "scanner")
	m := regexp.MustCompile(`App password (\w+) for "scanner": ([a-z2-7-]+)`).FindStringSubmatch(enrolled)
	if m == nil || !strings.Contains(enrolled, "app-only access") {
		t.Fatalf("enroll:\n%s", enrolled)
	}
	appPW := m[2]
	if out := cmd("status"); !strings.Contains(out, "app-only access, no enrolment; token: grant(expires") || !strings.Contains(out, "1 app passwords") {
		t.Fatalf("status:\n%s", out)
	}

	stop := serveUntil(t, cfgPath, addr)
	if got := curl(t, "--user", user+":"+appPW, "pop3://"+addr+"/1"); !strings.Contains(string(got), "through the app's token") {
		t.Fatalf("curl RETR 1 with the app password = %q", got)
	}
	stop()
	if !strings.Contains(imap.Log(), "user=<"+user+">, method=XOAUTH2") {
		t.Fatalf("Dovecot logged no XOAUTH2 login of %s:\n%s", user, imap.Log())
	}

	if out := cmd("forget"); !strings.Contains(out, "Revoked the 1 app passwords of "+user) || !strings.Contains(out, "app-only access stays") {
		t.Fatalf("forget:\n%s", out)
	}
	if out := cmd("status"); !strings.Contains(out, "0 app passwords") {
		t.Fatalf("status after forget:\n%s", out)
	}
	if strings.Contains(printed.String(), as.AppClientSecret) {
		t.Fatal("the output shows the client secret")
	}
}
