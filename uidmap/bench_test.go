package uidmap_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
	"github.com/popbridge/popbridge/uidmap/storetest"
)

// BenchmarkResolve50k measures a POP3 login's uidmap work on a 50,000-message
// mailbox with the bolt store: the first login names and stores every
// message, the next ones only look them up. bytes/msg is the store file's
// size divided by the message count after the first login.
func BenchmarkResolve50k(b *testing.B) {
	msgs, identify := storetest.Mailbox(50000)
	ctx := context.Background()
	key := uidmap.Key{Upstream: "imap:993", User: "bench", Mailbox: "INBOX"}

	b.Run("first-login", func(b *testing.B) {
		var size int64
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			path := filepath.Join(b.TempDir(), "state.db")
			s, err := boltstore.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			m := uidmap.New(s, uidmap.Options{})
			b.StartTimer()
			if _, err := m.Resolve(ctx, key, 1, msgs, identify); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			s.Close()
			fi, _ := os.Stat(path)
			size = fi.Size()
			b.StartTimer()
		}
		b.ReportMetric(float64(size)/float64(len(msgs)), "bytes/msg")
	})
	b.Run("next-login", func(b *testing.B) {
		s, err := boltstore.Open(filepath.Join(b.TempDir(), "state.db"))
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		m := uidmap.New(s, uidmap.Options{})
		if _, err := m.Resolve(ctx, key, 1, msgs, identify); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if _, err := m.Resolve(ctx, key, 1, msgs, identify); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uidvalidity-reset", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			s, err := boltstore.Open(filepath.Join(b.TempDir(), "state.db"))
			if err != nil {
				b.Fatal(err)
			}
			m := uidmap.New(s, uidmap.Options{})
			if _, err := m.Resolve(ctx, key, 1, msgs, identify); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			v, err := m.Resolve(ctx, key, 2, msgs, identify)
			if err != nil || v.Kept != len(msgs) {
				b.Fatalf("%v, kept %d", err, v.Kept)
			}
			b.StopTimer()
			s.Close()
			b.StartTimer()
		}
	})
}
