package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/internal/apppass"
)

var _ apppass.Store = (*Store)(nil)

// AddAppPassword implements apppass.Store.
func (s *Store) AddAppPassword(ctx context.Context, k apppass.Key, p apppass.Password) error {
	if _, err := s.pool.Exec(ctx, `INSERT INTO popbridge_app_passwords (upstream, username, id, label, hash, created_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, k.Upstream, k.User, p.ID, p.Label, p.Hash, p.Created); err != nil {
		return fmt.Errorf("pgstore: add app password: %w", err)
	}
	return nil
}

const appPasswordColumns = `id, label, hash, created_at, last_used`

func scanAppPassword(row pgx.Row) (apppass.Password, error) {
	var p apppass.Password
	var lastUsed *time.Time // NULL: never used
	err := row.Scan(&p.ID, &p.Label, &p.Hash, &p.Created, &lastUsed)
	p.Created = p.Created.UTC()
	if lastUsed != nil {
		p.LastUsed = lastUsed.UTC()
	}
	return p, err
}

// AppPasswords implements apppass.Store.
func (s *Store) AppPasswords(ctx context.Context, k apppass.Key) ([]apppass.Password, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+appPasswordColumns+` FROM popbridge_app_passwords
		WHERE upstream = $1 AND username = $2 ORDER BY created_at, id`, k.Upstream, k.User)
	if err != nil {
		return nil, fmt.Errorf("pgstore: app passwords: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (apppass.Password, error) { return scanAppPassword(r) })
	if err != nil {
		return nil, fmt.Errorf("pgstore: app passwords: %w", err)
	}
	return out, nil
}

// AppPassword implements apppass.Store.
func (s *Store) AppPassword(ctx context.Context, k apppass.Key, id string) (apppass.Password, error) {
	p, err := scanAppPassword(s.pool.QueryRow(ctx, `SELECT `+appPasswordColumns+` FROM popbridge_app_passwords
		WHERE upstream = $1 AND username = $2 AND id = $3`, k.Upstream, k.User, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return apppass.Password{}, apppass.ErrNotFound
	}
	if err != nil {
		return apppass.Password{}, fmt.Errorf("pgstore: app password: %w", err)
	}
	return p, nil
}

// DeleteAppPassword implements apppass.Store.
func (s *Store) DeleteAppPassword(ctx context.Context, k apppass.Key, id string) error {
	tag, err := s.pool.Exec(ctx, `DELETE FROM popbridge_app_passwords WHERE upstream = $1 AND username = $2 AND id = $3`,
		k.Upstream, k.User, id)
	if err != nil {
		return fmt.Errorf("pgstore: delete app password: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return apppass.ErrNotFound
	}
	return nil
}

// TouchAppPassword implements apppass.Store.
func (s *Store) TouchAppPassword(ctx context.Context, k apppass.Key, id string, at time.Time) error {
	tag, err := s.pool.Exec(ctx, `UPDATE popbridge_app_passwords SET last_used = $4 WHERE upstream = $1 AND username = $2 AND id = $3`,
		k.Upstream, k.User, id, at)
	if err != nil {
		return fmt.Errorf("pgstore: app password: %w", err)
	}
	if tag.RowsAffected() == 0 {
		return apppass.ErrNotFound
	}
	return nil
}
