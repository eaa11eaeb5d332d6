package grants

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
)

// ErrReauthorize means the provider refused the user's refresh token
// (revoked, expired, password changed): only a new enrolment helps.
var ErrReauthorize = errors.New("grants: the provider refused the grant: enrol the user again (popbridge oauth2 enroll USER)")

// ErrRefreshFailed means the refresh could not be done now (the provider
// unreachable or answering an error other than invalid_grant): worth
// trying again later.
var ErrRefreshFailed = errors.New("grants: refreshing the access token failed")

// Defaults of Options.
const (
	DefaultMargin       = time.Minute
	DefaultLeaseTTL     = 30 * time.Second
	DefaultPollInterval = 100 * time.Millisecond
)

// Outcome is what became of one AccessToken call that needed a refresh.
type Outcome string

// The outcomes Options.Observe is told of.
const (
	Refreshed Outcome = "refreshed" // this instance refreshed the grant
	Waited    Outcome = "waited"    // another one did; its token was used
	Revoked   Outcome = "revoked"   // the provider refused the refresh token
	Failed    Outcome = "failed"    // the refresh failed for another reason
)

// Options tune a Manager; zero values take the defaults.
type Options struct {
	// Margin: an access token that expires within it is refreshed before
	// use (it must outlast the upstream login).
	Margin time.Duration
	// LeaseTTL bounds how long one instance may hold a grant's refresh;
	// others wait at most that long for it (a holder that died).
	LeaseTTL time.Duration
	// RefreshTimeout bounds the call to the token endpoint; at most, and
	// by default, half of LeaseTTL, so a refresh ends within its lease.
	RefreshTimeout time.Duration
	// PollInterval is how often a waiting instance looks for the refresh
	// another one makes.
	PollInterval time.Duration
	// HTTPClient calls the token endpoint (nil: http.DefaultClient).
	HTTPClient *http.Client
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// Observe, when not nil, is told the outcome of each refresh needed,
	// for metrics and logs. It is given no token.
	Observe func(k Key, o Outcome, err error)
}

// Manager hands out users' current access tokens. It is safe for
// concurrent use; instances sharing a Store each have their own.
type Manager struct {
	store  Store
	sealer *Sealer
	oauth  *oauth2.Config
	app    *App // app-only: tokens without users' grants
	opts   Options
	holder string // this Manager's name in refresh leases
	calls  atomic.Uint64
}

// NewManager returns a Manager of the grants in store, sealed by sealer and
// refreshed at the provider that oauth describes.
func NewManager(store Store, sealer *Sealer, oauth *oauth2.Config, opts Options) *Manager {
	if opts.Margin <= 0 {
		opts.Margin = DefaultMargin
	}
	if opts.LeaseTTL <= 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.RefreshTimeout <= 0 || opts.RefreshTimeout > opts.LeaseTTL/2 {
		opts.RefreshTimeout = opts.LeaseTTL / 2
	}
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var b [12]byte
	rand.Read(b[:])
	return &Manager{store: store, sealer: sealer, oauth: oauth, opts: opts, holder: hex.EncodeToString(b[:])}
}

// NewAppManager returns a Manager of app-only tokens (App): nobody is
// enrolled, and AccessToken fetches a token when there is none or it is
// due.
func NewAppManager(store Store, sealer *Sealer, app App, opts Options) *Manager {
	m := NewManager(store, sealer, nil, opts)
	m.app = &app
	return m
}

// Margin is how long before its expiry m replaces an access token.
func (m *Manager) Margin() time.Duration { return m.opts.Margin }

// App reports whether m hands out app-only tokens (NewAppManager).
func (m *Manager) App() bool { return m.app != nil }

// key is where k's token is kept: an app's shared token under no user.
func (m *Manager) key(k Key) Key {
	if m.app != nil && m.app.Shared {
		k.User = ""
	}
	return k
}

