package postgres

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/internal/testenv"
)

// shared is the test binary's one cluster, started by the first DSN call.
var shared struct {
	runCalled atomic.Bool
	once      sync.Once
	cluster   *Cluster
	err       error

	mu    sync.Mutex // serialises admin statements on conn
	conn  *pgx.Conn
	count int
}

// Run runs the package's tests and stops the shared cluster after them, if
// they started it. Call it from TestMain:
//
//	func TestMain(m *testing.M) { os.Exit(postgres.Run(m)) }
func Run(m *testing.M) int {
	shared.runCalled.Store(true)
	code := m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

func stopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.conn != nil {
		shared.conn.Close(context.Background())
		shared.conn = nil
	}
	if shared.cluster == nil {
		return nil
	}
	err := shared.cluster.stop()
	shared.cluster = nil
	return err
}

// Shared returns the test binary's cluster, starting it on first use. It
// skips the test when PostgreSQL is not installed, or fails it under CI.
func Shared(t testing.TB) *Cluster {
	t.Helper()
	if !shared.runCalled.Load() {
		t.Fatal("postgres: the package's TestMain must call postgres.Run, which stops the cluster after the tests")
	}
	if err := available(); err != nil {
		testenv.Unavailable(t, "postgres: %v", err)
	}
	shared.once.Do(func() {
		shared.cluster, shared.err = startCluster()
		if shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shared.conn, shared.err = pgx.Connect(ctx, shared.cluster.AdminDSN())
	})
	if shared.err != nil {
		t.Fatalf("postgres: %v", shared.err)
	}
	return shared.cluster
}

// available says why PostgreSQL cannot run here, or nil.
func available() error {
	if _, err := findBinaries(); err != nil {
		return err
	}
	_, err := serverUser()
	return err
}

// DSN creates an empty database for the test in the shared cluster and
// returns its DSN; the database is dropped when the test ends (after the
// test's later cleanups, which close its connections).
func DSN(t testing.TB) string {
	t.Helper()
	c := Shared(t)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	shared.count++
	name := fmt.Sprintf("t_%d", shared.count)
	create := "CREATE DATABASE " + name
	if c.Version >= 15 {
		// Copying the template's files is quicker than WAL-logging them
		// (the default since 15) for a database this small.
		create += " STRATEGY FILE_COPY"
	}
	if err := admin(create); err != nil {
		t.Fatalf("postgres: %v", err)
	}
	t.Cleanup(func() {
		shared.mu.Lock()
		defer shared.mu.Unlock()
		if shared.conn == nil {
			return
		}
		drop := "DROP DATABASE IF EXISTS " + name
		if c.Version >= 13 {
			// FORCE ends connections a test left open (a pool not closed).
			drop += " WITH (FORCE)"
		}
		if err := admin(drop); err != nil {
			t.Errorf("postgres: %v", err)
		}
	})
	return c.dsn(name)
}

// admin runs a statement on the admin connection; shared.mu is held.
func admin(sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := shared.conn.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}
