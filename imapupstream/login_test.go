package imapupstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

func TestLoginSelect(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.append(t, msg("one", "x"))
	trace := &wire{}
	c, mb := e.open(t, e.config(), trace)
	if mb.Name != "INBOX" || mb.UIDValidity == 0 || mb.NumMessages != 1 || mb.UIDNext != 2 {
		t.Fatalf("mailbox %+v", mb)
	}
	if !mb.CanStoreFlag(`\Deleted`) || !mb.CanStoreFlag(`\Seen`) {
		t.Fatalf("permanent flags %v", mb.PermanentFlags)
	}
	caps := c.Caps()
	if !caps.UIDPlus || !caps.Move || !caps.Has("uidplus") || !caps.Has("imap4REV1") {
		t.Fatalf("caps %+v", caps)
	}
	// The UIDVALIDITY that Dovecot reports elsewhere.
	status, err := e.srv.Client(t, e.user).Status("INBOX", &imap.StatusOptions{UIDValidity: true}).Wait()
	if err != nil || status.UIDValidity != mb.UIDValidity {
		t.Fatalf("STATUS UIDVALIDITY %v (%v), Select %d", status.UIDValidity, err, mb.UIDValidity)
	}
	if n := trace.countCommands("SELECT INBOX"); n != 1 || trace.countCommands("EXAMINE") != 0 {
		t.Fatalf("SELECT sent %d times; commands %q", n, trace.commands())
	}
	if n := trace.countCommands("LOGIN "); n != 1 {
		t.Fatalf("LOGIN sent %d times", n)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if trace.countCommands("LOGOUT") != 1 {
		t.Fatalf("no LOGOUT: %q", trace.commands())
	}
	if _, err := c.Snapshot(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Snapshot after Close: %v", err)
	}
	assertNoSecretLogged(t, e, e.srv.Password)
}

// assertNoSecretLogged fails if secret appears in any log entry.
func assertNoSecretLogged(t *testing.T, e *env, secret string) {
	t.Helper()
	for _, entry := range e.logs.All() {
		if strings.Contains(fmt.Sprint(entry.Message, entry.ContextMap()), secret) {
			t.Fatalf("secret logged: %v", entry)
		}
	}
}

func TestLoginWrongPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	d := e.dialer(t, e.config(), nil)
	_, err := d.Login(context.Background(), Credentials{Username: e.user, Password: "Wr0ng-Pa55"})
	if !errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrAuthFailed", err)
	}
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("server's answer not kept: %v", err)
	}
	assertNoSecretLogged(t, e, "Wr0ng-Pa55")
	// AUTHENTICATE PLAIN too.
	_, err = d.Login(context.Background(), Credentials{Username: e.user, Password: "Wr0ng-Pa55", Mechanism: "PLAIN"})
	if !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("PLAIN: err = %v, want ErrAuthFailed", err)
	}
	c, err := d.Login(context.Background(), Credentials{Username: e.user, Password: e.srv.Password, Mechanism: "PLAIN"})
	if err != nil {
		t.Fatalf("PLAIN with the right password: %v", err)
	}
	c.Close()
}

func TestLoginUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d, err := NewDialer(Config{Address: addr, TLS: TLSNone}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = d.Login(context.Background(), Credentials{Username: "u", Password: "p"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("took %v", took)
	}
}

func TestLoginTLS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dovecot.WithTLS())
	e.append(t, msg("tls", "x"))
	_, port, _ := net.SplitHostPort(e.srv.IMAPSAddr)
	_, plainPort, _ := net.SplitHostPort(e.srv.IMAPAddr)

	cases := []struct {
		name    string
		cfg     Config
		wantErr bool
	}{
		{"implicit/CAFile", Config{Address: e.srv.IMAPSAddr, TLS: TLSImplicit, CAFile: e.srv.CAFile}, false},
		{"implicit/CAFile/localhost", Config{Address: "localhost:" + port, TLS: TLSImplicit, CAFile: e.srv.CAFile}, false},
		{"starttls/CAFile", Config{Address: e.srv.IMAPAddr, TLS: TLSStartTLS, CAFile: e.srv.CAFile}, false},
		{"implicit/system-roots", Config{Address: e.srv.IMAPSAddr, TLS: TLSImplicit}, true},
		{"starttls/system-roots", Config{Address: e.srv.IMAPAddr, TLS: TLSStartTLS}, true},
		{"implicit/insecure", Config{Address: e.srv.IMAPSAddr, TLS: TLSImplicit, InsecureSkipVerify: true}, false},
		{"starttls/insecure", Config{Address: "localhost:" + plainPort, TLS: TLSStartTLS, InsecureSkipVerify: true}, false},
		{"implicit/on-plain-port", Config{Address: e.srv.IMAPAddr, TLS: TLSImplicit, CAFile: e.srv.CAFile, ConnectTimeout: 2 * time.Second}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			trace := &wire{}
			d := e.dialer(t, tc.cfg, trace)
			c, err := d.Login(context.Background(), Credentials{Username: e.user, Password: e.srv.Password})
			if tc.wantErr {
				if !errors.Is(err, ErrUnavailable) {
					t.Fatalf("err = %v, want ErrUnavailable", err)
				}
				if strings.Contains(trace.String(), e.srv.Password) {
					t.Fatal("password sent over an unverified connection")
				}
				return
			}
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			defer c.Close()
			if tc.cfg.TLS == TLSStartTLS && !strings.Contains(trace.String(), "STARTTLS") {
				t.Fatal("no STARTTLS on the wire")
			}
			if _, err := c.Select(context.Background()); err != nil {
				t.Fatal(err)
			}
		})
	}

	// A certificate for another name is refused.
	d := e.dialer(t, Config{Address: e.srv.IMAPSAddr, TLS: TLSImplicit, CAFile: e.srv.CAFile}, nil)
	d.tls.ServerName = "imap.example.org"
	_, err := d.Login(context.Background(), Credentials{Username: e.user, Password: e.srv.Password})
	var verr *tls.CertificateVerificationError
	if !errors.Is(err, ErrUnavailable) || !errors.As(err, &verr) {
		t.Fatalf("wrong name: err = %v", err)
	}
}

func TestNewDialerConfig(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Address: "no-port"},
		{Address: "h:1", TLS: "ssl"},
		{Address: "h:1", CAFile: "/nonexistent/ca.pem"},
		{Address: "h:1", MasterUser: "m"},
		{Address: "h:1", CommandTimeout: -1},
	} {
		if _, err := NewDialer(cfg, nil); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err = %v, want ErrConfig", cfg, err)
		}
	}
	d, err := NewDialer(Config{Address: "h:1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	got := d.Config()
	if got.TLS != TLSImplicit || got.Mailbox != "INBOX" || got.ConnectTimeout != DefaultConnectTimeout || got.CommandTimeout != DefaultCommandTimeout {
		t.Fatalf("defaults: %+v", got)
	}
}

// TestLoginMasterUser: both master-user forms log in to the user's
// mailbox, SASL PLAIN with an authorization identity and Dovecot's
// "user*master" LOGIN; a wrong master password is refused.
func TestLoginMasterUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dovecot.WithMasterUser("admin", "masterpw"))
	e.append(t, msg("for the user", "x"))
	for _, tt := range []struct{ sep, sent, notSent string }{
		{"", "AUTHENTICATE PLAIN", "LOGIN"},
		{"*", "LOGIN", "AUTHENTICATE"},
	} {
		cfg := e.config()
		cfg.MasterUser, cfg.MasterPassword, cfg.MasterSeparator = "admin", "masterpw", tt.sep
		trace := &wire{}
		c, mb := e.open(t, cfg, trace)
		if mb.NumMessages != 1 {
			t.Fatalf("separator %q: master login sees %d messages, want the user's 1", tt.sep, mb.NumMessages)
		}
		if trace.countCommands(tt.sent) != 1 || trace.countCommands(tt.notSent) != 0 {
			t.Fatalf("separator %q: commands %q", tt.sep, trace.commands())
		}
		c.Close()

		cfg.MasterPassword = "wrong"
		if _, err := e.dialer(t, cfg, nil).Login(context.Background(), Credentials{Username: e.user}); !errors.Is(err, ErrAuthFailed) {
			t.Fatalf("separator %q: wrong master password: %v", tt.sep, err)
		}
	}
	if _, err := NewDialer(Config{Address: "x:1", MasterSeparator: "*"}, nil); !errors.Is(err, ErrConfig) {
		t.Fatalf("separator without a master user: %v", err)
	}
}

