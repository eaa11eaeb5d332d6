package imapupstream

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkSnapshot decodes a 50,000-message UID FETCH answer from a fake
// server (so only the client's cost is measured); allocs/op divided by
// 50,000 is the per-message cost.
func BenchmarkSnapshot(b *testing.B) {
	const n = 50000
	var resp bytes.Buffer
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&resp, "* %d FETCH (UID %d RFC822.SIZE %d)\r\n", i, i*2, 1000+i)
	}
	addr := newFakeB(b, func(fc *fakeConn) {
		fc.send(fakeGreeting)
		fc.serve(func(tag, cmd, line string) bool {
			switch cmd {
			case "SELECT":
				fc.send(fmt.Sprintf("* %d EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\n%s OK [READ-WRITE] done\r\n", n, tag))
				return true
			case "UID FETCH":
				fc.Write(resp.Bytes())
				fc.send(tag + " OK done\r\n")
				return true
			}
			return false
		})
	})
	d, err := NewDialer(Config{Address: addr, TLS: TLSNone, CommandTimeout: time.Minute}, nil)
	if err != nil {
		b.Fatal(err)
	}
	c, err := d.Login(context.Background(), Credentials{Username: "u", Password: "p"})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Select(context.Background()); err != nil {
		b.Fatal(err)
	}
	// Side by side: the lean path (what Snapshot does) and go-imap's
	// decoder (its fallback), on the same connection and answer.
	for _, way := range []struct {
		name string
		snap func() ([]MessageMeta, error)
	}{
		{"lean", func() ([]MessageMeta, error) { return c.Snapshot(context.Background()) }},
		{"go-imap", func() ([]MessageMeta, error) {
			g := c.guard(context.Background(), time.Minute)
			defer g.Stop()
			return c.goimapSnapshot(g, n)
		}},
	} {
		b.Run(way.name, func(b *testing.B) {
			b.ReportAllocs()
			for range b.N {
				metas, err := way.snap()
				if err != nil || len(metas) != n {
					b.Fatalf("%d, %v", len(metas), err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
		})
	}
}
