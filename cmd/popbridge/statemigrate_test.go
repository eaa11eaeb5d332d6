package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
	"github.com/popbridge/popbridge/uidmap/pgstore"
)

// TestMain stops the PostgreSQL cluster that the tests of the postgres
// driver share.
func TestMain(m *testing.M) { os.Exit(postgres.Run(m)) }

// postgresConfig writes a config file for the postgres driver on dsn.
func postgresConfig(t *testing.T, upstream, dsn, extra string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf("upstream:\n  address: %q\n  tls: none\nstate:\n  driver: postgres\n  dsn: %q\n%s", upstream, dsn, extra)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// fillBolt gives a bolt store the state that sessions leave: maildrops
// named through uidmap.Map (Message-ID and header-hash fingerprints,
// sizes, dates), hidden marks, one maildrop that went through a
// UIDVALIDITY change, and one whose messages are all gone.
func fillBolt(t *testing.T, path, upstream string) []uidmap.Key {
	t.Helper()
	ctx := context.Background()
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := uidmap.New(s, uidmap.Options{})
	var keys []uidmap.Key
	for u := range 5 {
		key := uidmap.Key{Upstream: upstream, User: fmt.Sprintf("user%d@example.org", u), Mailbox: "INBOX"}
		keys = append(keys, key)
		n := 1 + u*700 // one maildrop past the bulk-write threshold
		msgs := make([]uidmap.Message, n)
		for i := range msgs {
			msgs[i] = uidmap.Message{UID: uint32(10 + i*3), Size: int64(500 + i)}
		}
		identify := func(_ context.Context, uids []uint32) ([]uidmap.Identity, error) {
			out := make([]uidmap.Identity, len(uids))
			for i, uid := range uids {
				out[i] = uidmap.Identity{UID: uid, InternalDate: time.Unix(1700000000+int64(uid), 0)}
				if uid%2 == 0 {
					out[i].MessageID = fmt.Sprintf("<%d.%d@example.org>", u, uid)
				} else {
					out[i].Header = []byte(fmt.Sprintf("Subject: %d\r\nFrom: a@b\r\n\r\n", uid))
				}
			}
			return out, nil
		}
		if _, err := m.Resolve(ctx, key, 100+uint32(u), msgs, identify); err != nil {
			t.Fatal(err)
		}
		if u == 3 { // the mailbox was re-created upstream
			if _, err := m.Resolve(ctx, key, 999, msgs, identify); err != nil {
				t.Fatal(err)
			}
		}
		var hide []uint32
		for i, msg := range msgs {
			if i%3 == 0 {
				hide = append(hide, msg.UID)
			}
		}
		uv := 100 + uint32(u)
		if u == 3 {
			uv = 999
		}
		if err := m.SetHidden(ctx, key, uv, hide, true); err != nil {
			t.Fatal(err)
		}
	}
	empty := uidmap.Key{Upstream: upstream, User: "emptied", Mailbox: "INBOX"}
	keys = append(keys, empty)
	if err := s.Apply(ctx, empty, &uidmap.Change{UIDValidity: 7, Add: []uidmap.Record{{UID: 1, UIDL: "gone"}}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, empty, &uidmap.Change{Expect: 7, UIDValidity: 7, Delete: []uint32{1}}); err != nil {
		t.Fatal(err)
	}
	return keys
}

func runState(args ...string) (code int, stdout, stderr string) {
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"state"}, args...), &out, &errOut)
	return code, out.String(), errOut.String()
}

// compareStores fails the test unless every maildrop has the same
// UIDVALIDITY and the same records (UIDL, hidden mark, fingerprint) in
// both stores.
func compareStores(t *testing.T, boltPath, dsn string, keys []uidmap.Key) {
	t.Helper()
	ctx := context.Background()
	src, err := boltstore.Open(boltPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := pgstore.Open(ctx, dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	for _, key := range keys {
		want, err := src.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		got, err := dst.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if got.UIDValidity != want.UIDValidity || !slices.Equal(got.Records, want.Records) {
			t.Fatalf("%s: PostgreSQL has UIDVALIDITY %d and %d records, bolt %d and %d; first records %+v vs %+v",
				key.User, got.UIDValidity, len(got.Records), want.UIDValidity, len(want.Records), firstRecords(got.Records), firstRecords(want.Records))
		}
	}
}

func firstRecords(r []uidmap.Record) []uidmap.Record { return r[:min(len(r), 3)] }

func TestStateMigrateFromBolt(t *testing.T) {
	const upstream = "imap.example.net:993"
	boltPath := filepath.Join(t.TempDir(), "state.db")
	keys := fillBolt(t, boltPath, upstream)
	dsn := postgres.DSN(t)
	cfg := postgresConfig(t, upstream, dsn, "")

	code, out, errOut := runState("migrate", "-config", cfg, "-from-bolt", boltPath)
	if code != 0 || !strings.Contains(out, "copied 6 maildrops (7005 messages)") {
		t.Fatalf("migrate: exit %d\n%s%s", code, out, errOut)
	}
	compareStores(t, boltPath, dsn, keys)

	// Again: nothing to do, and it says so.
	code, out, errOut = runState("migrate", "-config", cfg, "-from-bolt", boltPath)
	if code != 0 || !strings.Contains(out, "copied 0 maildrops") || !strings.Contains(out, "6 maildrops already present") {
		t.Fatalf("second migrate: exit %d\n%s%s", code, out, errOut)
	}

	// PostgreSQL moved on for one user (a session there hid a message):
	// that maildrop is not overwritten without -force.
	ctx := context.Background()
	pg, err := pgstore.Open(ctx, dsn, pgstore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := uidmap.New(pg, uidmap.Options{}).SetHidden(ctx, keys[1], 101, []uint32{13}, true); err != nil {
		t.Fatal(err)
	}
	// And a session on another instance holds another maildrop.
	lease, err := pg.Lock(ctx, keys[2], "session-elsewhere")
	if err != nil {
		t.Fatal(err)
	}
	code, out, _ = runState("migrate", "-config", cfg, "-from-bolt", boltPath)
	if code == 0 || !strings.Contains(out, "PostgreSQL has other state for it (-force overwrites): user1@example.org") ||
		!strings.Contains(out, "a session on another instance holds it (run again later): user2@example.org") {
		t.Fatalf("migrate over changed state: exit %d\n%s", code, out)
	}
	lease.Release()
	pg.Close()

	code, out, errOut = runState("migrate", "-config", cfg, "-from-bolt", boltPath, "-force")
	if code != 0 || !strings.Contains(out, "copied 1 maildrops") || !strings.Contains(out, "1 of them overwrote") {
		t.Fatalf("migrate -force: exit %d\n%s%s", code, out, errOut)
	}
	compareStores(t, boltPath, dsn, keys)
}

func TestStateMigrateNeedsPostgres(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	os.WriteFile(cfg, []byte("upstream:\n  address: imap.example.net:993\nstate:\n  path: "+filepath.Join(dir, "state.db")+"\n"), 0o600)
	code, _, errOut := runState("migrate", "-config", cfg, "-from-bolt", filepath.Join(dir, "old.db"))
	if code == 0 || !strings.Contains(errOut, "state.driver") {
		t.Fatalf("migrate with the bolt driver configured: exit %d: %s", code, errOut)
	}
	if code, _, errOut := runState("migrate", "-config", cfg); code == 0 || !strings.Contains(errOut, "-from-bolt") {
		t.Fatalf("migrate without -from-bolt: exit %d: %s", code, errOut)
	}
}
