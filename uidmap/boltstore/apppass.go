package boltstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/popbridge/popbridge/internal/apppass"
)

// App passwords: bucket "app_passwords" → one bucket per user (userKey) →
// ID → the JSON of apppass.Password (a hash, never the password).
var bucketAppPasswords = []byte("app_passwords")

var _ apppass.Store = (*Store)(nil)

func appKey(k apppass.Key) []byte { return userKey(k.Upstream, k.User) }

// userPasswords returns the user's bucket, nil if it does not exist.
func userPasswords(tx *bolt.Tx, k apppass.Key) *bolt.Bucket {
	if b := tx.Bucket(bucketAppPasswords); b != nil {
		return b.Bucket(appKey(k))
	}
	return nil
}

// AddAppPassword implements apppass.Store.
func (s *Store) AddAppPassword(ctx context.Context, k apppass.Key, p apppass.Password) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("boltstore: app password: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		all, err := tx.CreateBucketIfNotExists(bucketAppPasswords)
		if err != nil {
			return err
		}
		b, err := all.CreateBucketIfNotExists(appKey(k))
		if err != nil {
			return err
		}
		if b.Get([]byte(p.ID)) != nil {
			return fmt.Errorf("app password %s exists", p.ID)
		}
		return b.Put([]byte(p.ID), v)
	})
	if err != nil {
		return fmt.Errorf("boltstore: add app password: %w", err)
	}
	return nil
}

// AppPasswords implements apppass.Store.
func (s *Store) AppPasswords(ctx context.Context, k apppass.Key) ([]apppass.Password, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var out []apppass.Password
	err := s.db.View(func(tx *bolt.Tx) error {
		b := userPasswords(tx, k)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			var p apppass.Password
			if err := json.Unmarshal(v, &p); err != nil {
				return err
			}
			out = append(out, p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: app passwords: %w", err)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	return out, nil
}

// AppPassword implements apppass.Store.
func (s *Store) AppPassword(ctx context.Context, k apppass.Key, id string) (apppass.Password, error) {
	if err := ctx.Err(); err != nil {
		return apppass.Password{}, err
	}
	var p apppass.Password
	err := s.db.View(func(tx *bolt.Tx) error {
		b := userPasswords(tx, k)
		if b == nil {
			return apppass.ErrNotFound
		}
		v := b.Get([]byte(id))
		if v == nil {
			return apppass.ErrNotFound
		}
		return json.Unmarshal(v, &p)
	})
	if err != nil && !errors.Is(err, apppass.ErrNotFound) {
		err = fmt.Errorf("boltstore: app password: %w", err)
	}
	return p, err
}

// DeleteAppPassword implements apppass.Store.
func (s *Store) DeleteAppPassword(ctx context.Context, k apppass.Key, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := userPasswords(tx, k)
		if b == nil || b.Get([]byte(id)) == nil {
			return apppass.ErrNotFound
		}
		return b.Delete([]byte(id))
	})
	if err != nil && !errors.Is(err, apppass.ErrNotFound) {
		err = fmt.Errorf("boltstore: delete app password: %w", err)
	}
	return err
}

// TouchAppPassword implements apppass.Store.
func (s *Store) TouchAppPassword(ctx context.Context, k apppass.Key, id string, at time.Time) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := userPasswords(tx, k)
		if b == nil {
			return apppass.ErrNotFound
		}
		v := b.Get([]byte(id))
		if v == nil {
			return apppass.ErrNotFound
		}
		var p apppass.Password
		if err := json.Unmarshal(v, &p); err != nil {
			return err
		}
		p.LastUsed = at
		nv, err := json.Marshal(p)
		if err != nil {
			return err
		}
		return b.Put([]byte(id), nv)
	})
	if err != nil && !errors.Is(err, apppass.ErrNotFound) {
		err = fmt.Errorf("boltstore: app password: %w", err)
	}
	return err
}

// AppPasswordUsers lists every user with app passwords, for `state migrate`.
func (s *Store) AppPasswordUsers(ctx context.Context) ([]apppass.Key, error) {
	var keys []apppass.Key
	err := s.db.View(func(tx *bolt.Tx) error {
		all := tx.Bucket(bucketAppPasswords)
		if all == nil {
			return nil
		}
		return all.ForEachBucket(func(k []byte) error {
			up, user, err := parseUserKey(k)
			keys = append(keys, apppass.Key{Upstream: up, User: user})
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: list app passwords: %w", err)
	}
	return keys, ctx.Err()
}
