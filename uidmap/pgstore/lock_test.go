package pgstore_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/pgstore"
)

// Two Stores on one database are two popbridge instances.
func twoInstances(t *testing.T, lease time.Duration) (a, b *pgstore.Store, dsn string) {
	dsn = postgres.DSN(t)
	opts := pgstore.Options{LockLease: lease}
	return open(t, dsn, opts), open(t, dsn, opts), dsn
}

func mustLock(t *testing.T, s uidmap.Store, owner string) func() {
	t.Helper()
	lease, err := s.Lock(context.Background(), key, owner)
	if err != nil {
		t.Fatalf("Lock by %s: %v", owner, err)
	}
	return lease.Release
}

func mustBeLocked(t *testing.T, s uidmap.Store, owner string) {
	t.Helper()
	if _, err := s.Lock(context.Background(), key, owner); !errors.Is(err, uidmap.ErrLocked) {
		t.Fatalf("Lock by %s: %v, want ErrLocked", owner, err)
	}
}

func TestLockHoldsAcrossInstances(t *testing.T) {
	t.Parallel()
	a, b, _ := twoInstances(t, 0)
	release := mustLock(t, a, "a-1")
	mustBeLocked(t, b, "b-1")
	mustBeLocked(t, a, "a-2")
	release()
	mustLock(t, b, "b-2")()
}

// An instance that dies holding a lock (no release, no renewal) blocks
// its maildrop for at most one lease.
func TestLockOfADeadInstanceExpires(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	a, b, _ := twoInstances(t, lease)
	mustLock(t, a, "a-1")
	a.Abandon()
	died := time.Now()
	mustBeLocked(t, b, "b-1")
	for {
		l, err := b.Lock(context.Background(), key, "b-2")
		if err == nil {
			l.Release()
			break
		}
		if !errors.Is(err, uidmap.ErrLocked) {
			t.Fatal(err)
		}
		if time.Since(died) > lease+2*time.Second {
			t.Fatalf("the dead instance's lock still holds %v after it died (lease %v)", time.Since(died), lease)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// It was renewed less than a lease before: not free at once.
	if waited := time.Since(died); waited < lease/3 {
		t.Fatalf("the lock was free %v after the holder died, before its lease could run out", waited)
	}
}

// A live holder's lease is renewed: its lock outlasts several lease
// periods.
func TestLockIsRenewedWhileHeld(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	a, b, _ := twoInstances(t, lease)
	release := mustLock(t, a, "a-1")
	for range 4 {
		time.Sleep(lease)
		mustBeLocked(t, b, "b-1")
	}
	release()
	mustLock(t, b, "b-2")()
}

// A session whose lease was taken over (its instance lost the database for
// longer than a lease) must not delete the new holder's lock on release.
func TestReleaseAfterTakeoverKeepsTheNewHolder(t *testing.T) {
	t.Parallel()
	a, b, dsn := twoInstances(t, 0)
	releaseA := mustLock(t, a, "a-1")
	if _, err := adminConn(t, dsn).Exec(context.Background(),
		`UPDATE popbridge_locks SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	releaseB := mustLock(t, b, "b-1")
	releaseA()
	mustBeLocked(t, a, "a-2")
	releaseB()
	mustLock(t, a, "a-3")()
}

// A graceful stop gives back what is still held, instead of leaving it
// for a lease.
func TestCloseReleasesLocks(t *testing.T) {
	t.Parallel()
	a, b, _ := twoInstances(t, time.Hour)
	release := mustLock(t, a, "a-1")
	a.Close()
	release() // after Close: harmless
	mustLock(t, b, "b-1")()
}

// waitLost waits up to within for the lease to be lost and returns how long
// that took.
func waitLost(t *testing.T, l *uidmap.Lease, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	select {
	case <-l.Context().Done():
	case <-time.After(within):
		t.Fatalf("the lease was not lost within %v", within)
	}
	if err := l.Lost(); !errors.Is(err, uidmap.ErrLeaseLost) {
		t.Fatalf("lease done with %v, want ErrLeaseLost", context.Cause(l.Context()))
	}
	return time.Since(start)
}

// A lease taken over by another instance (after it expired) is reported
// lost at the next renewal.
func TestTakenOverLeaseIsLost(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	a, b, dsn := twoInstances(t, lease)
	la, err := a.Lock(context.Background(), key, "a-1")
	if err != nil {
		t.Fatal(err)
	}
	defer la.Release()
	if _, err := adminConn(t, dsn).Exec(context.Background(),
		`UPDATE popbridge_locks SET expires_at = now() - interval '1 second'`); err != nil {
		t.Fatal(err)
	}
	defer mustLock(t, b, "b-1")()
	waitLost(t, la, lease)
}

// An instance that cannot reach the database gives its leases up by its own
// clock, before the database would let another instance take them: by the
// time the session learns it, no other session can hold the maildrop yet.
func TestUnrenewedLeaseIsLostBeforeItExpires(t *testing.T) {
	t.Parallel()
	const lease = 2 * time.Second
	dsn := postgres.DSN(t)
	relay := faultrelay.Start(t, strings.Split(strings.TrimPrefix(dsn, "postgres://postgres@"), "/")[0])
	a := open(t, strings.Replace(dsn, relay.Upstream(), relay.Addr(), 1), pgstore.Options{LockLease: lease})
	b := open(t, dsn, pgstore.Options{LockLease: lease})
	la, err := a.Lock(context.Background(), key, "a-1")
	if err != nil {
		t.Fatal(err)
	}
	relay.Stall(faultrelay.BothDirs)
	took := waitLost(t, la, lease)
	mustBeLocked(t, b, "b-1") // the row has not expired yet
	relay.Release()
	la.Release()
	if took < lease/3 {
		t.Errorf("lost %v after the outage began, before renewals could fail (lease %v)", took, lease)
	}
}
