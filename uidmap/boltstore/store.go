package boltstore

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/popbridge/popbridge/internal/grants"
	"github.com/popbridge/popbridge/uidmap"
)

// Store is the embedded uidmap.Store (state.driver: bolt): one bbolt file
// that one popbridge process owns. bbolt's file lock keeps a second process
// out, so the maildrop lock can live in this process's memory, and a
// crashed process's locks die with it.
type Store struct {
	db          *bolt.DB
	locks       *uidmap.LocalLocks
	grantLeases *grants.LocalLeases // grants.go
}

var _ uidmap.Store = (*Store)(nil)

// Layout: bucket "maildrops" → one bucket per Key → "uidvalidity" (4 bytes)
// and bucket "uids" → UID (4 bytes, big-endian, so keys sort by UID) →
// encoded Record.
var (
	bucketMaildrops = []byte("maildrops")
	keyUIDValidity  = []byte("uidvalidity")
	bucketUIDs      = []byte("uids")
)

// ErrBusy is returned by Open when another process holds the file.
var ErrBusy = errors.New("boltstore: the state file is in use by another process")

// Open opens (creating if needed) the store file at path. A file that
// another process holds, or that is not a valid store, is an error: a damaged
// map is never silently replaced by a fresh one.
func Open(path string) (*Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrBusy, path)
	}
	if err != nil {
		return nil, fmt.Errorf("boltstore: open %s: %w", path, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(bucketMaildrops)
		return err
	}); err != nil {
		db.Close()
		return nil, fmt.Errorf("boltstore: init %s: %w", path, err)
	}
	return &Store{db: db, locks: uidmap.NewLocalLocks(), grantLeases: grants.NewLocalLeases()}, nil
}

// boltKey encodes a Key unambiguously: each part length-prefixed.
func boltKey(k uidmap.Key) []byte {
	var b []byte
	for _, part := range []string{k.Upstream, k.User, k.Mailbox} {
		b = binary.AppendUvarint(b, uint64(len(part)))
		b = append(b, part...)
	}
	return b
}

func uidKey(uid uint32) []byte { return binary.BigEndian.AppendUint32(nil, uid) }

// Load implements Store: one read transaction for the whole maildrop.
func (s *Store) Load(ctx context.Context, key uidmap.Key) (*uidmap.Maildrop, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	out := &uidmap.Maildrop{}
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
		// Sized up front: growing a 50,000-record slice copies it over
		// and over. Stats walks the pages without decoding records.
		out.Records = make([]uidmap.Record, 0, uids.Stats().KeyN)
		// Keys are big-endian UIDs: ForEach yields them in ascending order.
		return uids.ForEach(func(k, v []byte) error {
			if len(k) != 4 {
				return fmt.Errorf("corrupt UID key %x", k)
			}
			r, err := decodeRecord(v)
			if err != nil {
				return fmt.Errorf("UID %d: %w", binary.BigEndian.Uint32(k), err)
			}
			r.UID = binary.BigEndian.Uint32(k)
			out.Records = append(out.Records, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("uidmap: load: %w", err)
	}
	return out, nil
}

// Apply implements Store in one write transaction.
func (s *Store) Apply(ctx context.Context, key uidmap.Key, ch *uidmap.Change) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		drop, err := tx.Bucket(bucketMaildrops).CreateBucketIfNotExists(boltKey(key))
		if err != nil {
			return err
		}
		stored := uint32(0)
		if v := drop.Get(keyUIDValidity); len(v) == 4 {
			stored = binary.BigEndian.Uint32(v)
		}
		if stored != ch.Expect {
			return fmt.Errorf("uidmap: stored UIDVALIDITY %d, change computed from %d: %w", stored, ch.Expect, uidmap.ErrStale)
		}
		reset := stored != ch.UIDValidity
		if reset {
			if err := drop.DeleteBucket(bucketUIDs); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
			if err := drop.Put(keyUIDValidity, binary.BigEndian.AppendUint32(nil, ch.UIDValidity)); err != nil {
				return err
			}
		}
		uids, err := drop.CreateBucketIfNotExists(bucketUIDs)
		if err != nil {
			return err
		}
		// New UIDs arrive in ascending order: let bbolt pack pages densely.
		uids.FillPercent = 0.9
		for _, uid := range ch.Delete {
			if err := uids.Delete(uidKey(uid)); err != nil {
				return err
			}
		}
		// bbolt keeps references to keys and values until the transaction
		// ends: one arena, never overwritten, instead of a reused buffer.
		var arena []byte
		for _, r := range ch.Add {
			k := uidKey(r.UID)
			if !reset && uids.Get(k) != nil {
				return fmt.Errorf("uidmap: UID %d was named by another session: %w", r.UID, uidmap.ErrStale)
			}
			start := len(arena)
			arena = encodeRecord(arena, r)
			if err := uids.Put(k, arena[start:len(arena):len(arena)]); err != nil {
				return err
			}
		}
		for _, r := range ch.Put {
			start := len(arena)
			arena = encodeRecord(arena, r)
			if err := uids.Put(uidKey(r.UID), arena[start:len(arena):len(arena)]); err != nil {
				return err
			}
		}
		return nil
	})
}

// Reset implements Store.
func (s *Store) Reset(ctx context.Context, key uidmap.Key) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketMaildrops).DeleteBucket(boltKey(key))
		if errors.Is(err, bolt.ErrBucketNotFound) {
			return nil
		}
		return err
	})
}

// Lock implements Store.
func (s *Store) Lock(_ context.Context, key uidmap.Key, owner string) (*uidmap.Lease, error) {
	return s.locks.Lock(key, owner)
}

// Close implements Store.
func (s *Store) Close() error { return s.db.Close() }

// Record encoding, version 1: version, flags, uvarint size, varint date,
// then UIDL, Message-ID hash and header hash, each uvarint-length-prefixed.
const (
	recordV1   = 1
	flagHidden = 1 << 0
)

func encodeRecord(b []byte, r uidmap.Record) []byte {
	var flags byte
	if r.Hidden {
		flags |= flagHidden
	}
	b = append(b, recordV1, flags)
	b = binary.AppendUvarint(b, uint64(max(r.FP.Size, 0)))
	b = binary.AppendVarint(b, r.FP.Date)
	for _, s := range []string{r.UIDL, r.FP.MessageID, r.FP.HeaderHash} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return b
}

var errCorruptRecord = errors.New("corrupt record")

func decodeRecord(b []byte) (uidmap.Record, error) {
	var r uidmap.Record
	if len(b) < 2 || b[0] != recordV1 {
		return r, errCorruptRecord
	}
	r.Hidden = b[1]&flagHidden != 0
	b = b[2:]
	size, n := binary.Uvarint(b)
	if n <= 0 {
		return r, errCorruptRecord
	}
	b = b[n:]
	date, n := binary.Varint(b)
	if n <= 0 {
		return r, errCorruptRecord
	}
	b = b[n:]
	r.FP.Size, r.FP.Date = int64(size), date
	// One string for the three fields: one allocation per record, not three.
	str, off := string(b), 0
	for _, dst := range []*string{&r.UIDL, &r.FP.MessageID, &r.FP.HeaderHash} {
		l, n := binary.Uvarint(b[off:])
		if n <= 0 || uint64(len(b)-off-n) < l {
			return r, errCorruptRecord
		}
		off += n
		*dst = str[off : off+int(l)]
		off += int(l)
	}
	if r.UIDL == "" {
		return r, errCorruptRecord
	}
	return r, nil
}
