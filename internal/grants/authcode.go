package grants

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"

	"golang.org/x/oauth2"
)

// DefaultRedirectURL is where the authorization-code flow sends the
// browser: a loopback address (RFC 8252; what Google's "Desktop app"
// clients accept, on any port) where nothing listens, so the page does
// not load and the person copies its address back to the enrolment.
// Port 1 (tcpmux) is nobody's today.
const DefaultRedirectURL = "http://127.0.0.1:1/"

// ErrAuthCodeAnswer means the address pasted back from the browser is not
// the provider's answer to this enrolment (wrong state, an error, no code).
var ErrAuthCodeAnswer = errors.New("grants: not the provider's answer to this enrolment")

// AuthCodeEnrolment is one enrolment by the authorization-code grant with
// PKCE (RFC 7636): URL is what the person opens, in any browser.
type AuthCodeEnrolment struct {
	URL      string
	cfg      oauth2.Config
	state    string
	verifier string
}

// StartAuthCode begins an enrolment by the authorization-code grant, for
// providers whose device flow does not cover IMAP (Google): the person
// opens the URL, signs in and approves, and the browser is sent to
// redirectURL ("" for DefaultRedirectURL) with the code in its address.
// Offline access and a fresh consent are asked for, which is what makes
// Google issue a refresh token.
func (m *Manager) StartAuthCode(redirectURL string) *AuthCodeEnrolment {
	if redirectURL == "" {
		redirectURL = DefaultRedirectURL
	}
	cfg := *m.oauth
	cfg.RedirectURL = redirectURL
	var b [16]byte
	rand.Read(b[:])
	e := &AuthCodeEnrolment{cfg: cfg, state: hex.EncodeToString(b[:]), verifier: oauth2.GenerateVerifier()}
	e.URL = cfg.AuthCodeURL(e.state, oauth2.AccessTypeOffline, oauth2.SetAuthURLParam("prompt", "consent"),
		oauth2.S256ChallengeOption(e.verifier))
	return e
}

// FinishAuthCode takes the address the browser was sent to, exchanges its
// code and stores the grant.
func (m *Manager) FinishAuthCode(ctx context.Context, k Key, e *AuthCodeEnrolment, redirected string) error {
	u, err := url.Parse(redirected)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrAuthCodeAnswer, err)
	}
	q := u.Query()
	if q.Get("state") != e.state {
		return fmt.Errorf("%w: the state does not match (an address from another enrolment?)", ErrAuthCodeAnswer)
	}
	if msg := q.Get("error"); msg != "" {
		if d := q.Get("error_description"); d != "" {
			msg += ": " + d
		}
		return fmt.Errorf("%w: the provider answered %s", ErrAuthCodeAnswer, msg)
	}
	code := q.Get("code")
	if code == "" {
		return fmt.Errorf("%w: no code in it", ErrAuthCodeAnswer)
	}
	ctx = context.WithValue(ctx, oauth2.HTTPClient, m.opts.HTTPClient)
	tok, err := e.cfg.Exchange(ctx, code, oauth2.VerifierOption(e.verifier))
	if err != nil {
		return fmt.Errorf("grants: exchanging the code: %w", err)
	}
	return m.Enroll(ctx, k, tok)
}
