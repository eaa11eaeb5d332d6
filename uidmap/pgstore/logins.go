package pgstore

import (
	"context"
	"fmt"
	"strings"
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
