package imapupstream

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

// BenchmarkFetch reads 100 KB messages one after the other from a real
// Dovecot, as a POP3 client's RETRs do, side by side in one run:
//
//   - raw: the floor, a bare socket client sending one UID FETCH uid
//     (BODY.PEEK[]) at a time and reading the literal;
//   - Fetch: Conn.Fetch, one message at a time;
//   - FetchAhead: Conn.FetchAhead with the next UID sent while the current
//     message is read (what a session does for sequential RETRs).
//
// Each op is one message; compare ns/op, MB/s and allocs/op.
func BenchmarkFetch(b *testing.B) {
	const n, size = 200, 100 << 10
	srv := dovecot.Start(b)
	user := dovecot.User(b)
	srv.FillMaildir(b, user, n, func(i int) []byte { return benchMessage(i, size) })

	d, err := NewDialer(Config{Address: srv.IMAPAddr, TLS: TLSNone, CommandTimeout: time.Minute}, nil)
	if err != nil {
		b.Fatal(err)
	}
	open := func(b *testing.B) (*Conn, []MessageMeta) {
		c, err := d.Login(context.Background(), Credentials{Username: user, Password: srv.Password})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		if _, err := c.Select(context.Background()); err != nil {
			b.Fatal(err)
		}
		metas, err := c.Snapshot(context.Background())
		if err != nil || len(metas) != n {
			b.Fatalf("snapshot: %d messages, %v", len(metas), err)
		}
		return c, metas
	}
	buf := make([]byte, 16<<10) // pop3's stream buffer

	b.Run("raw", func(b *testing.B) {
		c, metas := open(b) // for the UIDs
		c.Close()
		rc := dialRawIMAP(b, srv.IMAPAddr, user, srv.Password)
		defer rc.Close()
		b.SetBytes(size)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if got := rc.fetch(b, metas[i%n].UID, buf); got < size {
				b.Fatalf("raw fetch: %d octets", got)
			}
		}
	})

	b.Run("Fetch", func(b *testing.B) {
		c, metas := open(b)
		b.SetBytes(size)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			r, err := c.Fetch(context.Background(), metas[i%n])
			if err != nil {
				b.Fatal(err)
			}
			if got := drain(b, r, buf); got < size {
				b.Fatalf("Fetch: %d octets", got)
			}
		}
	})

	b.Run("FetchAhead", func(b *testing.B) {
		c, metas := open(b)
		b.SetBytes(size)
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			r, err := c.FetchAhead(context.Background(), metas[i%n], metas[(i+1)%n].UID)
			if err != nil {
				b.Fatal(err)
			}
			if got := drain(b, r, buf); got < size {
				b.Fatalf("FetchAhead: %d octets", got)
			}
		}
	})
}

// benchMessage is message i of about size octets, CRLF lines as Dovecot
// stores them.
func benchMessage(i, size int) []byte {
	var m bytes.Buffer
	fmt.Fprintf(&m, "From: a@example.org\r\nTo: b@example.org\r\nSubject: bench %d\r\nMessage-ID: <bench.%d@example.org>\r\n\r\n", i, i)
	line := strings.Repeat("0123456789", 7) + "\r\n"
	for m.Len() < size {
		m.WriteString(line)
	}
	return m.Bytes()
}

func drain(b *testing.B, r io.ReadCloser, buf []byte) int64 {
	var total int64
	for {
		n, err := r.Read(buf)
		total += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
	}
	if err := r.Close(); err != nil {
		b.Fatal(err)
	}
	return total
}

// rawIMAP is the least an IMAP client can do to fetch a message.
type rawIMAP struct {
	c   net.Conn
	r   *bufio.Reader
	tag int
}

func dialRawIMAP(b *testing.B, addr, user, password string) *rawIMAP {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	rc := &rawIMAP{c: c, r: bufio.NewReaderSize(c, 64<<10)}
	if _, err := rc.r.ReadSlice('\n'); err != nil {
		b.Fatal(err)
	}
	rc.cmd(b, fmt.Sprintf("LOGIN %q %q", user, password), nil)
	rc.cmd(b, "SELECT INBOX", nil)
	return rc
}

func (rc *rawIMAP) Close() error { return rc.c.Close() }

// cmd sends one command and reads to its tagged OK, handing each literal to
// lit.
func (rc *rawIMAP) cmd(b *testing.B, cmd string, lit func(r io.Reader)) {
	rc.tag++
	tag := "r" + strconv.Itoa(rc.tag)
	if _, err := io.WriteString(rc.c, tag+" "+cmd+"\r\n"); err != nil {
		b.Fatal(err)
	}
	for {
		line, err := rc.r.ReadSlice('\n')
		if err != nil {
			b.Fatal(err)
		}
		if bytes.HasPrefix(line, []byte(tag+" ")) {
			if !bytes.HasPrefix(line[len(tag)+1:], []byte("OK")) {
				b.Fatalf("%s: %s", cmd, line)
			}
			return
		}
		if i := bytes.LastIndexByte(line, '{'); i >= 0 && bytes.HasSuffix(line, []byte("}\r\n")) {
			size, err := strconv.ParseInt(string(line[i+1:len(line)-3]), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			lr := &io.LimitedReader{R: rc.r, N: size}
			if lit != nil {
				lit(lr)
			}
			if _, err := io.Copy(io.Discard, lr); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func (rc *rawIMAP) fetch(b *testing.B, uid uint32, buf []byte) int64 {
	var total int64
	rc.cmd(b, "UID FETCH "+strconv.FormatUint(uint64(uid), 10)+" (BODY.PEEK[])", func(r io.Reader) {
		for {
			n, err := r.Read(buf)
			total += int64(n)
			if err != nil {
				return
			}
		}
	})
	return total
}
