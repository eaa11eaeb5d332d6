package grants

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
	"golang.org/x/oauth2/google"
)

// ErrAppRefused means the provider refused popbridge's own credentials
// in app-only mode (the client secret or the service account's key, or
// the application's permissions): no user can do anything about it, the
// administrator must.
var ErrAppRefused = errors.New("grants: the provider refused popbridge's application credentials: check client_id, the client secret or service account key, and the application's permissions")

// App is where access tokens come from when users need no enrolment: the
// client-credentials grant, one token for every mailbox (Microsoft 365's
// app-only access), or a service account that signs a token for each user
// (Google Workspace's domain-wide delegation). Its tokens are kept as
// grants without a refresh token, sealed and shared through the store like
// the users' own, and a new one is fetched once across instances when the
// old one is due.
type App struct {
	// Token obtains a new access token for user ("" when Shared). Its
	// context carries the Manager's HTTP client (oauth2.HTTPClient).
	Token func(ctx context.Context, user string) (*oauth2.Token, error)
	// Shared: one token serves every user (client credentials); it is
	// stored under the user "".
	Shared bool
}

// ClientCredentials is the App of the client-credentials grant (RFC 6749
// 4.4) at the provider: one token for all users.
func (p Provider) ClientCredentials() (App, error) {
	if p.Name == "google" {
		return App{}, errors.New("grants: Google has no client-credentials access to Gmail: use a service account with domain-wide delegation (grant: service_account)")
	}
	if p.ClientSecret == "" {
		return App{}, errors.New("grants: the client-credentials grant needs the client secret")
	}
	if p.Name == "microsoft" && !specificTenant(p.Tenant) {
		return App{}, errors.New("grants: Microsoft's client-credentials grant needs the directory's own tenant (its ID or domain), not organizations or common")
	}
	ep, err := p.endpoint()
	if err != nil {
		return App{}, err
	}
	cc := &clientcredentials.Config{
		ClientID: p.ClientID, ClientSecret: p.ClientSecret, TokenURL: ep.TokenURL,
		Scopes: p.appScopes(), AuthStyle: ep.AuthStyle,
	}
	return App{Shared: true, Token: func(ctx context.Context, _ string) (*oauth2.Token, error) {
		return cc.Token(ctx)
	}}, nil
}

// ServiceAccount is the App of a Google service account with domain-wide
// delegation, from its JSON key: a token for each user, signed for that
// user (the JWT's sub) with the service account's key.
func (p Provider) ServiceAccount(key []byte) (App, error) {
	if p.Name != "google" {
		return App{}, fmt.Errorf("grants: service accounts are Google's: provider %s takes grant: client_credentials", p.Name)
	}
	jc, err := google.JWTConfigFromJSON(key, p.appScopes()...)
	if err != nil {
		return App{}, fmt.Errorf("grants: service account key: %w", err)
	}
	return App{Token: func(ctx context.Context, user string) (*oauth2.Token, error) {
		c := *jc
		c.Subject = user
		return c.TokenSource(ctx).Token()
	}}, nil
}

// appScopes are the scopes of app-only tokens: the provider's .default
// for Microsoft (the application permissions granted, IMAP.AccessAsApp),
// the mail scope for Google.
func (p Provider) appScopes() []string {
	if len(p.Scopes) > 0 {
		return p.Scopes
	}
	switch p.Name {
	case "microsoft":
		return []string{"https://outlook.office365.com/.default"}
	case "google":
		return []string{"https://mail.google.com/"}
	}
	return nil
}

// specificTenant: a Microsoft tenant that names one directory.
func specificTenant(t string) bool {
	switch t {
	case "", "organizations", "common", "consumers":
		return false
	}
	return true
}
