package grants

import (
	"context"
	"errors"
	"time"
)

// ErrNoGrant means the user has no grant for the upstream: not enrolled.
var ErrNoGrant = errors.New("grants: no grant")

// ErrConflict is returned by Store.SwapGrant when the grant changed since
// it was read.
var ErrConflict = errors.New("grants: the grant changed meanwhile")

// Sealed is a grant as the store keeps it: bytes it cannot read, and a
// version that every write increases.
type Sealed struct {
	Data    []byte
	Version int64
}

// Store keeps sealed grants and their refresh leases: uidmap/boltstore
// (one process) and uidmap/pgstore (shared by instances). grantstest is
// the suite each passes.
type Store interface {
	// LoadGrant returns the key's grant, or ErrNoGrant.
	LoadGrant(ctx context.Context, k Key) (Sealed, error)
	// SwapGrant stores data as the key's grant if its version is still
	// prev (0: there is no grant yet), and returns the new version; or
	// ErrConflict, changing nothing.
	SwapGrant(ctx context.Context, k Key, prev int64, data []byte) (int64, error)
	// DeleteGrant removes the key's grant; no grant is not an error.
	DeleteGrant(ctx context.Context, k Key) error
	// TryRefreshLease takes the key's refresh lease for holder until ttl
	// from now, unless another holder's lease is still running: false
	// then. A holder may take its own lease again (extending it).
	TryRefreshLease(ctx context.Context, k Key, holder string, ttl time.Duration) (bool, error)
	// ReleaseRefreshLease ends holder's lease early; another holder's
	// lease is left alone.
	ReleaseRefreshLease(ctx context.Context, k Key, holder string) error
}
