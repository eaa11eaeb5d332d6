package pgstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/uidmap"
)

// lockSQL takes a maildrop lock: a new row, or the row of an expired lease,
// which it takes over; a live holder's row is left alone and nothing is
// returned. The conflicting row is locked while the WHERE is checked, so of
// two sessions racing for one maildrop exactly one gets it. Expiry uses
// the database's clock: instances' clocks may disagree.
const lockSQL = `
INSERT INTO popbridge_locks AS l (upstream, username, mailbox, token, owner, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
ON CONFLICT (upstream, username, mailbox) DO UPDATE
	SET token = excluded.token, owner = excluded.owner, expires_at = excluded.expires_at
	WHERE l.expires_at < now()
RETURNING token`

// Lock implements uidmap.Store with a lease that this Store renews until
// release, which deletes it. No connection is held in between. The lease is
// lost when a renewal finds its row taken over, or when no renewal has
// succeeded for lossAfter: by the local clock, a quarter of a lease before
// the database would let another instance take the row.
func (s *Store) Lock(ctx context.Context, key uidmap.Key, owner string) (*uidmap.Lease, error) {
	token := newToken()
	sent := time.Now() // the row's expiry counts from later: the database's now()
	var got string
	err := s.pool.QueryRow(ctx, lockSQL, key.Upstream, key.User, key.Mailbox, token, owner, s.lease.Seconds()).Scan(&got)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, uidmap.ErrLocked
	}
	if err != nil {
		return nil, fmt.Errorf("pgstore: lock: %w", err)
	}
	h := &heldLease{lease: uidmap.NewLease(func() { s.release(token) })}
	s.mu.Lock()
	h.timer = time.AfterFunc(time.Until(sent.Add(s.lossAfter())), func() {
		h.lease.Lose(fmt.Sprintf("not renewed for %v (state.lock_lease %v)", s.lossAfter(), s.lease))
	})
	s.held[token] = h
	s.mu.Unlock()
	return h.lease, nil
}

// heldLease is a lease this Store renews: timer marks it lost when it has
// not been renewed in time.
type heldLease struct {
	lease *uidmap.Lease
	timer *time.Timer
}

// lossAfter is how long after the last successful renewal (counted from
// when it was sent) a lease is given up: the rest of the lease is the
// margin for a write under way to stop.
func (s *Store) lossAfter() time.Duration { return s.lease * 3 / 4 }

// release stops renewing the lease and deletes it if it is still this
// session's (after a lost renewal another session may have taken it over).
// A failed delete leaves a lease that expires on its own.
func (s *Store) release(token string) {
	s.mu.Lock()
	h, ok := s.held[token]
	delete(s.held, token)
	s.mu.Unlock()
	if !ok {
		return // Close released it already
	}
	h.timer.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.pool.Exec(ctx, `DELETE FROM popbridge_locks WHERE token = $1`, token)
}

// renewLoop renews every lease this Store holds, in one statement, three
// times per lease period: a renewal can fail twice before a lease runs out.
func (s *Store) renewLoop() {
	defer close(s.stopped)
	t := time.NewTicker(s.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.renew()
		}
	}
}

func (s *Store) renew() {
	s.mu.Lock()
	tokens := s.heldTokens()
	s.mu.Unlock()
	if len(tokens) == 0 {
		return
	}
	sent := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), s.lease/3)
	defer cancel()
	rows, err := s.pool.Query(ctx, `UPDATE popbridge_locks SET expires_at = now() + make_interval(secs => $2)
		WHERE token = ANY($1) RETURNING token`, tokens, s.lease.Seconds())
	if err != nil {
		return // tried again at the next tick; the leases' timers run on
	}
	renewed, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return
	}
	found := make(map[string]bool, len(renewed))
	for _, tok := range renewed {
		found[tok] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, tok := range tokens {
		h, ok := s.held[tok]
		if !ok {
			continue // released meanwhile
		}
		if !found[tok] {
			// Taken over after it expired (this instance could not reach
			// the database for a whole lease): its session no longer
			// holds the maildrop.
			h.timer.Stop()
			h.lease.Lose("taken over by another session after it expired")
			delete(s.held, tok)
			continue
		}
		if h.lease.Lost() == nil {
			h.timer.Reset(time.Until(sent.Add(s.lossAfter())))
		}
	}
}

// heldTokens lists the leases held; s.mu is held.
func (s *Store) heldTokens() []string {
	tokens := make([]string, 0, len(s.held))
	for tok := range s.held {
		tokens = append(tokens, tok)
	}
	return tokens
}

// newToken names one lease: unique across instances, unlike the owner
// (a session ID that is only unique within its process).
func newToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
