package pgstore_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
	"github.com/popbridge/popbridge/uidmap/pgstore"
	"github.com/popbridge/popbridge/uidmap/storetest"
)

// BenchmarkResolve50k is uidmap's BenchmarkResolve50k on both persistent
// stores side by side: a POP3 login's uidmap work on a 50,000-message
// mailbox. first-login names and stores every message, next-login only
// looks them up, uidvalidity-reset re-identifies all of them. PostgreSQL
// is the throw-away test cluster on loopback (fsync off), so its numbers
// are those of the protocol and the queries, not of a disk.
func BenchmarkResolve50k(b *testing.B) {
	msgs, identify := storetest.Mailbox(50000)
	ctx := context.Background()
	key := uidmap.Key{Upstream: "imap:993", User: "bench", Mailbox: "INBOX"}

	stores := []struct {
		name string
		open func(b *testing.B) uidmap.Store // an empty store
	}{
		{"bolt", func(b *testing.B) uidmap.Store {
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "state.db"))
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
		{"postgres", func(b *testing.B) uidmap.Store {
			s, err := pgstore.Open(ctx, postgres.DSN(b), pgstore.Options{})
			if err != nil {
				b.Fatal(err)
			}
			return s
		}},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			// A store per measurement, as in uidmap's benchmark (there a
			// file): the churn of one does not slow the next. Iterations
			// start from an empty maildrop by resetting it, untimed.
			withStore := func(name string, bench func(b *testing.B, s uidmap.Store, m *uidmap.Map)) {
				b.Run(name, func(b *testing.B) {
					s := st.open(b)
					defer s.Close()
					bench(b, s, uidmap.New(s, uidmap.Options{}))
				})
			}
			withStore("first-login", func(b *testing.B, s uidmap.Store, m *uidmap.Map) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					if err := s.Reset(ctx, key); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					if _, err := m.Resolve(ctx, key, 1, msgs, identify); err != nil {
						b.Fatal(err)
					}
				}
			})
			withStore("next-login", func(b *testing.B, s uidmap.Store, m *uidmap.Map) {
				if _, err := m.Resolve(ctx, key, 1, msgs, identify); err != nil {
					b.Fatal(err)
				}
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					if v, err := m.Resolve(ctx, key, 1, msgs, identify); err != nil || v.Known != len(msgs) {
						b.Fatalf("%v, known %d", err, v.Known)
					}
				}
			})
			withStore("uidvalidity-reset", func(b *testing.B, s uidmap.Store, m *uidmap.Map) {
				for i := 0; i < b.N; i++ {
					b.StopTimer()
					if err := s.Reset(ctx, key); err != nil {
						b.Fatal(err)
					}
					if _, err := m.Resolve(ctx, key, 1, msgs, identify); err != nil {
						b.Fatal(err)
					}
					b.StartTimer()
					v, err := m.Resolve(ctx, key, 2, msgs, identify)
					if err != nil || v.Kept != len(msgs) {
						b.Fatalf("%v, kept %d", err, v.Kept)
					}
				}
			})
		})
	}
}
