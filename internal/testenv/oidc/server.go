package oidc

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// Scopes are what the device client asks for: the user's name in the
// introspection (profile, email) and a refresh token (offline_access).
var Scopes = []string{"openid", "profile", "email", "offline_access"}

// Server is one running provider. Its methods may be called from several
// goroutines.
type Server struct {
	Issuer string // http://127.0.0.1:PORT/

	// ClientID and ClientSecret are the device client's, as popbridge
	// would be registered (confidential, HTTP Basic authentication).
	ClientID, ClientSecret string
	// ResourceID and ResourceSecret are the resource server's, the client
	// Dovecot introspects tokens as.
	ResourceID, ResourceSecret string
	// NativeClientID is a public client of the authorization-code flow
	// with PKCE and a loopback redirect (RFC 8252), as Google's "Desktop
	// app" clients are: any port of http://127.0.0.1/callback.
	NativeClientID string
	// AppClientID and AppClientSecret are a confidential client of the
	// client-credentials grant (RFC 6749 4.4): popbridge registered for
	// app-only access, as Microsoft 365's service principals are. Its
	// tokens name the app itself (subject and username AppClientID) and
	// the resource client in their audience.
	AppClientID, AppClientSecret string

	// Endpoints as the provider's discovery document names them.
	AuthURL, TokenURL, DeviceAuthURL, IntrospectionURL, RevocationURL string

	users *users
	http  *http.Server
}

// Start runs a provider for the test and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Launch()
	if err != nil {
		t.Fatalf("oidc: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Launch runs a provider, as Start does but outside a test; Close stops it.
func Launch() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("oidc: listen: %w", err)
	}
	s := &Server{
		Issuer:          "http://" + ln.Addr().String() + "/",
		ClientID:        "popbridge",
		ClientSecret:    randomSecret(),
		ResourceID:      "dovecot",
		ResourceSecret:  randomSecret(),
		NativeClientID:  "popbridge-native",
		AppClientID:     "popbridge-app",
		AppClientSecret: randomSecret(),
		users:           &users{users: make(map[string]*storage.User)},
	}
	st := &providerStorage{
		Storage: storage.NewStorageWithClients(s.users, map[string]*storage.Client{
			s.ClientID:       storage.DeviceClient(s.ClientID, s.ClientSecret),
			s.ResourceID:     storage.WebClient(s.ResourceID, s.ResourceSecret),
			s.NativeClientID: storage.NativeClient(s.NativeClientID, "http://127.0.0.1/callback"),
			// For the revocation endpoint's client authentication; its
			// tokens come from ClientCredentials (providerStorage).
			s.AppClientID: storage.WebClient(s.AppClientID, s.AppClientSecret),
		}),
		deviceClient:   s.ClientID,
		resourceClient: s.ResourceID,
		appClient:      s.AppClientID,
		appSecret:      s.AppClientSecret,
	}
	// The app is a user too, so that introspection names it (the
	// example looks a token's subject up among the users); nobody signs
	// in as it.
	s.users.add(s.AppClientID, randomSecret())
	// A nil logger: the example would otherwise replace slog's default
	// logger for the whole test process.
	router := exampleop.SetupServer(s.Issuer, st, nil, false)
	s.http = &http.Server{Handler: router, ReadHeaderTimeout: 10 * time.Second}
	go s.http.Serve(ln)
	if err := s.discover(context.Background()); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// Close stops the provider.
func (s *Server) Close() error { return s.http.Close() }

func randomSecret() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// discover reads the endpoints from the provider's discovery document, as
// a client configured with the issuer alone would.
func (s *Server) discover(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.Issuer+".well-known/openid-configuration", nil)
	if err != nil {
		return fmt.Errorf("oidc: discovery: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("oidc: discovery: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oidc: discovery: %s", resp.Status)
	}
	var d struct {
		Auth          string `json:"authorization_endpoint"`
		Token         string `json:"token_endpoint"`
		DeviceAuth    string `json:"device_authorization_endpoint"`
		Introspection string `json:"introspection_endpoint"`
		Revocation    string `json:"revocation_endpoint"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return fmt.Errorf("oidc: discovery: %w", err)
	}
	if d.Auth == "" || d.Token == "" || d.DeviceAuth == "" || d.Introspection == "" || d.Revocation == "" {
		return errors.New("oidc: discovery names no authorization, token, device, introspection or revocation endpoint")
	}
	s.AuthURL, s.TokenURL, s.DeviceAuthURL, s.IntrospectionURL, s.RevocationURL = d.Auth, d.Token, d.DeviceAuth, d.Introspection, d.Revocation
	return nil
}

// AddUser lets a user sign in at the provider's pages.
func (s *Server) AddUser(name, password string) { s.users.add(name, password) }

// DeviceClient is the oauth2.Config of the device client, with Scopes.
func (s *Server) DeviceClient() *oauth2.Config {
	return &oauth2.Config{
		ClientID:     s.ClientID,
		ClientSecret: s.ClientSecret,
		Endpoint: oauth2.Endpoint{
			TokenURL:      s.TokenURL,
			DeviceAuthURL: s.DeviceAuthURL,
			AuthStyle:     oauth2.AuthStyleInHeader,
		},
		Scopes: Scopes,
	}
}

// AppScope is the scope an app's token must carry for Dovecot to admit it
// to every mailbox (dovecot.WithOAuth2AppAccess), as Microsoft 365's
// IMAP.AccessAsApp role does; AppScopes are what the app asks for, with
// the app's name in the introspection (profile).
const AppScope = "imap.app"

var AppScopes = []string{"openid", "profile", AppScope}

// AppClient is the client-credentials configuration of the app client,
// with AppScopes.
func (s *Server) AppClient() *clientcredentials.Config {
	return &clientcredentials.Config{ClientID: s.AppClientID, ClientSecret: s.AppClientSecret, TokenURL: s.TokenURL, Scopes: AppScopes}
}

// NativeClient is the oauth2.Config of the native (public) client, with
// Scopes and the given loopback redirect (http://127.0.0.1:PORT/callback).
func (s *Server) NativeClient(redirectURL string) *oauth2.Config {
	return &oauth2.Config{
		ClientID:    s.NativeClientID,
		Endpoint:    oauth2.Endpoint{AuthURL: s.AuthURL, TokenURL: s.TokenURL, AuthStyle: oauth2.AuthStyleInParams},
		RedirectURL: redirectURL,
		Scopes:      Scopes,
	}
}

// Revoke revokes a token (access or refresh) at the provider's revocation
// endpoint, as the device client: a revoked access token no longer
// introspects as active, a revoked refresh token no longer refreshes.
func (s *Server) Revoke(ctx context.Context, token string) error {
	return s.revoke(ctx, token, s.ClientID, s.ClientSecret)
}

// RevokeApp revokes an access token of the app client, as the app.
func (s *Server) RevokeApp(ctx context.Context, token string) error {
	return s.revoke(ctx, token, s.AppClientID, s.AppClientSecret)
}

func (s *Server) revoke(ctx context.Context, token, clientID, clientSecret string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.RevocationURL,
		strings.NewReader(url.Values{"token": {token}}.Encode()))
	if err != nil {
		return fmt.Errorf("oidc: revoke: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("oidc: revoke: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("oidc: revoke: %s", resp.Status)
	}
	return nil
}
