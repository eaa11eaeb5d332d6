package dovecot

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// WithOAuth2Introspection is WithOAuth2 against a real authorization server:
// Dovecot's oauth2 passdb POSTs each bearer token to introspectionURL
// (RFC 7662), authenticating as the resource client clientID with
// clientSecret (HTTP Basic, from the URL's user info, which is how Dovecot
// 2.3 takes them), and accepts it when the answer has "active": true and a
// "username" equal to the name the client logs in as. Server.IssueToken is
// not available: tokens come from that server (internal/testenv/oidc).
func WithOAuth2Introspection(introspectionURL, clientID, clientSecret string) Option {
	return func(o *options) {
		o.oauth2 = true
		o.introspection = &introspection{url: introspectionURL, clientID: clientID, clientSecret: clientSecret}
	}
}

// WithOAuth2AppAccess is WithOAuth2Introspection for app-only access, as
// Microsoft 365 gives an application that an administrator allowed into
// the mailboxes: Dovecot accepts, for any user, an active token that
// carries scope (the app's role, IMAP.AccessAsApp at Microsoft), and no
// token without it. (Dovecot's oauth2 passdb compares the token's username
// with the login's through username_format; a constant format makes every
// login's the same.)
func WithOAuth2AppAccess(introspectionURL, clientID, clientSecret, scope string) Option {
	return func(o *options) {
		o.oauth2 = true
		o.introspection = &introspection{url: introspectionURL, clientID: clientID, clientSecret: clientSecret, appScope: scope}
	}
}

// introspection is where and as whom Dovecot introspects tokens, and the
// scope of the tokens that open every mailbox ("": the user's own only).
type introspection struct {
	url, clientID, clientSecret, appScope string
}

// config renders oauth2.conf. The credentials go into the URL's user info
// escaped, as HTTP Basic's user-id and password; the server unescapes
// them (RFC 6749 2.3.1 form-encodes client credentials for Basic).
func (in *introspection) config() (string, error) {
	u, err := url.Parse(in.url)
	if err != nil {
		return "", fmt.Errorf("WithOAuth2Introspection: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("WithOAuth2Introspection: %q is not an http(s) URL", in.url)
	}
	if strings.ContainsAny(in.clientID+in.clientSecret+in.appScope, "\n\r%") {
		return "", errors.New("WithOAuth2Introspection: client credentials and the scope must not contain newlines or %")
	}
	u.User = url.UserPassword(in.clientID, in.clientSecret)
	conf := "introspection_mode = post\n" +
		"introspection_url = " + u.String() + "\n" +
		"username_attribute = username\n" +
		"active_attribute = active\n" +
		"active_value = true\n"
	if in.appScope != "" {
		conf += "username_format = app\n" +
			"scope = " + in.appScope + "\n"
	}
	return conf, nil
}
