package uidmap

import (
	"context"
	"maps"
	"sync"
)

// MemoryStore is a Store held in process memory: state is lost on exit.
// It serves the demo and unit tests, and is the reference the persistent
// stores are tested against.
type MemoryStore struct {
	mu    sync.Mutex
	drops map[Key]*Maildrop
	locks *lockTable
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{drops: make(map[Key]*Maildrop), locks: newLockTable()}
}

// Load implements Store.
func (s *MemoryStore) Load(_ context.Context, key Key) (*Maildrop, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &Maildrop{Records: make(map[uint32]Record)}
	if d := s.drops[key]; d != nil {
		out.UIDValidity = d.UIDValidity
		maps.Copy(out.Records, d.Records)
	}
	return out, nil
}

// Apply implements Store.
func (s *MemoryStore) Apply(_ context.Context, key Key, ch *Change) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops[key]
	if d == nil || d.UIDValidity != ch.UIDValidity {
		d = &Maildrop{UIDValidity: ch.UIDValidity, Records: make(map[uint32]Record, len(ch.Put))}
		s.drops[key] = d
	}
	for _, uid := range ch.Delete {
		delete(d.Records, uid)
	}
	for _, r := range ch.Put {
		d.Records[r.UID] = r
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
func (s *MemoryStore) Lock(_ context.Context, key Key, owner string) (func(), error) {
	return s.locks.lock(key, owner)
}

// Close implements Store.
func (s *MemoryStore) Close() error { return nil }

// lockTable is the maildrop lock of a store owned by one process: the
// process's own sessions are all there is to exclude.
type lockTable struct {
	mu    sync.Mutex
	owner map[Key]string
}

func newLockTable() *lockTable { return &lockTable{owner: make(map[Key]string)} }

func (t *lockTable) lock(key Key, owner string) (func(), error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, held := t.owner[key]; held {
		return nil, ErrLocked
	}
	t.owner[key] = owner
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			defer t.mu.Unlock()
			if t.owner[key] == owner {
				delete(t.owner, key)
			}
		})
	}, nil
}
