package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
)

// OAuth2 is an upstream's OAuth2 login (upstream.oauth2): popbridge holds
// the users' grants and logs in upstream with their access tokens, while
// the POP3 clients log in with popbridge's own app passwords.
type OAuth2 struct {
	Provider         string   `yaml:"provider"` // microsoft | google | generic
	ClientID         string   `yaml:"client_id"`
	ClientSecret     string   `yaml:"client_secret" secret:"true"`
	ClientSecretFile string   `yaml:"client_secret_file"`
	Tenant           string   `yaml:"tenant"` // microsoft: directory (tenant) ID or domain; default "organizations"
	TokenURL         string   `yaml:"token_url"`
	DeviceAuthURL    string   `yaml:"device_auth_url"`
	AuthURL          string   `yaml:"auth_url"` // generic: for enrolment by the authorization-code flow
	Scopes           []string `yaml:"scopes"`
	// Mechanism is the SASL mechanism of the upstream login: xoauth2
	// (the default; Microsoft 365 and Gmail) or oauthbearer (RFC 7628).
	Mechanism string `yaml:"mechanism"`
	// Grant is whose access popbridge logs in with: user (the default:
	// each user enrolled, popbridge oauth2 enroll), client_credentials
	// (the app's own token for every mailbox: Microsoft 365's app-only
	// access, or a generic provider's) or service_account (Google
	// Workspace: a token signed for each user by a service account with
	// domain-wide delegation, its JSON key in service_account_file).
	Grant              string `yaml:"grant"`
	ServiceAccountFile string `yaml:"service_account_file"`
}

// The values of OAuth2.Grant.
const (
	GrantUser              = "user"
	GrantClientCredentials = "client_credentials"
	GrantServiceAccount    = "service_account"
)

// AppOnly reports whether the block's tokens are popbridge's own
// (client_credentials or service_account): nobody is enrolled.
func (o *OAuth2) AppOnly() bool {
	return o.Grant == GrantClientCredentials || o.Grant == GrantServiceAccount
}

// Enabled reports whether the block configures anything.
func (o *OAuth2) Enabled() bool { return o.Provider != "" || o.ClientID != "" }

// Secret returns the client secret: client_secret (or its environment
// variable), else the first line of client_secret_file, else "" (a public
// client, as Microsoft's device flow allows).
func (o *OAuth2) Secret() (string, error) {
	if o.ClientSecret != "" || o.ClientSecretFile == "" {
		return o.ClientSecret, nil
	}
	b, err := os.ReadFile(o.ClientSecretFile)
	if err != nil {
		return "", fmt.Errorf("config: client_secret_file: %w", err)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), nil
}

// validateOAuth2 checks an upstream's oauth2 block (key is its key).
func validateOAuth2(key string, o *OAuth2, bad func(key, format string, args ...any)) {
	if !o.Enabled() {
		return
	}
	switch o.Provider {
	case "microsoft", "google":
		for _, f := range []struct{ name, value string }{{"token_url", o.TokenURL}, {"device_auth_url", o.DeviceAuthURL}, {"auth_url", o.AuthURL}} {
			if f.value != "" {
				bad(key+"."+f.name, "only for provider generic: %s's endpoints are built in", o.Provider)
			}
		}
	case "generic":
		endpoint(key+".token_url", o.TokenURL, bad)
		switch {
		case o.AppOnly():
			// No user takes a flow.
		case o.DeviceAuthURL == "" && o.AuthURL == "":
			bad(key+".device_auth_url", "required for provider generic (or auth_url, for the authorization-code flow)")
		case o.DeviceAuthURL != "":
			endpoint(key+".device_auth_url", o.DeviceAuthURL, bad)
		}
		if o.AuthURL != "" {
			endpoint(key+".auth_url", o.AuthURL, bad)
		}
		if len(o.Scopes) == 0 {
			bad(key+".scopes", "required for provider generic: the scopes that allow IMAP (and a refresh token, for grant: user)")
		}
	default:
		bad(key+".provider", "must be one of microsoft, google, generic")
	}
	if o.Tenant != "" && o.Provider != "microsoft" {
		bad(key+".tenant", "only for provider microsoft")
	}
	if strings.ContainsAny(o.Tenant, "/?#") {
		bad(key+".tenant", "must be a directory (tenant) ID, a domain, organizations or common")
	}
	if o.ClientID == "" && o.Grant != GrantServiceAccount {
		bad(key+".client_id", "required: the application (client) ID of popbridge's registration at the provider")
	}
	if o.ClientSecret != "" && o.ClientSecretFile != "" {
		bad(key+".client_secret", "set client_secret or client_secret_file, not both")
	}
	validateGrant(key, o, bad)
	if o.Mechanism != "" && !strings.EqualFold(o.Mechanism, "xoauth2") && !strings.EqualFold(o.Mechanism, "oauthbearer") {
		bad(key+".mechanism", "must be xoauth2 or oauthbearer")
	}
	for i, s := range o.Scopes {
		if s == "" || strings.ContainsAny(s, " \t") {
			bad(fmt.Sprintf("%s.scopes.%d", key, i), "must be one scope, without spaces")
		}
	}
}

