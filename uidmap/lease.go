package uidmap

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrLeaseLost is the cause of a Lease's context when the lock was lost
// while held: a shared store could not renew it in time, or found it taken
// over. The session must then write nothing more to the maildrop: another
// session may hold it by now.
var ErrLeaseLost = errors.New("uidmap: maildrop lock lost")

// errReleased is the cause of a Lease's context after Release.
var errReleased = errors.New("uidmap: maildrop lock released")

// Lease is one held maildrop lock. Its methods may be called from several
// goroutines.
type Lease struct {
	ctx     context.Context
	cancel  context.CancelCauseFunc
	release func()
	once    sync.Once
}

// NewLease returns a held lease; release gives the lock back to the store
// (it runs once, at the first Release). For Store implementations.
func NewLease(release func()) *Lease {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Lease{ctx: ctx, cancel: cancel, release: release}
}

// Context is done once the lease is lost or released; its cause then says
// which (ErrLeaseLost for a loss). Writes to the maildrop run under it, so
// that a loss stops a write under way.
func (l *Lease) Context() context.Context { return l.ctx }

// Lost returns an error wrapping ErrLeaseLost once the lock was lost, and
// nil while it is held (or after a plain Release).
func (l *Lease) Lost() error {
	if err := context.Cause(l.ctx); errors.Is(err, ErrLeaseLost) {
		return err
	}
	return nil
}

// Lose marks the lease lost, for why; Release must still be called. For
// Store implementations.
func (l *Lease) Lose(why string) {
	l.cancel(fmt.Errorf("%w: %s", ErrLeaseLost, why))
}

// Release gives the lock back. It may be called more than once.
func (l *Lease) Release() {
	l.once.Do(func() {
		l.cancel(errReleased)
		if l.release != nil {
			l.release()
		}
	})
}

// Bound returns ctx, also cancelled (with the lease's cause) once the lease
// is lost or released: the context for writes made under the lock.
func (l *Lease) Bound(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(l.ctx, func() { cancel(context.Cause(l.ctx)) })
	return ctx, func() {
		stop()
		cancel(context.Canceled)
	}
}
