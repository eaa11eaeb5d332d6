package boltstore

import (
	"context"
	"sort"
	"strings"
)

// Logins returns the user names, in order, of the maildrops of upstream
// and mailbox whose user name begins with prefix: a user's devices
// ("alice#"), for popbridge state show. It is not part of uidmap.Store.
func (s *Store) Logins(ctx context.Context, upstream, mailbox, prefix string) ([]string, error) {
	keys, err := s.Maildrops(ctx)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, k := range keys {
		if k.Upstream == upstream && k.Mailbox == mailbox && strings.HasPrefix(k.User, prefix) {
			out = append(out, k.User)
		}
	}
	sort.Strings(out)
	return out, nil
}