// validateGrant checks grant and what each grant needs.
func validateGrant(key string, o *OAuth2, bad func(key, format string, args ...any)) {
	switch o.Grant {
	case "", GrantUser:
		if o.ServiceAccountFile != "" {
			bad(key+".service_account_file", "only with grant: service_account")
		}
	case GrantClientCredentials:
		switch o.Provider {
		case "google":
			bad(key+".grant", "Google gives no client-credentials access to Gmail: use grant: service_account (Workspace, domain-wide delegation)")
		case "microsoft":
			switch o.Tenant {
			case "", "organizations", "common", "consumers":
				bad(key+".tenant", "required with grant: client_credentials: the directory (tenant) ID or domain whose mailboxes the app may open")
			}
		}
		if o.ClientSecret == "" && o.ClientSecretFile == "" {
			bad(key+".client_secret", "required with grant: client_credentials (or client_secret_file)")
		}
		if o.ServiceAccountFile != "" {
			bad(key+".service_account_file", "only with grant: service_account")
		}
	case GrantServiceAccount:
		if o.Provider != "google" {
			bad(key+".grant", "service_account is Google's: provider %s takes grant: client_credentials", o.Provider)
		}
		if o.ServiceAccountFile == "" {
			bad(key+".service_account_file", "required with grant: service_account: the service account's JSON key")
		}
		if o.ClientSecret != "" || o.ClientSecretFile != "" {
			bad(key+".client_secret", "not with grant: service_account: its key file is its credential")
		}
	default:
		bad(key+".grant", "must be one of user, client_credentials, service_account")
	}
}

// ServiceAccountKey reads service_account_file. A file that others than
// its owner may read is refused: whoever reads it opens every mailbox of
// the domain.
func (o *OAuth2) ServiceAccountKey() ([]byte, error) {
	fi, err := os.Stat(o.ServiceAccountFile)
	if err != nil {
		return nil, fmt.Errorf("config: service_account_file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("config: service_account_file %s is readable by others (mode %v): chmod 600 it", o.ServiceAccountFile, fi.Mode().Perm())
	}
	b, err := os.ReadFile(o.ServiceAccountFile)
	if err != nil {
		return nil, fmt.Errorf("config: service_account_file: %w", err)
	}
	return b, nil
}

// endpoint checks an endpoint URL: https, or http to a loopback host.
func endpoint(key, u string, bad func(key, format string, args ...any)) {
	if u == "" {
		bad(key, "required for provider generic")
		return
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" {
		bad(key, "must be an absolute URL")
		return
	}
	if p.Scheme != "https" && !(p.Scheme == "http" && IsLoopbackAddress(net.JoinHostPort(p.Hostname(), "0"))) {
		bad(key, "must be https (http only to a loopback address)")
	}
}

// UpstreamByAddress returns the upstream block (upstream: or a route's)
// whose address is addr: the block of the upstream a user's route names.
func (cfg *Config) UpstreamByAddress(addr string) (*Upstream, error) {
	if cfg.Upstream.Address == addr {
		return &cfg.Upstream, nil
	}
	for i := range cfg.Routes {
		if cfg.Routes[i].Upstream.Address == addr {
			return &cfg.Routes[i].Upstream, nil
		}
	}
	return nil, errors.New("config: no upstream has address " + addr)
}
