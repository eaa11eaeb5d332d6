package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/popbridge/popbridge/uidmap"
)

// Maildrops lists every maildrop the store holds state for, in the order
// of their encoded keys. It is not part of Store: it serves copying an
// embedded store elsewhere (popbridge state migrate).
func (s *Store) Maildrops(ctx context.Context) ([]uidmap.Key, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var keys []uidmap.Key
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMaildrops).ForEachBucket(func(k []byte) error {
			key, err := parseBoltKey(k)
			if err != nil {
				return fmt.Errorf("maildrop key %x: %w", k, err)
			}
			keys = append(keys, key)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: list maildrops: %w", err)
	}
	return keys, nil
}

var errCorruptKey = errors.New("corrupt key")

// parseBoltKey undoes boltKey.
func parseBoltKey(b []byte) (uidmap.Key, error) {
	var parts [3]string
	for i := range parts {
		l, n := binary.Uvarint(b)
		if n <= 0 || uint64(len(b)-n) < l {
			return uidmap.Key{}, errCorruptKey
		}
		parts[i] = string(b[n : n+int(l)])
		b = b[n+int(l):]
	}
	if len(b) != 0 {
		return uidmap.Key{}, errCorruptKey
	}
	return uidmap.Key{Upstream: parts[0], User: parts[1], Mailbox: parts[2]}, nil
}
