package grants

import (
	"context"
	"errors"
	"fmt"
	"time"

	"golang.org/x/oauth2"
)

// refreshLeased refreshes the grant under this Manager's lease, which it
// releases; holder names the lease, seen is the version the caller found stale.
func (m *Manager) refreshLeased(ctx context.Context, k Key, holder string, seen int64) (string, error) {
	defer func() {
		// Released even when ctx is done: otherwise others wait out the
		// lease. A failed release expires on its own.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		m.store.ReleaseRefreshLease(rctx, k, holder)
	}()

	// Between our read and our lease someone may have refreshed it.
	cur, g, err := m.load(ctx, k)
	if err != nil {
		return "", err
	}
	if cur.Version != seen && m.usable(g) {
		m.observe(k, Waited, nil)
		return g.AccessToken, nil
	}
	if g.Broken != "" {
		return "", fmt.Errorf("%w (%s)", ErrReauthorize, g.Broken)
	}

	tok, err := m.callTokenEndpoint(ctx, k, g.RefreshToken)
	if err != nil {
		return m.refreshFailed(ctx, k, cur, g, err)
	}
	ng := g
	ng.AccessToken, ng.RefreshToken, ng.TokenType, ng.Expiry = tok.AccessToken, tok.RefreshToken, tok.TokenType, tok.Expiry
	ng.Refreshed = m.opts.Now()
	if ng.Enrolled.IsZero() {
		ng.Enrolled = ng.Refreshed // an app's first token
	}
	if err := m.write(ctx, k, cur.Version, ng); err != nil {
		m.observe(k, Failed, err)
		// The new access token is good whatever became of the write.
		return ng.AccessToken, nil
	}
	m.observe(k, Refreshed, nil)
	return ng.AccessToken, nil
}

// callTokenEndpoint runs the refresh_token grant, or an app's grant. x/oauth2
// keeps the old refresh token when the provider sends no new one (no
// rotation).
func (m *Manager) callTokenEndpoint(ctx context.Context, k Key, refreshToken string) (*oauth2.Token, error) {
	ctx, cancel := context.WithTimeout(ctx, m.opts.RefreshTimeout)
	defer cancel()
	ctx = context.WithValue(ctx, oauth2.HTTPClient, m.opts.HTTPClient)
	if m.app != nil {
		return m.app.Token(ctx, k.User)
	}
	return m.oauth.TokenSource(ctx, &oauth2.Token{RefreshToken: refreshToken}).Token()
}

// write stores g over version prev. A conflict means another writer came
// between: a new enrolment, which stands, or a refresh or a broken mark
// made from the same grant by an instance whose lease ran out. A
// successful refresh is the provider's latest word, so it replaces a
// broken mark; anything else is left as it is.
func (m *Manager) write(ctx context.Context, k Key, prev int64, g Grant) error {
	data, err := m.sealer.Seal(k, g)
	if err != nil {
		return err
	}
	_, err = m.store.SwapGrant(ctx, k, prev, data)
	if !errors.Is(err, ErrConflict) || g.Broken != "" {
		return err
	}
	latest, lg, err := m.load(ctx, k)
	if err != nil || lg.Broken == "" || !lg.Enrolled.Equal(g.Enrolled) {
		return err
	}
	_, err = m.store.SwapGrant(ctx, k, latest.Version, data)
	return err
}

// refreshFailed handles a refused or failed refresh of cur.
func (m *Manager) refreshFailed(ctx context.Context, k Key, cur Sealed, g Grant, err error) (string, error) {
	var re *oauth2.RetrieveError
	if m.app != nil && errors.As(err, &re) && refusal(re) {
		// The provider's answer to popbridge itself: nothing to mark, as
		// there is no user's grant to spend; every login asks again
		// (under the lease), so a fixed secret works at once.
		err = fmt.Errorf("%w: %s", ErrAppRefused, describe(re))
		m.observe(k, Revoked, err)
		return "", err
	}
	if !errors.As(err, &re) || re.ErrorCode != "invalid_grant" {
		err = fmt.Errorf("%w: %w", ErrRefreshFailed, err)
		m.observe(k, Failed, err)
		if m.usable(g) {
			// Due but not expired: this login goes on with it, and the
			// next one tries the provider again.
			return g.AccessToken, nil
		}
		return "", err
	}
	// A refresh token spent by another instance meanwhile is refused too:
	// then its result is in the store.
	if latest, lg, lerr := m.load(ctx, k); lerr == nil && latest.Version != cur.Version && m.usable(lg) {
		m.observe(k, Waited, nil)
		return lg.AccessToken, nil
	}
	g.Broken = "invalid_grant"
	if re.ErrorDescription != "" {
		g.Broken += ": " + re.ErrorDescription
	}
	if werr := m.write(ctx, k, cur.Version, g); werr != nil && !errors.Is(werr, ErrConflict) {
		err = errors.Join(err, werr)
	}
	err = fmt.Errorf("%w (%s)", ErrReauthorize, g.Broken)
	m.observe(k, Revoked, err)
	return "", err
}

// refusal: the provider answered the request with an OAuth2 error or a
// client error status (x/oauth2/jwt parses no error code), rather than
// failing to answer.
func refusal(re *oauth2.RetrieveError) bool {
	return re.ErrorCode != "" || (re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500)
}

// describe is the provider's refusal in a few words: its error code and
// description, else the HTTP status. Never the body: it may echo the
// request.
func describe(re *oauth2.RetrieveError) string {
	switch {
	case re.ErrorCode != "" && re.ErrorDescription != "":
		return re.ErrorCode + ": " + re.ErrorDescription
	case re.ErrorCode != "":
		return re.ErrorCode
	case re.Response != nil:
		return re.Response.Status
	}
	return "refused"
}
