package uidmap

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// BoltStore is the embedded Store (state.driver: bolt): one bbolt file that
// one popbridge process owns. bbolt's file lock keeps a second process out,
// so the maildrop lock can live in this process's memory.
type BoltStore struct {
	db    *bolt.DB
	locks *MemoryStore // only its lock table is used
}

var (
	bucketMaildrops = []byte("maildrops")
	keyUIDValidity  = []byte("uidvalidity")
	bucketUIDs      = []byte("uids")
)

// OpenBolt opens (creating if needed) the store file at path. A file that
// another process holds, or that is not a valid store, is an error: a damaged
// map is never silently replaced by a fresh one.
func OpenBolt(path string) (*BoltStore, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("uidmap: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketMaildrops)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("uidmap: init %s: %w", path, err)
	}
	return &BoltStore{db: db, locks: NewMemoryStore()}, nil
}

// boltKey encodes a Key unambiguously: each part length-prefixed.
func boltKey(k Key) []byte {
	var b []byte
	for _, part := range []string{k.Upstream, k.User, k.Mailbox} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}

func uidKey(uid uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, uid)
}

// Load implements Store: one read transaction for the whole maildrop.
func (s *BoltStore) Load(ctx context.Context, key Key) (*Maildrop, error) {
	out := &Maildrop{UIDLs: make(map[uint32]string)}
	err := s.db.View(func(tx *bolt.Tx) error {
		drop := tx.Bucket(bucketMaildrops).Bucket(boltKey(key))
		if drop == nil {
			return nil
		}
		if v := drop.Get(keyUIDValidity); len(v) == 4 {
			out.UIDValidity = binary.BigEndian.Uint32(v)
		}
		uids := drop.Bucket(bucketUIDs)
		if uids == nil {
			return nil
		}
		return uids.ForEach(func(k, v []byte) error {
			if len(k) != 4 {
				return fmt.Errorf("corrupt UID key %x", k)
			}
			out.UIDLs[binary.BigEndian.Uint32(k)] = string(v)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("uidmap: load: %w", err)
	}
	return out, ctx.Err()
}

// Assign implements Store in one write transaction.
func (s *BoltStore) Assign(ctx context.Context, key Key, uidValidity uint32, entries []Entry) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		drop, err := tx.Bucket(bucketMaildrops).CreateBucketIfNotExists(boltKey(key))
		if err != nil {
			return err
		}
		if v := drop.Get(keyUIDValidity); len(v) != 4 || binary.BigEndian.Uint32(v) != uidValidity {
			if err := drop.DeleteBucket(bucketUIDs); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
			if err := drop.Put(keyUIDValidity, binary.BigEndian.AppendUint32(nil, uidValidity)); err != nil {
				return err
			}
		}
		uids, err := drop.CreateBucketIfNotExists(bucketUIDs)
		if err != nil {
			return err
		}
		// Keys arrive in ascending UID order from a snapshot: let bbolt
		// pack its pages densely.
		uids.FillPercent = 0.9
		for _, e := range entries {
			if err := uids.Put(uidKey(e.UID), []byte(e.UIDL)); err != nil {
				return err
			}
		}
		return nil
	})
}

// Lock implements Store.
func (s *BoltStore) Lock(ctx context.Context, key Key, owner string) (func(), error) {
	return s.locks.Lock(ctx, key, owner)
}

// Close implements Store.
func (s *BoltStore) Close() error { return s.db.Close() }
