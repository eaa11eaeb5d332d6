package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/internal/grants"
)

var _ grants.Store = (*Store)(nil)

// LoadGrant implements grants.Store.
func (s *Store) LoadGrant(ctx context.Context, k grants.Key) (grants.Sealed, error) {
	var out grants.Sealed
	err := s.pool.QueryRow(ctx, `SELECT version, sealed FROM popbridge_grants WHERE upstream = $1 AND username = $2`,
		k.Upstream, k.User).Scan(&out.Version, &out.Data)
	if errors.Is(err, pgx.ErrNoRows) {
		return grants.Sealed{}, grants.ErrNoGrant
	}
	if err != nil {
		return grants.Sealed{}, fmt.Errorf("pgstore: load grant: %w", err)
	}
	return out, nil
}

// SwapGrant implements grants.Store in one statement: an INSERT that
// yields to an existing row (prev 0), or an UPDATE of the row still at
// prev. Either returns no row when another writer came first.
func (s *Store) SwapGrant(ctx context.Context, k grants.Key, prev int64, data []byte) (int64, error) {
	var next int64
	var err error
	if prev == 0 {
		err = s.pool.QueryRow(ctx, `INSERT INTO popbridge_grants (upstream, username, version, sealed)
			VALUES ($1, $2, nextval('popbridge_grant_versions'), $3)
			ON CONFLICT (upstream, username) DO NOTHING RETURNING version`,
			k.Upstream, k.User, data).Scan(&next)
	} else {
		err = s.pool.QueryRow(ctx, `UPDATE popbridge_grants SET version = nextval('popbridge_grant_versions'), sealed = $4
			WHERE upstream = $1 AND username = $2 AND version = $3 RETURNING version`,
			k.Upstream, k.User, prev, data).Scan(&next)
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, grants.ErrConflict
	}
	if err != nil {
		return 0, fmt.Errorf("pgstore: store grant: %w", err)
	}
	return next, nil
}

// DeleteGrant implements grants.Store.
func (s *Store) DeleteGrant(ctx context.Context, k grants.Key) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM popbridge_grants WHERE upstream = $1 AND username = $2`, k.Upstream, k.User); err != nil {
		return fmt.Errorf("pgstore: delete grant: %w", err)
	}
	return nil
}

// refreshLeaseSQL takes a grant's refresh lease: a new row, an expired
// one, or the holder's own; a live lease of another holder is left alone
// and nothing returned. As with lockSQL, the conflicting row is locked
// while the WHERE is checked, and expiry is the database's clock.
const refreshLeaseSQL = `
INSERT INTO popbridge_grant_leases AS l (upstream, username, holder, expires_at)
VALUES ($1, $2, $3, now() + make_interval(secs => $4))
ON CONFLICT (upstream, username) DO UPDATE
	SET holder = excluded.holder, expires_at = excluded.expires_at
	WHERE l.expires_at < now() OR l.holder = excluded.holder
RETURNING holder`

// TryRefreshLease implements grants.Store.
func (s *Store) TryRefreshLease(ctx context.Context, k grants.Key, holder string, ttl time.Duration) (bool, error) {
	var got string
	err := s.pool.QueryRow(ctx, refreshLeaseSQL, k.Upstream, k.User, holder, ttl.Seconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("pgstore: refresh lease: %w", err)
	}
	return true, nil
}

// ReleaseRefreshLease implements grants.Store.
func (s *Store) ReleaseRefreshLease(ctx context.Context, k grants.Key, holder string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM popbridge_grant_leases WHERE upstream = $1 AND username = $2 AND holder = $3`,
		k.Upstream, k.User, holder); err != nil {
		return fmt.Errorf("pgstore: release refresh lease: %w", err)
	}
	return nil
}
