package proxy

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/popbridge/popbridge/internal/apppass"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/pop3"
)

// OAuth2Upstream is how the users of an upstream that takes OAuth2
// (upstream.oauth2) log in: with one of their app passwords at popbridge
// (or the password the auth hook accepts), and upstream with the access
// token of their grant, or of popbridge's own app-only access.
type OAuth2Upstream struct {
	Grants    *grants.Manager
	Passwords *apppass.Passwords
	// Mechanism is the SASL mechanism of the upstream login: "XOAUTH2"
	// (the default: Microsoft 365 and Gmail) or "OAUTHBEARER".
	Mechanism string
}

// WithOAuth2 returns b with logins to the upstreams in ups (by UpstreamID,
// after routes: Options.ForUser) going through popbridge's OAuth2 access:
// a login with a password (USER/PASS, PLAIN, LOGIN) must give one of the
// user's app passwords, and b then logs in upstream with the current
// access token of the user's grant (or the app's, Grants.App) instead. A
// client that brings its own bearer token (AUTH XOAUTH2 or OAUTHBEARER) is
// passed through as before, and the users of other upstreams are b's
// alone.
//
// With an auth hook (auth.http_hook) the hook checks the password instead
// of the app passwords, and the upstream, and the user whose token is
// taken, are the ones the hook's answer leads to: an ISP's users then
// need nothing at popbridge, with app-only access not even an enrolment.
//
// An access token the upstream refuses (the provider revoked it before its
// expiry) makes the grant refresh at once and the login try again, once.
//
// The app password is checked before anything is said about the grant,
// so that only someone who knows it learns whether the user is enrolled.
// The texts of the refusals after that tell the user what the
// administrator has to run.
func WithOAuth2(b *Backend, ups map[string]*OAuth2Upstream) *OAuth2Backend {
	o := &OAuth2Backend{next: b}
	o.SetUpstreams(ups)
	return o
}

// OAuth2Backend is WithOAuth2's pop3.Backend.
type OAuth2Backend struct {
	next *Backend
	ups  atomic.Pointer[map[string]*OAuth2Upstream]
}

var _ pop3.Backend = (*OAuth2Backend)(nil)

// SetUpstreams replaces the OAuth2 upstreams for new logins (a reload:
// routes may have come or gone along with Backend.Reconfigure's).
func (o *OAuth2Backend) SetUpstreams(ups map[string]*OAuth2Upstream) { o.ups.Store(&ups) }

// Login implements pop3.Backend.
func (o *OAuth2Backend) Login(ctx context.Context, ci *pop3.ConnInfo, cred *pop3.Credentials) (pop3.Session, error) {
	if cred.Token != "" || (cred.AuthzID != "" && cred.AuthzID != cred.Username) {
		return o.next.Login(ctx, ci, cred) // a client's own token; or refused there
	}
	ups := *o.ups.Load()
	bearers := func(id string) tokenSource {
		if up := ups[id]; up != nil {
			return up
		}
		return nil
	}
	if o.next.live.Load().Hook != nil {
		return o.next.login(ctx, ci, cred, bearers) // the hook checks the password
	}
	opts := o.next.Options()
	// A device's login (user#phone) is its user's: app passwords and
	// upstream; the Backend gives the device its own view.
	user, _ := opts.Device(cred.Username)
	id := opts.ForUser(user).UpstreamID
	up := ups[id]
	if up == nil {
		return o.next.Login(ctx, ci, cred)
	}
	if err := up.verify(ctx, id, user, cred.Password); err != nil {
		return nil, err
	}
	return o.next.login(ctx, ci, cred, bearers)
}

// verify checks a login's app password.
func (up *OAuth2Upstream) verify(ctx context.Context, upstreamID, user, password string) error {
	if _, err := up.Passwords.Verify(ctx, apppass.Key{Upstream: upstreamID, User: user}, password); err != nil {
		if errors.Is(err, apppass.ErrWrongPassword) {
			return fmt.Errorf("%w: %w", pop3.ErrAuthFailed, err)
		}
		return &pop3.Error{Code: pop3.CodeSysTemp, Message: "temporary server failure, try again later", Err: err}
	}
	return nil
}

// token implements tokenSource: the user's current access token, or what
// the client is to be told.
func (up *OAuth2Upstream) token(ctx context.Context, upstreamID, user string) (string, error) {
	tok, err := up.Grants.AccessToken(ctx, grants.Key{Upstream: upstreamID, User: user})
	if err != nil {
		return "", grantError(user, err)
	}
	return tok, nil
}

// refused implements tokenSource.
func (up *OAuth2Upstream) refused(ctx context.Context, upstreamID, user, token string) (string, error) {
	tok, err := up.Grants.Refused(ctx, grants.Key{Upstream: upstreamID, User: user}, token)
	if err != nil {
		return "", grantError(user, err)
	}
	return tok, nil
}

func (up *OAuth2Upstream) mechanism() string {
	if up.Mechanism == "" {
		return "XOAUTH2"
	}
	return up.Mechanism
}

func (up *OAuth2Upstream) appOnly() bool { return up.Grants.App() }

// refusedText is what the client is told when the upstream refused even a
// new token of bt.
func refusedText(bt *bearer) string {
	if bt.src.appOnly() {
		return fmt.Sprintf("the mail server refused popbridge's application access to the mailbox of %s: ask your administrator to allow popbridge's application into it", bt.user)
	}
	return fmt.Sprintf("the mail server refused popbridge's OAuth2 access for %s: ask your administrator to run popbridge oauth2 enroll %s", bt.user, bt.user)
}

// grantError is what the client is told when the user's grant gives no
// token.
func grantError(user string, err error) error {
	switch {
	case errors.Is(err, grants.ErrNoGrant):
		return &pop3.Error{Code: pop3.CodeAuth, Err: err, Message: fmt.Sprintf(
			"%s is not enrolled for OAuth2: ask your administrator to run popbridge oauth2 enroll %s", user, user)}
	case errors.Is(err, grants.ErrReauthorize):
		return &pop3.Error{Code: pop3.CodeAuth, Err: err, Message: fmt.Sprintf(
			"the mail provider no longer accepts popbridge's access for %s: ask your administrator to run popbridge oauth2 enroll %s", user, user)}
	case errors.Is(err, grants.ErrAppRefused):
		return &pop3.Error{Code: pop3.CodeAuth, Err: err, Message: fmt.Sprintf(
			"the mail provider refused popbridge's application access for %s: ask your administrator to check popbridge's app registration (popbridge oauth2 status %s)", user, user)}
	default:
		return &pop3.Error{Code: pop3.CodeSysTemp, Err: err, Message: "the mail provider is temporarily unavailable, try again later"}
	}
}
