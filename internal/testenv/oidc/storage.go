package oidc

import (
	"context"
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
