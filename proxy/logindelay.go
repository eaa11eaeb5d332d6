package proxy

import (
	"strconv"
	"sync"
	"time"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

// loginTimes remembers when each maildrop view (a user, or one device of
// a user) last logged in, for limits.login_delay. It is this instance's
// memory: a client that a balancer sends to another instance is not held
// back there.
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
	wait := delay - now.Sub(last)
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
