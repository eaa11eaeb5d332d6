package pgstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/uidmap"
)

// Logins returns the user names, in order, of the maildrops of upstream
// and mailbox whose user name begins with prefix: a user's devices
// ("alice#"), for popbridge state show. It is not part of uidmap.Store.
func (s *Store) Logins(ctx context.Context, upstream, mailbox, prefix string) ([]string, error) {
	// LIKE with the prefix's own wildcards escaped; the unique index on
	// (upstream, username, mailbox) serves the range.
	like := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(prefix) + "%"
	rows, err := s.pool.Query(ctx, `SELECT username FROM popbridge_maildrops
		WHERE upstream = $1 AND mailbox = $2 AND username LIKE $3 ESCAPE '\' ORDER BY username`, upstream, mailbox, like)
	if err != nil {
		return nil, fmt.Errorf("pgstore: logins: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var u string
		if err := rows.Scan(&u); err != nil {
			return nil, fmt.Errorf("pgstore: logins: %w", err)
		}
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("pgstore: logins: %w", err)
	}
	return out, nil
}

// LastLogin returns how long ago the maildrop view key last logged in
// (RecordLogin), by the database's clock; false if it never did. With it,
// limits.login_delay holds a client back on every instance. It is not part
// of uidmap.Store.
func (s *Store) LastLogin(ctx context.Context, key uidmap.Key) (time.Duration, bool, error) {
	var secs float64
	err := s.pool.QueryRow(ctx, `SELECT extract(epoch FROM now() - at)::float8 FROM popbridge_logins
		WHERE upstream = $1 AND username = $2 AND mailbox = $3`, key.Upstream, key.User, key.Mailbox).Scan(&secs)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("pgstore: last login: %w", err)
	}
	return time.Duration(secs * float64(time.Second)), true, nil
}

// RecordLogin records a login of the maildrop view key, now.
func (s *Store) RecordLogin(ctx context.Context, key uidmap.Key) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO popbridge_logins (upstream, username, mailbox, at) VALUES ($1, $2, $3, now())
		ON CONFLICT (upstream, username, mailbox) DO UPDATE SET at = excluded.at`, key.Upstream, key.User, key.Mailbox)
	if err != nil {
		return fmt.Errorf("pgstore: record login: %w", err)
	}
	return nil
}
