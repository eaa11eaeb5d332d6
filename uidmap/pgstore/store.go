package pgstore

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/popbridge/popbridge/uidmap"
)

// DefaultLockLease is how long a maildrop lock outlives the instance that
// stopped renewing it (state.lock_lease).
const DefaultLockLease = 30 * time.Second

// DefaultMaxConns is the size of the connection pool unless the DSN sets
// pool_max_conns.
const DefaultMaxConns = 16

// Options configure a Store.
type Options struct {
	// LockLease is the lifetime of a maildrop lock that is not renewed;
	// zero means DefaultLockLease. Leases are renewed every LockLease/3.
	LockLease time.Duration
}

// Store is a uidmap.Store in PostgreSQL. Its methods may be called from
// many goroutines.
type Store struct {
	pool  *pgxpool.Pool
	lease time.Duration

	mu   sync.Mutex
	held map[string]*heldLease // by token: the leases this Store renews

	stop    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

var _ uidmap.Store = (*Store)(nil)

// Open connects to the database at dsn, creates or migrates the schema and
// starts renewing the leases of the locks this Store will hold. It fails
// when the database cannot be reached within ctx.
func Open(ctx context.Context, dsn string, opts Options) (*Store, error) {
	if opts.LockLease <= 0 {
		opts.LockLease = DefaultLockLease
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		// pgconn's parse errors blank the password out of the DSN.
		return nil, fmt.Errorf("pgstore: state.dsn: %w", err)
	}
	if !strings.Contains(dsn, "pool_max_conns") {
		// pgxpool's default (4, or the CPU count) queues logins in a
		// burst: each takes a few short statements.
		cfg.MaxConns = max(cfg.MaxConns, DefaultMaxConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	if err := migrate(ctx, pool); err != nil {
		pool.Close()
		return nil, err
	}
	s := &Store{
		pool:    pool,
		lease:   opts.LockLease,
		held:    make(map[string]*heldLease),
		stop:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	go s.renewLoop()
	return s, nil
}

// Close stops renewing leases, gives back the locks still held (sessions
// normally release theirs before; anything left would otherwise block its
// maildrop for a lease) and closes the connections.
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.stop)
		<-s.stopped
		s.mu.Lock()
		tokens := s.heldTokens()
		for _, h := range s.held {
			h.timer.Stop()
			h.lease.Lose("the store was closed")
		}
		clear(s.held)
		s.mu.Unlock()
		if len(tokens) > 0 {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.pool.Exec(ctx, `DELETE FROM popbridge_locks WHERE token = ANY($1)`, tokens)
			cancel()
		}
		s.pool.Close()
	})
	return nil
}
