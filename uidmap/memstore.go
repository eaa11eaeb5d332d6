package uidmap

import (
	"context"
	"sync"
)

// MemoryStore is a Store held in process memory: state is lost on exit.
// It serves the demo and unit tests, and is the reference the persistent
// stores are tested against.
type MemoryStore struct {
	mu    sync.Mutex
	drops map[Key]*Maildrop
	locks map[Key]string
}

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore() *MemoryStore {
	return &MemoryStore{drops: make(map[Key]*Maildrop), locks: make(map[Key]string)}
}

// Load implements Store.
func (s *MemoryStore) Load(_ context.Context, key Key) (*Maildrop, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := &Maildrop{UIDLs: make(map[uint32]string)}
	if d := s.drops[key]; d != nil {
		out.UIDValidity = d.UIDValidity
		for uid, uidl := range d.UIDLs {
			out.UIDLs[uid] = uidl
		}
	}
	return out, nil
}

// Assign implements Store.
func (s *MemoryStore) Assign(_ context.Context, key Key, uidValidity uint32, entries []Entry) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.drops[key]
	if d == nil || d.UIDValidity != uidValidity {
		d = &Maildrop{UIDValidity: uidValidity, UIDLs: make(map[uint32]string, len(entries))}
		s.drops[key] = d
	}
	for _, e := range entries {
		d.UIDLs[e.UID] = e.UIDL
	}
	return nil
}

// Lock implements Store.
func (s *MemoryStore) Lock(_ context.Context, key Key, owner string) (func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, held := s.locks[key]; held {
		return nil, ErrLocked
	}
	s.locks[key] = owner
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.locks[key] == owner {
				delete(s.locks, key)
			}
		})
	}, nil
}

// Close implements Store.
func (s *MemoryStore) Close() error { return nil }
