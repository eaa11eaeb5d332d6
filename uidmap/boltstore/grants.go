package boltstore

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/popbridge/popbridge/internal/grants"
)

// Grants: bucket "grants" → grantKey → version (8 bytes, big-endian, from
// the bucket's sequence) and the sealed grant. The refresh leases live in memory (grants.LocalLeases):
// this process owns the file.
var bucketGrants = []byte("grants")

var _ grants.Store = (*Store)(nil)

func grantKey(k grants.Key) []byte { return userKey(k.Upstream, k.User) }

// userKey names one user at one upstream: each part length-prefixed.
func userKey(upstream, user string) []byte {
	var b []byte
	for _, part := range []string{upstream, user} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}

// LoadGrant implements grants.Store.
func (s *Store) LoadGrant(ctx context.Context, k grants.Key) (grants.Sealed, error) {
	if err := ctx.Err(); err != nil {
		return grants.Sealed{}, err
	}
	var out grants.Sealed
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGrants)
		if b == nil {
			return grants.ErrNoGrant
		}
		v := b.Get(grantKey(k))
		if v == nil {
			return grants.ErrNoGrant
		}
		if len(v) < 8 {
			return fmt.Errorf("boltstore: grant record of %d bytes", len(v))
		}
		out = grants.Sealed{Version: int64(binary.BigEndian.Uint64(v)), Data: append([]byte(nil), v[8:]...)}
		return nil
	})
	return out, err
}

// SwapGrant implements grants.Store: bolt's one writer at a time makes the
// compare and the swap one step.
func (s *Store) SwapGrant(ctx context.Context, k grants.Key, prev int64, data []byte) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	var next int64
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketGrants)
		if err != nil {
			return err
		}
		var cur int64
		if v := b.Get(grantKey(k)); len(v) >= 8 {
			cur = int64(binary.BigEndian.Uint64(v))
		}
		if cur != prev {
			return grants.ErrConflict
		}
		// Versions from the bucket's sequence, never reused: a grant
		// deleted and enrolled again does not take a version that a
		// writer still holding the old one could match.
		seq, err := b.NextSequence()
		if err != nil {
			return err
		}
		next = int64(seq)
		return b.Put(grantKey(k), append(binary.BigEndian.AppendUint64(nil, uint64(next)), data...))
	})
	if err != nil {
		return 0, fmt.Errorf("boltstore: store grant: %w", err)
	}
	return next, nil
}

// DeleteGrant implements grants.Store.
func (s *Store) DeleteGrant(ctx context.Context, k grants.Key) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if b := tx.Bucket(bucketGrants); b != nil {
			return b.Delete(grantKey(k))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("boltstore: delete grant: %w", err)
	}
	return nil
}

// TryRefreshLease implements grants.Store.
func (s *Store) TryRefreshLease(ctx context.Context, k grants.Key, holder string, ttl time.Duration) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	return s.grantLeases.Try(k, holder, ttl), nil
}

// ReleaseRefreshLease implements grants.Store.
func (s *Store) ReleaseRefreshLease(ctx context.Context, k grants.Key, holder string) error {
	s.grantLeases.Release(k, holder)
	return nil
}

// Grants lists every user with a grant, for `state migrate`.
func (s *Store) Grants(ctx context.Context) ([]grants.Key, error) {
	var keys []grants.Key
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketGrants)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, _ []byte) error {
			up, user, err := parseUserKey(k)
			keys = append(keys, grants.Key{Upstream: up, User: user})
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: list grants: %w", err)
	}
	return keys, ctx.Err()
}

// parseUserKey is userKey's inverse.
func parseUserKey(b []byte) (upstream, user string, err error) {
	var parts [2]string
	for i := range parts {
		n, w := binary.Uvarint(b)
		if w <= 0 || uint64(len(b)-w) < n {
			return "", "", fmt.Errorf("malformed key %q", b)
		}
		parts[i], b = string(b[w:w+int(n)]), b[w+int(n):]
	}
	if len(b) != 0 {
		return "", "", fmt.Errorf("malformed key: %d bytes left", len(b))
	}
	return parts[0], parts[1], nil
}
