package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/oauth2user"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/oidc"
)

// TestOAuth2EnrollAndPasswords drives `popbridge oauth2` against the real
// provider: enroll prints the code, the user approves it on the
// provider's pages, the grant is stored and logs in to Dovecot (which
// introspects it at the provider), and the app passwords are made, listed
// and revoked. No token is printed.
func TestOAuth2EnrollAndPasswords(t *testing.T) {
	t.Parallel()
	as := oidc.Start(t)
	imap := dovecot.Start(t, dovecot.WithOAuth2Introspection(as.IntrospectionURL, as.ResourceID, as.ResourceSecret))
	user := dovecot.User(t) + "@example.org"
	as.AddUser(user, "pw")

	dir := t.TempDir()
	secretFile, clientSecretFile := oauth2Secrets(t, dir, as.ClientSecret)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf(`upstream:
  address: %q
  tls: none
  oauth2:
    provider: generic
    client_id: %q
    client_secret_file: %q
    token_url: %q
    device_auth_url: %q
    scopes: [%s]
state:
  path: %q
  secret_file: %q
`, imap.IMAPAddr, as.ClientID, clientSecretFile, as.TokenURL, as.DeviceAuthURL, strings.Join(oidc.Scopes, ", "), filepath.Join(dir, "state.db"), secretFile)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	// enroll, with the user approving what it prints.
	pr, pw := io.Pipe()
	var enrollOut bytes.Buffer
	approved := make(chan error, 1)
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			enrollOut.WriteString(line + "\n")
			if u, ok := strings.CutPrefix(line, "Or open "); ok && !sent {
				sent = true
				approved <- as.ApproveDevice(ctx, u, user, "pw")
			}
		}
		if !sent {
			approved <- fmt.Errorf("enroll printed no URL")
		}
	}()
	var stderr bytes.Buffer
	rc := run(ctx, []string{"oauth2", "enroll", "-config", cfgPath, "-label", "scanner", user}, pw, &stderr)
	pw.Close()
	<-read
	if err := <-approved; err != nil {
		t.Fatalf("approving: %v", err)
	}
	if rc != 0 {
		t.Fatalf("enroll: exit %d: %s\n%s", rc, stderr.String(), enrollOut.String())
	}
	m := regexp.MustCompile(`App password (\w+) for "scanner": ([a-z2-7-]+)`).FindStringSubmatch(enrollOut.String())
	if m == nil || !strings.Contains(enrollOut.String(), "Enrolled "+user) {
		t.Fatalf("enroll printed:\n%s", enrollOut.String())
	}
	scannerID, scannerPW := m[1], m[2]

	cmd := func(args ...string) string {
		t.Helper()
		var out, errOut bytes.Buffer
		if rc := run(ctx, append([]string{"oauth2"}, append(args[:len(args):len(args)], user)...), &out, &errOut); rc != 0 {
			t.Fatalf("oauth2 %v: exit %d: %s", args, rc, errOut.String())
		}
		return out.String()
	}
	if out := cmd("passwords", "-config", cfgPath); !strings.Contains(out, scannerID) || !strings.Contains(out, "scanner") || !strings.Contains(out, "never") {
		t.Fatalf("passwords:\n%s", out)
	}
	added := cmd("passwords", "-config", cfgPath, "-add", "fetchmail")
	m = regexp.MustCompile(`App password (\w+) for "fetchmail": ([a-z2-7-]+)`).FindStringSubmatch(added)
	if m == nil {
		t.Fatalf("passwords -add:\n%s", added)
	}
	fetchID, fetchPW := m[1], m[2]
	if out := cmd("status", "-config", cfgPath); !strings.Contains(out, "grant(expires") || !strings.Contains(out, "generic") {
		t.Fatalf("status:\n%s", out)
	}

	// What was stored works: the grant logs in to Dovecot, the passwords
	// are the user's.
	loaded, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	check := func() *oauth2user.User {
		u, err := openOAuth2User(loaded, user, oauth2user.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	u := check()
	tok, err := u.Grants.AccessToken(ctx, u.GrantKey())
	if err != nil {
		t.Fatalf("AccessToken: %v", err)
	}
	g, _ := u.Grants.Grant(ctx, u.GrantKey())
	for _, pwd := range []string{scannerPW, fetchPW} {
		if _, err := u.Passwords.Verify(ctx, u.PasswordKey(), pwd); err != nil {
			t.Fatalf("an app password does not verify: %v", err)
		}
	}
	u.Close()
	d, err := imapupstream.NewDialer(imapupstream.Config{Address: imap.IMAPAddr, TLS: imapupstream.TLSNone}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.Login(ctx, imapupstream.Credentials{Username: user, Token: tok, Mechanism: "XOAUTH2"})
	if err != nil {
		t.Fatalf("XOAUTH2 login with the enrolled grant: %v", err)
	}
	c.Close()
	all := enrollOut.String() + added
	if strings.Contains(all, g.AccessToken) || strings.Contains(all, g.RefreshToken) || strings.Contains(all, as.ClientSecret) {
		t.Fatal("the output shows a token or the client secret")
	}

	// popbridge serve: a POP3 client logs in with an app password and gets
	// the user's mail, through XOAUTH2 with the grant's token.
	imap.Append(t, user, "INBOX", []byte("Subject: through OAuth2\r\n\r\nhello\r\n"))
	addr := freeAddr(t)
	serveCfg := filepath.Join(dir, "serve.yaml")
	if err := os.WriteFile(serveCfg, []byte(fmt.Sprintf("listeners:\n  - address: %q\nshutdown_grace: 1s\n", addr)+cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := serveUntil(t, serveCfg, addr)
	if got := curl(t, "--user", user+":"+fetchPW, "pop3://"+addr+"/1"); !strings.Contains(string(got), "through OAuth2") {
		t.Fatalf("curl RETR 1 with an app password = %q", got)
	}
	if b, err := exec.Command(requireCommand(t, "curl"), "-sS", "--max-time", "30", "--user", user+":not-an-app-password",
		"pop3://"+addr+"/").CombinedOutput(); err == nil {
		t.Fatalf("a wrong app password got in: %s", b)
	}
	stop()

	// Revoking one password leaves the other.
	if out := cmd("passwords", "-config", cfgPath, "-revoke", scannerID); !strings.Contains(out, "Revoked app password "+scannerID) {
		t.Fatalf("passwords -revoke:\n%s", out)
	}
	u = check()
	_, errRevoked := u.Passwords.Verify(ctx, u.PasswordKey(), scannerPW)
	_, errOther := u.Passwords.Verify(ctx, u.PasswordKey(), fetchPW)
	u.Close()
	if errRevoked == nil || errOther != nil {
		t.Fatalf("after revoking one app password: the revoked one: %v; the other: %v", errRevoked, errOther)
	}
	if out := cmd("passwords", "-config", cfgPath); strings.Contains(out, scannerID) || !strings.Contains(out, fetchID) {
		t.Fatalf("passwords after -revoke:\n%s", out)
	}

	// Offboarding: forget removes the grant and the remaining password.
	if out := cmd("forget", "-config", cfgPath); !strings.Contains(out, "Forgot the OAuth2 grant and 1 app passwords of "+user) {
		t.Fatalf("forget:\n%s", out)
	}
	if out := cmd("status", "-config", cfgPath); !strings.Contains(out, "is not enrolled") {
		t.Fatalf("status after forget:\n%s", out)
	}
	if out := cmd("passwords", "-config", cfgPath); !strings.Contains(out, "has no app passwords") {
		t.Fatalf("passwords after forget:\n%s", out)
	}
}

// check-config takes a config with upstream.oauth2 and hides its client
// secret; the oauth2 commands refuse a user whose upstream has none.
func TestOAuth2CheckConfigAndStatus(t *testing.T) {
	dir := t.TempDir()
	secretFile, _ := oauth2Secrets(t, dir, "")
	cfgPath := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`upstream:
  address: "127.0.0.1:1"
  oauth2: {provider: microsoft, client_id: x, client_secret: s3cret-client}
routes:
  - domain: plain.example
    upstream: {address: "127.0.0.1:2"}
state:
  path: %q
  secret_file: %q
`, filepath.Join(dir, "state.db"), secretFile)), 0o600)
	var out, errOut bytes.Buffer
	if rc := run(context.Background(), []string{"check-config", "-config", cfgPath}, &out, &errOut); rc != 0 ||
		!strings.Contains(out.String(), "provider: microsoft") || strings.Contains(out.String(), "s3cret-client") {
		t.Fatalf("check-config: exit %d: %s%s", rc, out.String(), errOut.String())
	}
	errOut.Reset()
	if rc := run(context.Background(), []string{"oauth2", "status", "-config", cfgPath, "bob@plain.example"}, &out, &errOut); rc == 0 || !strings.Contains(errOut.String(), "no oauth2 block") {
		t.Fatalf("oauth2 status of a user without OAuth2: exit %d: %s", rc, errOut.String())
	}
	out.Reset()
	if rc := run(context.Background(), []string{"oauth2", "status", "-config", cfgPath, "alice@example.org"}, &out, &errOut); rc != 0 || !strings.Contains(out.String(), "not enrolled") {
		t.Fatalf("oauth2 status of a user not enrolled: exit %d: %s %s", rc, out.String(), errOut.String())
	}
}

// TestOAuth2EnrollCode: enroll -code (what Google takes) against a generic
// provider without a device endpoint: the URL is printed, the user signs in
// on the provider's page, the address the browser was sent to is pasted on
// stdin, and the grant logs in to Dovecot.
func TestOAuth2EnrollCode(t *testing.T) {
	t.Parallel()
	as := oidc.Start(t)
	imap := dovecot.Start(t, dovecot.WithOAuth2Introspection(as.IntrospectionURL, as.ResourceID, as.ResourceSecret))
	user := dovecot.User(t) + "@example.org"
	as.AddUser(user, "pw")
	dir := t.TempDir()
	secretFile, _ := oauth2Secrets(t, dir, "")
	cfgPath := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfgPath, []byte(fmt.Sprintf(`upstream:
  address: %q
  tls: none
  oauth2:
    provider: generic
    client_id: %q
    auth_url: %q
    token_url: %q
    scopes: [%s]
state:
  path: %q
  secret_file: %q
`, imap.IMAPAddr, as.NativeClientID, as.AuthURL, as.TokenURL, strings.Join(oidc.Scopes, ", "), filepath.Join(dir, "state.db"), secretFile)), 0o600)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	outR, outW := io.Pipe()
	inR, inW := io.Pipe()
	var out bytes.Buffer
	read := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(outR)
		sent := false
		for sc.Scan() {
			line := sc.Text()
			out.WriteString(line + "\n")
			if u, ok := strings.CutPrefix(line, "  "); ok && strings.HasPrefix(u, as.AuthURL) && !sent {
				sent = true
				// Approve and paste while the command goes on printing.
				go func() {
					redirected, err := as.ApproveAuthCode(ctx, u, user, "pw")
					if err != nil {
						inW.CloseWithError(err)
						return
					}
					fmt.Fprintln(inW, redirected)
				}()
			}
		}
		read <- nil
	}()
	var stderr bytes.Buffer
	err := cmdOAuth2(ctx, []string{"enroll", "-config", cfgPath, "-redirect-url", "http://127.0.0.1:1/callback", "-label", "scanner", user}, inR, outW, &stderr)
	outW.Close()
	if rerr := <-read; rerr != nil {
		t.Fatalf("approving: %v", rerr)
	}
	if err != nil {
		t.Fatalf("enroll -code: %v\n%s%s", err, out.String(), stderr.String())
	}
	if !strings.Contains(out.String(), "Enrolled "+user) || !strings.Contains(out.String(), `for "scanner"`) {
		t.Fatalf("enroll -code printed:\n%s", out.String())
	}
	loaded, err := config.Load(cfgPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	u, err := openOAuth2User(loaded, user, oauth2user.Options{})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := u.Grants.AccessToken(ctx, u.GrantKey())
	u.Close()
	if err != nil {
		t.Fatal(err)
	}
	d, _ := imapupstream.NewDialer(imapupstream.Config{Address: imap.IMAPAddr, TLS: imapupstream.TLSNone}, nil)
	c, err := d.Login(ctx, imapupstream.Credentials{Username: user, Token: tok, Mechanism: "XOAUTH2"})
	if err != nil {
		t.Fatalf("XOAUTH2 with the code flow's grant: %v", err)
	}
	c.Close()
}

// oauth2Secrets writes state.secret_file and, unless clientSecret is "",
// the client secret's file into dir, mode 600.
func oauth2Secrets(t *testing.T, dir, clientSecret string) (secretFile, clientSecretFile string) {
	t.Helper()
	secretFile = filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, []byte("a test secret of at least 32 bytes, not a real one\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if clientSecret == "" {
		return secretFile, ""
	}
	clientSecretFile = filepath.Join(dir, "client-secret")
	if err := os.WriteFile(clientSecretFile, []byte(clientSecret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return secretFile, clientSecretFile
}
