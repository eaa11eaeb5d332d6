package apppass

import (
	"context"
	"fmt"
)

// Copy copies the app passwords (their hashes) of users from src to dst;
// a password whose ID the user has in dst already is left alone. It
// returns how many were copied.
func Copy(ctx context.Context, dst, src Store, users []Key) (int, error) {
	n := 0
	for _, k := range users {
		list, err := src.AppPasswords(ctx, k)
		if err != nil {
			return n, err
		}
		have, err := dst.AppPasswords(ctx, k)
		if err != nil {
			return n, err
		}
		ids := make(map[string]bool, len(have))
		for _, p := range have {
			ids[p.ID] = true
		}
		for _, p := range list {
			if ids[p.ID] {
				continue
			}
			if err := dst.AddAppPassword(ctx, k, p); err != nil {
				return n, fmt.Errorf("apppass: copy %s's %s: %w", k.User, p.ID, err)
			}
			if !p.LastUsed.IsZero() {
				dst.TouchAppPassword(ctx, k, p.ID, p.LastUsed)
			}
			n++
		}
	}
	return n, nil
}
