package proxy_test

import (
	"fmt"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/proxy"
)

// BenchmarkLoginWindow: a login and UIDL on a 10,000-message mailbox, the
// whole listing against a window of the newest 100, side by side. Each op
// is one session: login, UIDL, QUIT (the state is known: no message is
// new after the first).
func BenchmarkLoginWindow(b *testing.B) {
	dv := dovecot.Start(b)
	user := dovecot.User(b)
	dv.FillMaildir(b, user, 10000, func(i int) []byte { return message(fmt.Sprint("m", i), "x\r\n") })
	for _, bc := range []struct {
		name string
		w    proxy.Window
	}{
		{"all", proxy.Window{}},
		{"newest-100", proxy.Window{Newest: 100}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			br := startBridge(b, dv, withViews(func(o *proxy.Options) { o.Window = bc.w }))
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				c := dialLeanPOP3(b, br.Addr)
				c.cmd(b, "USER "+user)
				c.cmd(b, "PASS "+dv.Password)
				c.cmd(b, "UIDL")
				if lines := c.lines(b); lines == 0 {
					b.Fatal("empty UIDL listing")
				}
				c.cmd(b, "QUIT")
				c.Close()
			}
		})
	}
}

// lines reads the rest of a multi-line answer and returns how many lines
// it had (the terminator left out).
func (c *leanPOP3) lines(b *testing.B) int {
	n := 0
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if string(line) == ".\r\n" {
			return n
		}
		n++
	}
}
