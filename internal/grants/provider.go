package grants

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"time"

	"golang.org/x/oauth2"
)

// Provider is an upstream's OAuth2 settings (config's upstream.oauth2),
// the client secret read.
type Provider struct {
	Name          string // microsoft | google | generic
	ClientID      string
	ClientSecret  string // "" for a public client
	Tenant        string // microsoft; "" is "organizations"
	AuthURL       string // generic, for the authorization-code flow
	TokenURL      string // generic
	DeviceAuthURL string // generic
	Scopes        []string
}

// DefaultScopes are what a provider's IMAP access takes, with a refresh
// token: Microsoft's IMAP.AccessAsUser.All on outlook.office.com with
// offline_access; Google's full-mail scope (Google issues refresh tokens
// without a scope for it).
func DefaultScopes(provider string) []string {
	switch provider {
	case "microsoft":
		return []string{"https://outlook.office.com/IMAP.AccessAsUser.All", "offline_access"}
	case "google":
		return []string{"https://mail.google.com/"}
	}
	return nil
}

// ErrNoDeviceFlow means the provider does not allow the device flow for
// IMAP access: Google's device flow ("TVs and Limited Input devices")
// accepts a short list of scopes that leaves out Gmail's.
var ErrNoDeviceFlow = errors.New("grants: Google's device flow does not allow the Gmail scope (https://mail.google.com/): Google users are enrolled with the authorization-code flow")

// OAuth2Config is the provider's x/oauth2 configuration.
func (p Provider) OAuth2Config() (*oauth2.Config, error) {
	scopes := p.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes(p.Name)
	}
	if p.Name == "generic" && p.DeviceAuthURL == "" && p.AuthURL == "" {
		return nil, errors.New("grants: provider generic needs device_auth_url or auth_url")
	}
	ep, err := p.endpoint()
	if err != nil {
		return nil, err
	}
	return &oauth2.Config{ClientID: p.ClientID, ClientSecret: p.ClientSecret, Endpoint: ep, Scopes: slices.Clone(scopes)}, nil
}

// endpoint is the provider's: built in, or a generic provider's.
func (p Provider) endpoint() (oauth2.Endpoint, error) {
	switch p.Name {
	case "microsoft":
		tenant := p.Tenant
		if tenant == "" {
			tenant = "organizations"
		}
		base := "https://login.microsoftonline.com/" + url.PathEscape(tenant) + "/oauth2/v2.0/"
		return oauth2.Endpoint{AuthURL: base + "authorize", TokenURL: base + "token", DeviceAuthURL: base + "devicecode"}, nil
	case "google":
		return oauth2.Endpoint{AuthURL: "https://accounts.google.com/o/oauth2/auth", TokenURL: "https://oauth2.googleapis.com/token",
			DeviceAuthURL: "https://oauth2.googleapis.com/device/code", AuthStyle: oauth2.AuthStyleInParams}, nil
	case "generic":
		if p.TokenURL == "" {
			return oauth2.Endpoint{}, errors.New("grants: provider generic needs token_url")
		}
		return oauth2.Endpoint{AuthURL: p.AuthURL, TokenURL: p.TokenURL, DeviceAuthURL: p.DeviceAuthURL}, nil
	}
	return oauth2.Endpoint{}, fmt.Errorf("grants: unknown provider %q", p.Name)
}

// MicrosoftMargin is Options.Margin for Microsoft: Exchange Online ends an
// IMAP session when the access token it logged in with expires ("BYE
// Session invalidated - AccessTokenExpired"), so a login's token must
// outlast a long POP3 session, not just the login. Its tokens live 60 to
// 90 minutes: refreshing a quarter of an hour early costs little.
const MicrosoftMargin = 15 * time.Minute

// Margin is how long before its expiry an access token of the provider is
// replaced: MicrosoftMargin for Microsoft, DefaultMargin for the others,
// whose IMAP servers check a token at login only.
func (p Provider) Margin() time.Duration {
	if p.Name == "microsoft" {
		return MicrosoftMargin
	}
	return DefaultMargin
}

// CheckDeviceFlow says whether users of the provider can be enrolled with
// the device flow (EnrollDevice): ErrNoDeviceFlow for Google's mail scope,
// and for a generic provider without device_auth_url; those take the
// authorization-code flow (StartAuthCode).
func (p Provider) CheckDeviceFlow() error {
	if p.Name == "generic" && p.DeviceAuthURL == "" {
		return errors.New("grants: the provider has no device_auth_url: its users are enrolled with the authorization-code flow")
	}
	scopes := p.Scopes
	if len(scopes) == 0 {
		scopes = DefaultScopes(p.Name)
	}
	if p.Name == "google" && slices.Contains(scopes, "https://mail.google.com/") {
		return ErrNoDeviceFlow
	}
	return nil
}
