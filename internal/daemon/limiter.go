package daemon

import (
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/popbridge/popbridge/pop3"
)

// loginLimiter limits failed logins per client address
// (limits.auth_failures_per_ip per minute) with a token bucket per address:
// each failure spends a token, and an address without tokens is answered
// -ERR [LOGIN-DELAY] before its credentials reach the upstream, so password
// guessing through popbridge cannot trip the upstream's own throttling.
type loginLimiter struct {
	perMinute int
	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
	now       func() time.Time
}

type bucket struct {
	lim  *rate.Limiter
	last time.Time
}

var _ pop3.LoginLimiter = (*loginLimiter)(nil)

// newLoginLimiter allows perMinute failed logins per address per minute,
// refilled evenly, on the clock now; perMinute <= 0 disables it (nil).
func newLoginLimiter(perMinute int, now func() time.Time) *loginLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &loginLimiter{perMinute: perMinute, buckets: make(map[string]*bucket), now: now}
}

func addrKey(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	return a.String()
}

func (l *loginLimiter) get(a net.Addr) *bucket {
	now := l.now()
	k := addrKey(a)
	b := l.buckets[k]
	if b == nil {
		b = &bucket{lim: rate.NewLimiter(rate.Limit(float64(l.perMinute)/60), l.perMinute)}
		l.buckets[k] = b
	}
	b.last = now
	// Forget addresses idle long enough to have refilled, so the map does
	// not grow with every address ever seen.
	if now.Sub(l.lastSweep) > time.Minute {
		l.lastSweep = now
		for key, other := range l.buckets {
			if now.Sub(other.last) > 2*time.Minute {
				delete(l.buckets, key)
			}
		}
	}
	return b
}

// Allow implements pop3.LoginLimiter.
func (l *loginLimiter) Allow(remote net.Addr) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.get(remote)
	now := l.now()
	if b.lim.TokensAt(now) >= 1 {
		return true, 0
	}
	r := b.lim.ReserveN(now, 1)
	wait := r.DelayFrom(now)
	r.CancelAt(now)
	return false, wait
}

// Failed implements pop3.LoginLimiter.
func (l *loginLimiter) Failed(remote net.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.get(remote).lim.AllowN(l.now(), 1)
}

// limiterSwitch is the pop3.LoginLimiter of a daemon: a loginLimiter that
// a reload of limits.auth_failures_per_ip replaces (its counts start
// afresh; an unchanged value keeps them).
type limiterSwitch struct {
	now func() time.Time
	mu  sync.Mutex // serialises set
	cur atomic.Pointer[loginLimiter]
	n   int
}

var _ pop3.LoginLimiter = (*limiterSwitch)(nil)

func (s *limiterSwitch) set(perMinute int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if perMinute == s.n && (perMinute <= 0 || s.cur.Load() != nil) {
		return
	}
	s.n = perMinute
	s.cur.Store(newLoginLimiter(perMinute, s.now)) // nil when perMinute <= 0
}

func (s *limiterSwitch) Allow(remote net.Addr) (bool, time.Duration) {
	if l := s.cur.Load(); l != nil {
		return l.Allow(remote)
	}
	return true, 0
}

func (s *limiterSwitch) Failed(remote net.Addr) {
	if l := s.cur.Load(); l != nil {
		l.Failed(remote)
	}
}