// Enroll stores the token of a new enrolment as the user's grant,
// replacing any earlier one (a broken one included).
func (m *Manager) Enroll(ctx context.Context, k Key, tok *oauth2.Token) error {
	if tok.AccessToken == "" || tok.RefreshToken == "" {
		return errors.New("grants: the provider issued no refresh token (is offline_access, or the provider's equivalent, in the scopes?)")
	}
	data, err := m.sealer.Seal(k, FromToken(tok, m.opts.Now()))
	if err != nil {
		return err
	}
	for range 5 {
		prev, err := m.store.LoadGrant(ctx, k)
		if err != nil && !errors.Is(err, ErrNoGrant) {
			return fmt.Errorf("grants: enroll: %w", err)
		}
		if _, err = m.store.SwapGrant(ctx, k, prev.Version, data); !errors.Is(err, ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("grants: enroll: %w", ErrConflict)
}

// Grant returns the user's grant, to show its state (print it: its
// String holds no token).
func (m *Manager) Grant(ctx context.Context, k Key) (Grant, error) {
	_, g, err := m.load(ctx, m.key(k))
	return g, err
}

// Delete forgets the user's grant (at popbridge only: revoking it at the
// provider is the provider's business).
func (m *Manager) Delete(ctx context.Context, k Key) error {
	return m.store.DeleteGrant(ctx, m.key(k))
}

func (m *Manager) load(ctx context.Context, k Key) (Sealed, Grant, error) {
	st, err := m.store.LoadGrant(ctx, k)
	if errors.Is(err, ErrNoGrant) && m.app != nil {
		return Sealed{}, Grant{}, nil // none yet: the first call fetches one
	}
	if err != nil {
		return Sealed{}, Grant{}, err
	}
	g, err := m.sealer.Open(k, st.Data)
	return st, g, err
}

// fresh: the access token outlasts Margin; usable: it has not expired.
// (An app's grant before its first token has none.)
func (m *Manager) fresh(g Grant) bool {
	return g.AccessToken != "" && (g.Expiry.IsZero() || m.opts.Now().Add(m.opts.Margin).Before(g.Expiry))
}

func (m *Manager) usable(g Grant) bool {
	return g.AccessToken != "" && g.Broken == "" && (g.Expiry.IsZero() || m.opts.Now().Before(g.Expiry))
}

func (m *Manager) observe(k Key, o Outcome, err error) {
	if m.opts.Observe != nil {
		m.opts.Observe(k, o, err)
	}
}

// AccessToken returns a current access token of the user's grant,
// refreshing it first if it expires within Margin: ErrNoGrant when the
// user is not enrolled, ErrReauthorize when the provider refused the
// grant, ErrRefreshFailed when the token has expired and could not be
// refreshed (one that is due but still valid is returned as it is when
// the provider cannot be reached).
func (m *Manager) AccessToken(ctx context.Context, k Key) (string, error) {
	return m.token(ctx, m.key(k), "")
}

// Refused is AccessToken after the upstream refused token, one of the
// grant's: the provider may have revoked it before its expiry (a password
// change, an administrator), so the grant is refreshed now, unless another
// login has replaced that token already. A token other than the refused
// one is worth one more login.
func (m *Manager) Refused(ctx context.Context, k Key, token string) (string, error) {
	return m.token(ctx, m.key(k), token)
}

// token is AccessToken, refreshing also a fresh grant whose access token
// is refused.
func (m *Manager) token(ctx context.Context, k Key, refused string) (string, error) {
	st, g, err := m.load(ctx, k)
	if err != nil {
		return "", err
	}
	for {
		if g.Broken != "" {
			return "", fmt.Errorf("%w (%s)", ErrReauthorize, g.Broken)
		}
		if m.fresh(g) && (refused == "" || g.AccessToken != refused) {
			return g.AccessToken, nil
		}
		// The holder is this call, not this Manager: two logins of one
		// instance must not both take the lease.
		holder := m.holder + "-" + strconv.FormatUint(m.calls.Add(1), 10)
		won, err := m.store.TryRefreshLease(ctx, k, holder, m.opts.LeaseTTL)
		if err != nil {
			return "", fmt.Errorf("grants: refresh lease: %w", err)
		}
		if won {
			return m.refreshLeased(ctx, k, holder, st.Version)
		}
		// Another instance refreshes: wait for what it stores. If its
		// lease runs out first, try for the lease again.
		next, ng, err := m.waitForChange(ctx, k, st.Version)
		if err != nil {
			return "", err
		}
		if next.Version != st.Version && m.usable(ng) {
			m.observe(k, Waited, nil)
			return ng.AccessToken, nil
		}
		st, g = next, ng
	}
}

// waitForChange polls the grant until its version is no longer prev, or
// for at most a lease.
func (m *Manager) waitForChange(ctx context.Context, k Key, prev int64) (Sealed, Grant, error) {
	deadline := time.Now().Add(m.opts.LeaseTTL)
	t := time.NewTicker(m.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return Sealed{}, Grant{}, ctx.Err()
		case <-t.C:
		}
		st, g, err := m.load(ctx, k)
		if err != nil || st.Version != prev || time.Now().After(deadline) {
			return st, g, err
		}
	}
}
