package proxy

import (
	"net"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/popbridge/popbridge/pop3"
)

// LoginLimiter limits failed logins per client address
// (limits.auth_failures_per_ip per minute) with a token bucket per address:
// each failure spends a token, and an address without tokens is answered
// -ERR [LOGIN-DELAY] before its credentials reach the upstream, so password
// guessing through popbridge cannot trip the upstream's own throttling.
type LoginLimiter struct {
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

var _ pop3.LoginLimiter = (*LoginLimiter)(nil)

// NewLoginLimiter allows perMinute failed logins per address per minute,
// refilled evenly; perMinute <= 0 disables it (nil).
func NewLoginLimiter(perMinute int) *LoginLimiter {
	return NewLoginLimiterWithClock(perMinute, time.Now)
}

// NewLoginLimiterWithClock is NewLoginLimiter with the clock it reads (for
// tests that move time on).
func NewLoginLimiterWithClock(perMinute int, now func() time.Time) *LoginLimiter {
	if perMinute <= 0 {
		return nil
	}
	return &LoginLimiter{perMinute: perMinute, buckets: make(map[string]*bucket), now: now}
}

// PerMinute is the number of failed logins allowed per address per minute.
func (l *LoginLimiter) PerMinute() int { return l.perMinute }

func addrKey(a net.Addr) string {
	if tcp, ok := a.(*net.TCPAddr); ok {
		return tcp.IP.String()
	}
	return a.String()
}

func (l *LoginLimiter) get(a net.Addr) *bucket {
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
func (l *LoginLimiter) Allow(remote net.Addr) (bool, time.Duration) {
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
func (l *LoginLimiter) Failed(remote net.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.get(remote).lim.AllowN(l.now(), 1)
}
