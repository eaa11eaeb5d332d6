package watchdog

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

// conn stands for the guarded connection: it records why it was ended,
// the first cause only.
type conn struct {
	mu   sync.Mutex
	dead error
}

func (c *conn) kill(cause error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead == nil {
		c.dead = cause
	}
}

func (c *conn) deadCause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// TestGuard: the guard's timer ends the connection after d without progress
// while someone waits on the server, never while paused (the consumer is
// busy), and not after stop; progress restarts the period; a cancelled
// context ends the connection at once.
func TestGuard(t *testing.T) {
	t.Parallel()
	const d = 200 * time.Millisecond
	newConn := func(*testing.T) *conn { return &conn{} }
	waitDead := func(t *testing.T, c *conn, within time.Duration) error {
		t.Helper()
		deadline := time.Now().Add(within)
		for c.deadCause() == nil {
			if time.Now().After(deadline) {
				t.Fatalf("connection still alive after %v", within)
			}
			time.Sleep(5 * time.Millisecond)
		}
		return c.deadCause()
	}

	t.Run("fires", func(t *testing.T) {
		c := newConn(t)
		start := time.Now()
		g := Start(context.Background(), d, c.kill)
		defer g.Stop()
		err := waitDead(t, c, 2*time.Second)
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < d {
			t.Fatalf("ended by %v after %v", err, time.Since(start))
		}
	})
	t.Run("paused and resumed", func(t *testing.T) {
		c := newConn(t)
		g := Start(context.Background(), d, c.kill)
		defer g.Stop()
		g.Pause()
		time.Sleep(3 * d) // the timer lapses
		if err := c.deadCause(); err != nil {
			t.Fatalf("ended while paused: %v", err)
		}
		for range 5 { // short waits, long pauses
			g.Resume()
			time.Sleep(d / 4)
			g.Pause()
			time.Sleep(d)
		}
		for range 8 { // progress within each period
			g.Progress()
			time.Sleep(d / 4)
		}
		if err := c.deadCause(); err != nil {
			t.Fatalf("ended despite progress: %v", err)
		}
		start := time.Now()
		g.Resume()
		waitDead(t, c, 2*time.Second)
		if el := time.Since(start); el < d {
			t.Fatalf("ended %v after resume, before %v", el, d)
		}
	})
	t.Run("stopped", func(t *testing.T) {
		c := newConn(t)
		g := Start(context.Background(), d, c.kill)
		g.Resume()
		g.Stop()
		g.Resume() // a late resume does not arm it again
		time.Sleep(3 * d)
		if err := c.deadCause(); err != nil {
			t.Fatalf("ended after stop: %v", err)
		}
	})
	t.Run("context", func(t *testing.T) {
		c := newConn(t)
		ctx, cancel := context.WithCancel(context.Background())
		g := Start(ctx, time.Hour, c.kill)
		defer g.Stop()
		g.Pause()
		cancel()
		if err := waitDead(t, c, time.Second); !errors.Is(err, context.Canceled) {
			t.Fatalf("ended by %v", err)
		}
	})
}
