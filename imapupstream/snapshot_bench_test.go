package imapupstream

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"
)

// BenchmarkSnapshot decodes a 50,000-message UID FETCH answer from a fake
// server; allocs/op divided by 50,000 is the per-message cost (mostly
// go-imap's).
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
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		metas, err := c.Snapshot(context.Background())
		if err != nil || len(metas) != n {
			b.Fatalf("%d, %v", len(metas), err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/msg")
}
