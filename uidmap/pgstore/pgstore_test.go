package pgstore_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/pgstore"
	"github.com/popbridge/popbridge/uidmap/storetest"
)

func TestMain(m *testing.M) {
	code := postgres.Run(m)
	if code == 0 {
		// Every Store's renewer and pool must be gone with Close.
		if err := goleak.Find(); err != nil {
			os.Stderr.WriteString("goroutines left running: " + err.Error() + "\n")
			code = 1
		}
	}
	os.Exit(code)
}

var key = uidmap.Key{Upstream: "imap.example:993", User: "alice", Mailbox: "INBOX"}

func open(t testing.TB, dsn string, opts pgstore.Options) *pgstore.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := pgstore.Open(ctx, dsn, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestStore(t *testing.T) {
	storetest.Run(t, func(t *testing.T) uidmap.Store {
		return open(t, postgres.DSN(t), pgstore.Options{})
	})
}

// Instances that start at once against an empty database all migrate it
// without error (the advisory lock makes all but one wait and then find it
// done), and share the result.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	dsn := postgres.DSN(t)
	var wg sync.WaitGroup
	stores := make([]*pgstore.Store, 4)
	errs := make([]error, 4)
	for i := range stores {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = pgstore.Open(context.Background(), dsn, pgstore.Options{})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("instance %d: %v", i, err)
		}
		defer stores[i].Close()
	}
	ctx := context.Background()
	if err := stores[0].Apply(ctx, key, &uidmap.Change{UIDValidity: 1, Add: []uidmap.Record{{UID: 1, UIDL: "a"}}}); err != nil {
		t.Fatal(err)
	}
	if d, err := stores[3].Load(ctx, key); err != nil || len(d.Records) != 1 {
		t.Fatalf("another instance loads %+v, %v", d, err)
	}
	conn := adminConn(t, dsn)
	var versions []int
	rows, _ := conn.Query(ctx, `SELECT version FROM popbridge_schema_version`)
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil || len(versions) != 1 || versions[0] != pgstore.SchemaVersion {
		t.Fatalf("schema versions %v (%v), want [%d]", versions, err, pgstore.SchemaVersion)
	}
}

func TestReopenKeepsState(t *testing.T) {
	dsn := postgres.DSN(t)
	ctx := context.Background()
	s := open(t, dsn, pgstore.Options{})
	if err := s.Apply(ctx, key, &uidmap.Change{UIDValidity: 9, Put: []uidmap.Record{{UID: 4, UIDL: "kept"}}}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	d, err := open(t, dsn, pgstore.Options{}).Load(ctx, key)
	if r, _ := d.Find(4); err != nil || d.UIDValidity != 9 || r.UIDL != "kept" {
		t.Fatalf("after reopen: %+v, %v", d, err)
	}
}

func TestNewerSchemaIsRefused(t *testing.T) {
	dsn := postgres.DSN(t)
	open(t, dsn, pgstore.Options{}).Close()
	if _, err := adminConn(t, dsn).Exec(context.Background(), `UPDATE popbridge_schema_version SET version = version + 1`); err != nil {
		t.Fatal(err)
	}
	if s, err := pgstore.Open(context.Background(), dsn, pgstore.Options{}); !errors.Is(err, pgstore.ErrSchemaTooNew) {
		if s != nil {
			s.Close()
		}
		t.Fatalf("Open on a newer schema: %v, want ErrSchemaTooNew", err)
	}
}

// Open's errors name what went wrong without the DSN's password.
func TestOpenErrorsHideThePassword(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, dsn := range []string{
		"postgres://popbridge:s3cret-pw@127.0.0.1:1/popbridge?sslmode=disable&connect_timeout=2",
		"postgres://popbridge:s3cret-pw@127.0.0.1:1/popbridge?pool_max_conns=zero",
		"host=127.0.0.1 port=1 user=popbridge password=s3cret-pw sslmode=disable connect_timeout=2",
	} {
		s, err := pgstore.Open(ctx, dsn, pgstore.Options{})
		if err == nil {
			s.Close()
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		if strings.Contains(err.Error(), "s3cret-pw") {
			t.Fatalf("error shows the password: %v", err)
		}
	}
}

func adminConn(t testing.TB, dsn string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func TestLogins(t *testing.T) {
	s := open(t, postgres.DSN(t), pgstore.Options{})
	storetest.Logins(t, s, s.Logins)
}

// TestLastLogin: a login recorded by one instance is seen by another, by
// the database's clock; views are apart.
func TestLastLogin(t *testing.T) {
	dsn := postgres.DSN(t)
	a, b := open(t, dsn, pgstore.Options{}), open(t, dsn, pgstore.Options{})
	ctx := context.Background()
	alice := uidmap.Key{Upstream: "imap.example:993", User: "alice", Mailbox: "INBOX"}
	phone := uidmap.Key{Upstream: "imap.example:993", User: "alice#phone", Mailbox: "INBOX"}
	if _, ok, err := b.LastLogin(ctx, alice); ok || err != nil {
		t.Fatalf("before any login: %v %v", ok, err)
	}
	if err := a.RecordLogin(ctx, alice); err != nil {
		t.Fatal(err)
	}
	ago, ok, err := b.LastLogin(ctx, alice)
	if err != nil || !ok || ago < 0 || ago > 10*time.Second {
		t.Fatalf("the other instance sees the login %v ago (%v, %v)", ago, ok, err)
	}
	if _, ok, _ := b.LastLogin(ctx, phone); ok {
		t.Fatal("a device's view shares its user's login time")
	}
	time.Sleep(200 * time.Millisecond)
	if err := b.RecordLogin(ctx, alice); err != nil {
		t.Fatal(err)
	}
	if again, _, _ := a.LastLogin(ctx, alice); again >= ago+200*time.Millisecond {
		t.Fatalf("a second login was not recorded: %v ago, the first %v", again, ago)
	}
}
