package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/popbridge/popbridge/internal/testenv/postgres"
)

func TestMain(m *testing.M) { os.Exit(postgres.Run(m)) }

// Each test gets an empty database of its own, on one shared cluster.
func TestDatabasesAreSeparate(t *testing.T) {
	ctx := context.Background()
	connect := func(dsn string) *pgx.Conn {
		conn, err := pgx.Connect(ctx, dsn)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(ctx) })
		return conn
	}
	a, b := connect(postgres.DSN(t)), connect(postgres.DSN(t))
	if _, err := a.Exec(ctx, `CREATE TABLE only_in_a (x int)`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := b.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_a'`).Scan(&n); err != nil || n != 0 {
		t.Fatalf("the second database sees the first one's table (%d, %v)", n, err)
	}
	if postgres.Shared(t).Addr == "" {
		t.Fatal("no address")
	}
}
