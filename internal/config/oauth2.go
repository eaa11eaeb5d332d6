package config

// OAuth2 is an upstream's OAuth2 login (upstream.oauth2): popbridge holds
// the users' grants and logs in upstream with their access tokens, while
// the POP3 clients log in with popbridge's own app passwords.
type OAuth2 struct {
	Provider         string   `yaml:"provider"` // microsoft | google | generic
	ClientID         string   `yaml:"client_id"`
	ClientSecret     string   `yaml:"client_secret" secret:"true"`
	ClientSecretFile string   `yaml:"client_secret_file"`
	Tenant           string   `yaml:"tenant"` // microsoft
	TokenURL         string   `yaml:"token_url"`
	DeviceAuthURL    string   `yaml:"device_auth_url"`
	Scopes           []string `yaml:"scopes"`
}

// Enabled reports whether the block configures anything.
func (o *OAuth2) Enabled() bool { return o.Provider != "" || o.ClientID != "" }

// validateOAuth2 checks an upstream's oauth2 block (key is its key).
func validateOAuth2(key string, o *OAuth2, bad func(key, format string, args ...any)) {
	if !o.Enabled() {
		return
	}
	bad(key+".provider", "not supported yet")
}