// TestWithAddressKeepsTheTLSName: a Dialer pointed at another address
// (a routing service's choice, usually an IP address) still verifies the
// certificate against the configured host name, not the new address.
func TestWithAddressKeepsTheTLSName(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dovecot.WithTLS())
	_, port, _ := net.SplitHostPort(e.srv.IMAPSAddr)
	ip := "127.0.0.1:" + port // in the certificate, as an IP address
	cred := Credentials{Username: e.user, Password: e.srv.Password}
	named := e.dialer(t, Config{Address: "localhost:" + port, TLS: TLSImplicit, CAFile: e.srv.CAFile}, nil).WithAddress(ip)
	c, err := named.Login(context.Background(), cred)
	if err != nil {
		t.Fatalf("routed to %s, verified as localhost: %v", ip, err)
	}
	c.Close()
	if got := named.Config().Address; got != ip {
		t.Fatalf("Config().Address = %q, want %q", got, ip)
	}
	// The certificate does not name imap.example.test: had the new address
	// been verified instead, this would succeed.
	other := e.dialer(t, Config{Address: "imap.example.test:" + port, TLS: TLSImplicit, CAFile: e.srv.CAFile}, nil).WithAddress(ip)
	if _, err := other.Login(context.Background(), cred); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a certificate without the configured name was accepted: %v", err)
	}
}

// TestVerifyIgnoresMasterUser: Verify checks the user's own password even
// when the Dialer logs in as a master user.
func TestVerifyIgnoresMasterUser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dovecot.WithMasterUser("admin", "masterpw"))
	cfg := e.config()
	cfg.MasterUser, cfg.MasterPassword = "admin", "masterpw"
	trace := &wire{}
	d := e.dialer(t, cfg, trace)
	ctx := context.Background()
	if err := d.Verify(ctx, Credentials{Username: e.user, Password: e.srv.Password}); err != nil {
		t.Fatalf("right password: %v", err)
	}
	if trace.countCommands("LOGIN") != 1 || trace.countCommands("AUTHENTICATE") != 0 {
		t.Fatalf("Verify did not log in as the user: %q", trace.commands())
	}
	if err := d.Verify(ctx, Credentials{Username: e.user, Password: "wrong"}); !errors.Is(err, ErrAuthFailed) {
		t.Fatalf("wrong password: %v", err)
	}
}

func TestCredentialsNeverPrinted(t *testing.T) {
	cred := Credentials{Username: "u", Password: "hunter2", Token: "tok3n"}
	for _, s := range []string{cred.String(), cred.GoString()} {
		if strings.Contains(s, "hunter2") || strings.Contains(s, "tok3n") {
			t.Fatalf("secret printed: %s", s)
		}
	}
}

func TestXOAUTH2InitialResponse(t *testing.T) {
	c := NewXOAUTH2Client("user@example.org", "ya29.token")
	mech, ir, err := c.Start()
	if err != nil || mech != "XOAUTH2" || string(ir) != "user=user@example.org\x01auth=Bearer ya29.token\x01\x01" {
		t.Fatalf("%q %q %v", mech, ir, err)
	}
	resp, err := c.Next([]byte(`{"status":"401"}`))
	if err != nil || len(resp) != 0 {
		t.Fatalf("Next: %q %v", resp, err)
	}
	if _, err := c.Next(nil); err == nil {
		t.Fatal("second challenge accepted")
	}
}

func TestLoginBearerTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dovecot.WithOAuth2())
	e.append(t, msg("token", "x"))
	token := e.srv.IssueToken(e.user)
	for _, mech := range []string{"XOAUTH2", "OAUTHBEARER"} {
		t.Run(mech, func(t *testing.T) {
			trace := &wire{}
			d := e.dialer(t, e.config(), trace)
			c, err := d.Login(context.Background(), Credentials{Username: e.user, Token: token, Mechanism: mech})
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			mb, err := c.Select(context.Background())
			c.Close()
			if err != nil || mb.NumMessages != 1 {
				t.Fatalf("Select: %v %+v", err, mb)
			}
			if trace.countCommands("AUTHENTICATE "+mech) != 1 {
				t.Fatalf("commands %q", trace.commands())
			}

			// A bad token is refused cleanly (the error challenge answered).
			start := time.Now()
			_, err = d.Login(context.Background(), Credentials{Username: e.user, Token: "not-a-token", Mechanism: mech})
			if !errors.Is(err, ErrAuthFailed) {
				t.Fatalf("bad token: %v", err)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("bad token took %v", took)
			}
			assertNoSecretLogged(t, e, token)
		})
	}
}
