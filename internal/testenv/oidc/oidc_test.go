package oidc_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/oidc"
)

// enroll runs the device flow for user as `popbridge oauth2 enroll` would,
// with the user approving on the provider's pages meanwhile.
func enroll(t *testing.T, as *oidc.Server, user, password string) *oauth2.Token {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := as.DeviceClient()
	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	if da.UserCode == "" || !strings.HasPrefix(da.VerificationURIComplete, as.Issuer) {
		t.Fatalf("device authorization %+v", da)
	}
	if err := as.ApproveDevice(ctx, da.VerificationURIComplete, user, password); err != nil {
		t.Fatalf("ApproveDevice: %v", err)
	}
	da.Interval = 1 // the provider asks for 5 s and does not enforce it
	tok, err := cfg.DeviceAccessToken(ctx, da)
	if err != nil {
		t.Fatalf("DeviceAccessToken: %v", err)
	}
	if tok.AccessToken == "" || tok.RefreshToken == "" || tok.Expiry.IsZero() {
		t.Fatalf("token has no access token, refresh token or expiry: type %q, expiry %v", tok.TokenType, tok.Expiry)
	}
	return tok
}

func login(ctx context.Context, srv *dovecot.Server, user, token string) error {
	d, err := imapupstream.NewDialer(imapupstream.Config{Address: srv.IMAPAddr, TLS: imapupstream.TLSNone}, nil)
	if err != nil {
		return err
	}
	c, err := d.Login(ctx, imapupstream.Credentials{Username: user, Token: token, Mechanism: "XOAUTH2"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Select(ctx)
	return err
}

// TestDeviceFlowTokenLogsInToDovecot is the chain: a token from the
// provider's device flow, approved on its pages, logs in to Dovecot with
// AUTHENTICATE XOAUTH2, Dovecot checking it by introspection at the
// provider. A refreshed token works and rotates the refresh token; the
// old access token and a revoked one are refused.
func TestDeviceFlowTokenLogsInToDovecot(t *testing.T) {
	t.Parallel()
	as := oidc.Start(t)
	srv := dovecot.Start(t, dovecot.WithOAuth2Introspection(as.IntrospectionURL, as.ResourceID, as.ResourceSecret))
	user := dovecot.User(t) + "@example.org"
	as.AddUser(user, "user-password")
	ctx := context.Background()

	tok := enroll(t, as, user, "user-password")
	if err := login(ctx, srv, user, tok.AccessToken); err != nil {
		t.Fatalf("XOAUTH2 with the device flow's token: %v", err)
	}
	// Someone else's name with this token: Dovecot compares the
	// introspected username.
	if err := login(ctx, srv, "mallory@example.org", tok.AccessToken); !errors.Is(err, imapupstream.ErrAuthFailed) {
		t.Fatalf("another user with the token: %v, want ErrAuthFailed", err)
	}

	// Refresh: a new access token and a new refresh token; the old refresh
	// token is spent.
	cfg := as.DeviceClient()
	refreshed, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token()
	if err != nil {
		t.Fatalf("refresh: %v", err)
	}
	if refreshed.AccessToken == tok.AccessToken || refreshed.RefreshToken == "" || refreshed.RefreshToken == tok.RefreshToken {
		t.Fatal("refresh did not rotate the access and refresh tokens")
	}
	if _, err := cfg.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken}).Token(); err == nil {
		t.Fatal("the spent refresh token refreshed again")
	}
	if err := login(ctx, srv, user, refreshed.AccessToken); err != nil {
		t.Fatalf("XOAUTH2 with the refreshed token: %v", err)
	}
	// The example's rotation drops the access token issued with the
	// spent refresh token.
	if err := login(ctx, srv, user, tok.AccessToken); !errors.Is(err, imapupstream.ErrAuthFailed) {
		t.Fatalf("the superseded access token: %v, want ErrAuthFailed", err)
	}

	// Revocation takes effect at the next introspection.
	if err := as.Revoke(ctx, refreshed.AccessToken); err != nil {
		t.Fatalf("Revoke: %v", err)
	}
	if err := login(ctx, srv, user, refreshed.AccessToken); !errors.Is(err, imapupstream.ErrAuthFailed) {
		t.Fatalf("the revoked token: %v, want ErrAuthFailed", err)
	}
	if log := srv.Log(); strings.Contains(log, tok.AccessToken) || strings.Contains(log, refreshed.AccessToken) {
		t.Error("Dovecot's log holds an access token")
	}
}

// TestDeviceFlowRefusals: a wrong password at the sign-in page, and a
// user who presses Deny, get no token.
func TestDeviceFlowRefusals(t *testing.T) {
	t.Parallel()
	as := oidc.Start(t)
	as.AddUser("bob@example.org", "right")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := as.DeviceClient()

	da, err := cfg.DeviceAuth(ctx)
	if err != nil {
		t.Fatalf("DeviceAuth: %v", err)
	}
	if err := as.ApproveDevice(ctx, da.VerificationURIComplete, "bob@example.org", "wrong"); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("wrong password: %v", err)
	}
	if err := as.DenyDevice(ctx, da.VerificationURIComplete, "bob@example.org", "right"); err != nil {
		t.Fatalf("DenyDevice: %v", err)
	}
	da.Interval = 1
	_, err = cfg.DeviceAccessToken(ctx, da)
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) || re.ErrorCode != "access_denied" {
		t.Fatalf("denied device: %v, want access_denied", err)
	}
}

// TestAppTokenLogsInToAnyMailbox: a client-credentials token of the app
// client, with the app scope, logs in to Dovecot as any user; a user's own
// token, without it, only as that user; a revoked app token not at all.
func TestAppTokenLogsInToAnyMailbox(t *testing.T) {
	as := oidc.Start(t)
	as.AddUser("carol@example.org", "pw")
	srv := dovecot.Start(t, dovecot.WithOAuth2AppAccess(as.IntrospectionURL, as.ResourceID, as.ResourceSecret, oidc.AppScope))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok, err := as.AppClient().Token(ctx)
	if err != nil {
		t.Fatalf("client credentials: %v", err)
	}
	if tok.RefreshToken != "" {
		t.Errorf("client credentials gave a refresh token")
	}
	for _, user := range []string{"alice@example.org", "bob@example.org"} {
		if err := login(ctx, srv, user, tok.AccessToken); err != nil {
			t.Errorf("app token as %s: %v", user, err)
		}
	}
	userTok := enroll(t, as, "carol@example.org", "pw")
	if err := login(ctx, srv, "carol@example.org", userTok.AccessToken); !errors.Is(err, imapupstream.ErrAuthFailed) {
		t.Errorf("a user's own token where only the app's are admitted: %v, want ErrAuthFailed", err)
	}
	if err := as.RevokeApp(ctx, tok.AccessToken); err != nil {
		t.Fatal(err)
	}
	if err := login(ctx, srv, "alice@example.org", tok.AccessToken); !errors.Is(err, imapupstream.ErrAuthFailed) {
		t.Errorf("a revoked app token: %v, want ErrAuthFailed", err)
	}
}
