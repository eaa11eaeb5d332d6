package oidc

import (
	"context"
	"crypto/subtle"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// users is the provider's user list (storage.UserStore). A user's ID is
// its user name: the example's device pages record the name typed in as
// the token's subject, and the introspection looks the subject up by ID.
type users struct {
	mu    sync.Mutex
	users map[string]*storage.User
}

func (u *users) add(name, password string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.users[name] = &storage.User{
		ID:            name,
		Username:      name,
		Password:      password,
		Email:         name,
		EmailVerified: true,
	}
}

func (u *users) GetUserByID(id string) *storage.User {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.users[id]
}

func (u *users) GetUserByUsername(name string) *storage.User { return u.GetUserByID(name) }

// ExampleClientID names the example's JWT-profile service user; unused here.
func (u *users) ExampleClientID() string { return storage.ServiceUserID }

// providerStorage is the example's in-memory storage with the two
// adjustments the package doc describes; everything else is the example's.
type providerStorage struct {
	*storage.Storage
	deviceClient   string
	resourceClient string
	// The client-credentials client (the example's own service user,
	// "sid1", has a fixed secret and tokens no resource server may
	// introspect).
	appClient, appSecret string
	appTokens            sync.Map // the IDs of the app's access tokens
}

// ClientCredentials authenticates the app client.
func (s *providerStorage) ClientCredentials(ctx context.Context, id, secret string) (op.Client, error) {
	if id != s.appClient || subtle.ConstantTimeCompare([]byte(secret), []byte(s.appSecret)) != 1 {
		return nil, errors.New("wrong client or secret")
	}
	return appClient{storage.WebClient(id, secret)}, nil
}

// ClientCredentialsTokenRequest makes the app's tokens: the app is their
// subject, and the resource client is in their audience.
func (s *providerStorage) ClientCredentialsTokenRequest(ctx context.Context, id string, scopes []string) (op.TokenRequest, error) {
	if id != s.appClient {
		return nil, errors.New("wrong client")
	}
	return &oidc.JWTTokenRequest{Subject: id, Audience: []string{id, s.resourceClient}, Scopes: scopes}, nil
}

// CreateAccessToken records the app's tokens: the example files a
// client-credentials token under no client, so that no client could
// revoke it.
func (s *providerStorage) CreateAccessToken(ctx context.Context, request op.TokenRequest) (string, time.Time, error) {
	id, exp, err := s.Storage.CreateAccessToken(ctx, request)
	if _, ok := request.(*oidc.JWTTokenRequest); ok && err == nil && request.GetSubject() == s.appClient {
		s.appTokens.Store(id, struct{}{})
	}
	return id, exp, err
}

// RevokeToken lets the app revoke its own tokens.
func (s *providerStorage) RevokeToken(ctx context.Context, token, userID, clientID string) *oidc.Error {
	if _, ok := s.appTokens.Load(token); ok && clientID == s.appClient {
		s.appTokens.Delete(token)
		return s.Storage.RevokeToken(ctx, token, userID, "")
	}
	return s.Storage.RevokeToken(ctx, token, userID, clientID)
}

// appClient is a client allowed the client_credentials grant alone.
type appClient struct{ op.Client }

func (appClient) GrantTypes() []oidc.GrantType {
	return []oidc.GrantType{oidc.GrantTypeClientCredentials}
}

// GetClientByClientID lets the device client use refresh tokens too.
func (s *providerStorage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil || id != s.deviceClient {
		return c, err
	}
	return refreshingClient{c}, nil
}

// GetDeviceAuthorizatonState (sic, the interface's spelling) puts the
// resource client into the audience of the tokens the device flow issues;
// refresh tokens, and the access tokens they bring, inherit it.
func (s *providerStorage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	st, err := s.Storage.GetDeviceAuthorizatonState(ctx, clientID, deviceCode)
	if err != nil || slices.Contains(st.Audience, s.resourceClient) {
		return st, err
	}
	// A copy: the stored state is shared with concurrent polls.
	withResource := *st
	withResource.Audience = append(slices.Clone(st.Audience), s.resourceClient)
	return &withResource, nil
}

// CreateAccessAndRefreshTokens gives the first refresh token of a device
// flow its client: the example takes the client from code-flow and
// refresh requests only, so a device flow's refresh token would belong to
// no client and its first use fail with invalid_grant. The device state
// is passed on as the equivalent refresh request.
//
// A code flow's first tokens (the native client's) go the same way, with
// the resource client added to their audience, which the example fixes
// to the client alone for the code flow.
func (s *providerStorage) CreateAccessAndRefreshTokens(ctx context.Context, request op.TokenRequest, currentRefreshToken string) (string, string, time.Time, error) {
	if currentRefreshToken == "" {
		switch req := request.(type) {
		case *op.DeviceAuthorizationState:
			request = &storage.RefreshTokenRequest{RefreshToken: &storage.RefreshToken{
				ApplicationID: req.ClientID,
				UserID:        req.Subject,
				Audience:      req.GetAudience(),
				Scopes:        req.Scopes,
				AuthTime:      req.AuthTime,
				AMR:           req.AMR,
			}}
		case op.AuthRequest:
			audience := req.GetAudience()
			if !slices.Contains(audience, s.resourceClient) {
				audience = append(slices.Clone(audience), s.resourceClient)
			}
			request = &storage.RefreshTokenRequest{RefreshToken: &storage.RefreshToken{
				ApplicationID: req.GetClientID(),
				UserID:        req.GetSubject(),
				Audience:      audience,
				Scopes:        req.GetScopes(),
				AuthTime:      req.GetAuthTime(),
				AMR:           req.GetAMR(),
			}}
		}
	}
	return s.Storage.CreateAccessAndRefreshTokens(ctx, request, currentRefreshToken)
}

// refreshingClient is a client also allowed the refresh_token grant.
type refreshingClient struct{ op.Client }

func (c refreshingClient) GrantTypes() []oidc.GrantType {
	g := c.Client.GrantTypes()
	if !slices.Contains(g, oidc.GrantTypeRefreshToken) {
		g = append(slices.Clip(g), oidc.GrantTypeRefreshToken)
	}
	return g
}
