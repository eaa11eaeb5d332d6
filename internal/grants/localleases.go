package grants

import (
	"sync"
	"time"
)

// LocalLeases are refresh leases held in this process's memory, for a
// Store that one process owns (the bolt file): nobody else can hold one.
type LocalLeases struct {
	mu     sync.Mutex
	leases map[Key]localLease
}

type localLease struct {
	holder string
	until  time.Time
}

// NewLocalLeases returns an empty lease table.
func NewLocalLeases() *LocalLeases { return &LocalLeases{leases: make(map[Key]localLease)} }

// Try is Store.TryRefreshLease.
func (l *LocalLeases) Try(k Key, holder string, ttl time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if cur, ok := l.leases[k]; ok && cur.holder != holder && now.Before(cur.until) {
		return false
	}
	l.leases[k] = localLease{holder: holder, until: now.Add(ttl)}
	return true
}

// Release is Store.ReleaseRefreshLease.
func (l *LocalLeases) Release(k Key, holder string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if cur, ok := l.leases[k]; ok && cur.holder == holder {
		delete(l.leases, k)
	}
}
