package oauth2user

import (
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/oauth2"

	"github.com/popbridge/popbridge/internal/apppass"
	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/uidmap"
)

// ErrNoOAuth2 means the user's upstream has no oauth2 block.
var ErrNoOAuth2 = errors.New("the user's upstream has no oauth2 block (upstream.oauth2, or the route's)")

// User is one user's OAuth2 state, open. Close it.
type User struct {
	Name     string
	Upstream string // the upstream's address: the grant's and passwords' key
	Provider grants.Provider

	Grants    *grants.Manager
	Passwords *apppass.Passwords

	store uidmap.Store
}

// GrantKey and PasswordKey name the user in the two stores.
func (u *User) GrantKey() grants.Key     { return grants.Key{Upstream: u.Upstream, User: u.Name} }
func (u *User) PasswordKey() apppass.Key { return apppass.Key{Upstream: u.Upstream, User: u.Name} }

// Options are what a caller may change; the zero value is fine.
type Options struct {
	HTTPClient *http.Client // for the provider (nil: http.DefaultClient)
}

// Open opens the state of user, whose maildrops are on the upstream of
// address upstream (the user's route's, as a session takes it), in store,
// which the User owns from then on: Close closes it.
func Open(cfg *config.Config, store uidmap.Store, upstream, user string, opts Options) (*User, error) {
	u, err := open(cfg, store, upstream, user, opts)
	if err != nil {
		store.Close()
		return nil, err
	}
	return u, nil
}

func open(cfg *config.Config, store uidmap.Store, addr, user string, opts Options) (*User, error) {
	sealer, gs, ps, err := stores(cfg, store)
	if err != nil {
		return nil, err
	}
	up, err := cfg.UpstreamByAddress(addr)
	if err != nil {
		return nil, err
	}
	if !up.OAuth2.Enabled() {
		return nil, fmt.Errorf("%s on %s: %w", user, addr, ErrNoOAuth2)
	}
	p, m, err := manager(up.OAuth2, gs, sealer, grants.Options{HTTPClient: opts.HTTPClient})
	if err != nil {
		return nil, err
	}
	return &User{
		Name:      user,
		Upstream:  addr,
		Provider:  p,
		Grants:    m,
		Passwords: apppass.New(ps, apppass.Params{}),
		store:     store,
	}, nil
}

// manager is the grants.Manager of an oauth2 block's upstream, and its
// provider, the client secret (or the service account's key) read: the
// users' grants, or with grant client_credentials or service_account the
// app's tokens.
func manager(o config.OAuth2, gs grants.Store, sealer *grants.Sealer, opts grants.Options) (grants.Provider, *grants.Manager, error) {
	secret, err := o.Secret()
	if err != nil {
		return grants.Provider{}, nil, err
	}
	p := grants.Provider{
		Name: o.Provider, ClientID: o.ClientID, ClientSecret: secret, Tenant: o.Tenant,
		AuthURL: o.AuthURL, TokenURL: o.TokenURL, DeviceAuthURL: o.DeviceAuthURL, Scopes: o.Scopes,
	}
	if opts.Margin == 0 {
		opts.Margin = p.Margin()
	}
	var app grants.App
	switch o.Grant {
	case config.GrantClientCredentials:
		app, err = p.ClientCredentials()
	case config.GrantServiceAccount:
		var key []byte
		if key, err = o.ServiceAccountKey(); err == nil {
			app, err = p.ServiceAccount(key)
		}
	default:
		var oc *oauth2.Config
		if oc, err = p.OAuth2Config(); err != nil {
			return p, nil, err
		}
		return p, grants.NewManager(gs, sealer, oc, opts), nil
	}
	if err != nil {
		return p, nil, err
	}
	return p, grants.NewAppManager(gs, sealer, app, opts), nil
}

// Close closes the store.
func (u *User) Close() error { return u.store.Close() }

// stores are the sealer of the grants (state.secret_file) and store's
// grants and app passwords: bolt and postgres keep them, the memory store
// (the demo's) does not.
func stores(cfg *config.Config, store uidmap.Store) (*grants.Sealer, grants.Store, apppass.Store, error) {
	if cfg.State.SecretFile == "" {
		return nil, nil, nil, errors.New("state.secret_file is not set: it holds the key that encrypts the grants (e.g. head -c 32 /dev/urandom | base64 > FILE; chmod 600 FILE)")
	}
	sealer, err := grants.LoadSealer(cfg.State.SecretFile)
	if err != nil {
		return nil, nil, nil, err
	}
	gs, ok1 := store.(grants.Store)
	ps, ok2 := store.(apppass.Store)
	if !ok1 || !ok2 {
		return nil, nil, nil, fmt.Errorf("state.driver %s keeps no OAuth2 grants: use bolt or postgres", cfg.State.Driver)
	}
	return sealer, gs, ps, nil
}
