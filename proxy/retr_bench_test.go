package proxy_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/proxy"
)

// BenchmarkRetr is popbench's retr scenario in-process, for profiles
// (-cpuprofile): one POP3 session RETRs 100 KB messages one after the other
// from a real Dovecot through the bridge, as fast as a lean client reads
// them. Each op is one RETR. "ahead" is the bridge as it is; "no-ahead" hides
// pop3.RetrieveAheader, so each RETR waits for its own UID FETCH. Besides
// the time, it reports how long the upstream fetch waited for its message
// to start on average (wait-µs/op), and the share of RETRs that waited
// longer than 50 µs, i.e. found their message not yet under way (waited-%).
func BenchmarkRetr(b *testing.B) {
	const n, size = 200, 100 << 10
	dv := dovecot.Start(b)
	user := dovecot.User(b)
	dv.FillMaildir(b, user, n, func(i int) []byte {
		var m bytes.Buffer
		fmt.Fprintf(&m, "From: a@example.org\r\nSubject: bench %d\r\nMessage-ID: <bench.%d@example.org>\r\n\r\n", i, i)
		for m.Len() < size {
			m.WriteString(strings.Repeat("0123456789", 7) + "\r\n")
		}
		return m.Bytes()
	})
	for _, bc := range []struct {
		name string
		wrap func(pop3.Backend) pop3.Backend
	}{
		{"ahead", func(be pop3.Backend) pop3.Backend { return be }},
		{"no-ahead", func(be pop3.Backend) pop3.Backend { return plainBackend{be} }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			waits := &fetchWaits{}
			br := startBridgeWith(b, dv, bc.wrap, func(_ *proxy.Options, ucfg *imapupstream.Config, _ *pop3.Server) {
				ucfg.Observer = waits
			})
			c := dialLeanPOP3(b, br.Addr)
			defer c.Close()
			c.cmd(b, "USER "+user)
			c.cmd(b, "PASS "+dv.Password)
			b.SetBytes(size)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				if got := c.retr(b, i%n+1); got < size {
					b.Fatalf("RETR: %d octets", got)
				}
			}
			b.StopTimer()
			c.cmd(b, "QUIT")
			waits.report(b)
		})
	}
}

// fetchWaits collects how long each upstream fetch waited for its message
// to start (imapupstream.Observer's CommandDone for "fetch").
type fetchWaits struct {
	mu      sync.Mutex
	n, long int
	total   time.Duration
}

func (w *fetchWaits) LoginDone(time.Duration, error) {}
func (w *fetchWaits) StreamFailed(error)             {}
func (w *fetchWaits) CommandDone(op string, d time.Duration, _ error) {
	if op != "fetch" {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.n++
	w.total += d
	if d > 50*time.Microsecond {
		w.long++
	}
}

func (w *fetchWaits) report(b *testing.B) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n == 0 {
		return
	}
	b.ReportMetric(float64(w.total.Microseconds())/float64(w.n), "wait-µs/op")
	b.ReportMetric(100*float64(w.long)/float64(w.n), "waited-%")
}

// plainBackend hides optional interfaces of its sessions.
type plainBackend struct{ pop3.Backend }

func (pb plainBackend) Login(ctx context.Context, ci *pop3.ConnInfo, cred *pop3.Credentials) (pop3.Session, error) {
	s, err := pb.Backend.Login(ctx, ci, cred)
	if err != nil {
		return nil, err
	}
	return plainSession{s}, nil
}

type plainSession struct{ pop3.Session }

// leanPOP3 reads answers line by line and keeps nothing, so that the
// client's own cost stays small next to the bridge's.
type leanPOP3 struct {
	net.Conn
	r *bufio.Reader
}

func dialLeanPOP3(b *testing.B, addr string) *leanPOP3 {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	c := &leanPOP3{Conn: conn, r: bufio.NewReaderSize(conn, 64<<10)}
	c.status(b)
	return c
}

func (c *leanPOP3) status(b *testing.B) {
	line, err := c.r.ReadSlice('\n')
	if err != nil || !bytes.HasPrefix(line, []byte("+OK")) {
		b.Fatalf("%q, %v", line, err)
	}
}

func (c *leanPOP3) cmd(b *testing.B, cmd string) {
	if _, err := io.WriteString(c, cmd+"\r\n"); err != nil {
		b.Fatal(err)
	}
	c.status(b)
}

// retr returns the octets of message n as sent (dot-stuffed, the
// terminator left out).
func (c *leanPOP3) retr(b *testing.B, n int) int {
	c.cmd(b, "RETR "+strconv.Itoa(n))
	total := 0
	bol := true
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil && err != bufio.ErrBufferFull {
			b.Fatal(err)
		}
		if bol && len(line) == 3 && string(line) == ".\r\n" {
			return total
		}
		total += len(line)
		bol = err == nil
	}
}
