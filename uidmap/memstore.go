package uidmap

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sync"
)

// MemoryStore is a Store held in process memory: state is lost on exit.
// It serves the demo and unit tests, and is the reference the persistent
// stores are tested against.
type MemoryStore struct {
	mu    sync.Mutex
	drops map[Key]*memDrop
	locks *LocalLocks
}

type memDrop struct {
	uidValidity uint32
	records     map[uint32]Record
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{drops: make(map[Key]*memDrop), locks: NewLocalLocks()}
}

// Load implements Store.
func (s *MemoryStore) Load(_ context.Context, key Key) (*Maildrop, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &Maildrop{}
	if d := s.drops[key]; d != nil {
		out.UIDValidity = d.uidValidity
		out.Records = make([]Record, 0, len(d.records))
		for _, r := range d.records {
			out.Records = append(out.Records, r)
		}
		slices.SortFunc(out.Records, func(a, b Record) int { return cmp.Compare(a.UID, b.UID) })
	}
	return out, nil
}

// Apply implements Store.
func (s *MemoryStore) Apply(_ context.Context, key Key, ch *Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops[key]
	stored := uint32(0)
	if d != nil {
		stored = d.uidValidity
	}
	if stored != ch.Expect {
		return fmt.Errorf("uidmap: stored UIDVALIDITY %d, change computed from %d: %w", stored, ch.Expect, ErrStale)
	}
	if d != nil && d.uidValidity == ch.UIDValidity {
		for _, r := range ch.Add {
			if _, ok := d.records[r.UID]; ok {
				return fmt.Errorf("uidmap: UID %d was named by another session: %w", r.UID, ErrStale)
			}
		}
	} else {
		d = &memDrop{uidValidity: ch.UIDValidity, records: make(map[uint32]Record, len(ch.Add)+len(ch.Put))}
		s.drops[key] = d
	}
	for _, uid := range ch.Delete {
		delete(d.records, uid)
	}
	for _, r := range ch.Add {
		d.records[r.UID] = r
	}
	for _, r := range ch.Put {
		d.records[r.UID] = r
	}
	return nil
}

// Reset implements Store.
func (s *MemoryStore) Reset(_ context.Context, key Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.drops, key)
	return nil
}

// Lock implements Store.
func (s *MemoryStore) Lock(_ context.Context, key Key, owner string) (*Lease, error) {
	return s.locks.Lock(key, owner)
}

// Close implements Store.
func (s *MemoryStore) Close() error { return nil }

// LocalLocks is the maildrop lock of a store owned by one process: the
// process's own sessions are all there is to exclude. For Store
// implementations.
type LocalLocks struct {
	mu    sync.Mutex
	owner map[Key]string
}

// NewLocalLocks returns an empty lock table.
func NewLocalLocks() *LocalLocks { return &LocalLocks{owner: make(map[Key]string)} }

// Lock takes key's lock for owner, or fails with ErrLocked. Within one
// process a lease is never lost.
func (t *LocalLocks) Lock(key Key, owner string) (*Lease, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, held := t.owner[key]; held {
		return nil, ErrLocked
	}
	t.owner[key] = owner
	return NewLease(func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.owner[key] == owner {
			delete(t.owner, key)
		}
	}), nil
}
