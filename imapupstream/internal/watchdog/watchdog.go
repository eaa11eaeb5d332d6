package watchdog

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// Guard is one bounded wait. No goroutine runs unless it fires.
//
// A streaming reader marks every Read with Resume and Pause (the consumer,
// not the server, is slow in between), hundreds of times per message: those
// only store the time in an atomic, never touch the timer. The one timer
// checks that time when it fires and sets itself again for what is left of
// the period; while paused it lapses, and the next Resume sets it again.
type Guard struct {
	end     func(cause error)
	d       time.Duration
	timer   *time.Timer
	stopCtx func() bool
	// since is when the current wait began (clock()), or paused or
	// stopped.
	since atomic.Int64
	// armed: the timer is set, or its function runs and will decide.
	armed atomic.Bool
}

const (
	paused  = -1
	stopped = -2
)

// clockBase makes clock's readings small non-negative numbers, on the
// monotonic clock.
var clockBase = time.Now()

func clock() int64 { return int64(time.Since(clockBase)) }

// timeoutError is the cause given to end when the timer fires.
type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string {
	return fmt.Sprintf("no progress from the server within %v", e.d)
}
func (e timeoutError) Unwrap() error { return context.DeadlineExceeded }
func (e timeoutError) Timeout() bool { return true }

// Start starts a wait on the server: when ctx is done, or the wait lasts d
// without Progress, end is called (once, from another goroutine) with the
// cause: ctx's cause, or an error wrapping context.DeadlineExceeded.
func Start(ctx context.Context, d time.Duration, end func(cause error)) *Guard {
	g := &Guard{end: end, d: d}
	g.since.Store(clock())
	g.armed.Store(true)
	g.timer = time.AfterFunc(d, g.fire)
	g.stopCtx = context.AfterFunc(ctx, func() {
		cause := context.Cause(ctx)
		if cause == nil {
			cause = ctx.Err()
		}
		end(cause)
	})
	return g
}

// fire runs when the timer goes off: it ends the connection if the current
// wait has lasted d, else sets the timer for the rest of it.
func (g *Guard) fire() {
	for {
		since := g.since.Load()
		switch since {
		case stopped:
			return
		case paused:
			g.armed.Store(false)
			// A Resume between the Load and the Store found armed still
			// set and left the timer to us.
			if g.since.Load() >= 0 && g.armed.CompareAndSwap(false, true) {
				continue
			}
			return
		}
		left := g.d - time.Duration(clock()-since)
		if left <= 0 {
			g.end(timeoutError{g.d})
			return
		}
		g.timer.Reset(left)
		return
	}
}

// Resume starts a wait on the server, for a full period. Like Pause, it is
// called by the guard's owner only, and does nothing after Stop.
func (g *Guard) Resume() {
	if g.since.Load() == stopped {
		return
	}
	g.since.Store(clock())
	if !g.armed.Load() && g.armed.CompareAndSwap(false, true) {
		g.timer.Reset(g.d)
	}
}

// Pause ends the wait: the consumer, not the server, is slow.
func (g *Guard) Pause() {
	if g.since.Load() != stopped {
		g.since.Store(paused)
	}
}

// Progress restarts the period: the server is making progress.
func (g *Guard) Progress() { g.Resume() }

// Stop ends the guard: it fires no more.
func (g *Guard) Stop() {
	g.since.Store(stopped)
	g.timer.Stop()
	g.stopCtx()
}
