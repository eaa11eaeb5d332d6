package proxy

import (
	"context"
	"strconv"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

// sharedLogins is a store that keeps when each maildrop view last logged
// in for every instance that shares it (uidmap/pgstore), by one clock.
type sharedLogins interface {
	LastLogin(ctx context.Context, key uidmap.Key) (ago time.Duration, ok bool, err error)
	RecordLogin(ctx context.Context, key uidmap.Key) error
}

// sharedLoginsOf is opts's store as sharedLogins, if it is one.
func sharedLoginsOf(opts *Options) sharedLogins {
	if opts.Map == nil {
		return nil
	}
	sh, _ := opts.Map.Store().(sharedLogins)
	return sh
}

// checkLoginDelay refuses a login of key that comes sooner than
// opts.LoginDelay after the previous one: counted in the shared store if
// there is one, so that a balancer sending the client to another instance
// does not let it in sooner, else in this instance's memory.
func (b *Backend) checkLoginDelay(ctx context.Context, opts *Options, key uidmap.Key) error {
	sh := sharedLoginsOf(opts)
	if sh == nil {
		return b.logins.check(key, opts.LoginDelay, time.Now())
	}
	ago, ok, err := sh.LastLogin(ctx, key)
	if err != nil {
		return clientError(err)
	}
	if ok && ago < opts.LoginDelay {
		return loginDelayError(opts.LoginDelay, opts.LoginDelay-ago)
	}
	return nil
}

// recordLogin records a successful login of key where checkLoginDelay
// looks. A failed write is logged: it only lets the next login in sooner.
func (b *Backend) recordLogin(ctx context.Context, opts *Options, key uidmap.Key, log *zap.Logger) {
	sh := sharedLoginsOf(opts)
	if sh == nil {
		b.logins.done(key, opts.LoginDelay, time.Now())
		return
	}
	if err := sh.RecordLogin(ctx, key); err != nil {
		log.Warn("recording the login for limits.login_delay failed", zap.Error(err))
	}
}

// loginTimes remembers when each maildrop view (a user, or one device of
// a user) last logged in, for limits.login_delay, in this instance's
// memory: for a store of one process (bolt, memory).
type loginTimes struct {
	mu    sync.Mutex
	last  map[uidmap.Key]time.Time
	prune int // size of last at which old entries are swept next
}

const minPrune = 1024

// check reports, for a login of key at now, whether the previous login
// was at least delay ago; if not, the refusal to send.
func (l *loginTimes) check(key uidmap.Key, delay time.Duration, now time.Time) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	last, ok := l.last[key]
	if !ok || now.Sub(last) >= delay {
		return nil
	}
	return loginDelayError(delay, delay-now.Sub(last))
}

// loginDelayError is the refusal of a login that must wait for wait.
func loginDelayError(delay, wait time.Duration) error {
	secs := int64((wait + time.Second - 1) / time.Second)
	return &pop3.Error{Code: pop3.CodeLoginDelay,
		Message: "logins are allowed every " + strconv.FormatInt(int64(delay/time.Second), 10) +
			" seconds, try again in " + strconv.FormatInt(secs, 10) + " seconds"}
}

// done records a successful login of key at now, and forgets the logins
// that no longer hold anyone back.
func (l *loginTimes) done(key uidmap.Key, delay time.Duration, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = make(map[uidmap.Key]time.Time)
		l.prune = minPrune
	}
	l.last[key] = now
	if len(l.last) < l.prune {
		return
	}
	for k, t := range l.last {
		if now.Sub(t) >= delay {
			delete(l.last, k)
		}
	}
	l.prune = max(2*len(l.last), minPrune)
}
