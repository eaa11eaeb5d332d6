package pop3client_test

import (
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/pop3/pop3client"
)

// cycle reads s over and over.
type cycle struct {
	s   string
	off int
}

func (c *cycle) Read(p []byte) (int, error) {
	n := copy(p, c.s[c.off:])
	c.off = (c.off + n) % len(c.s)
	return n, nil
}

// replayClient is a client whose every command gets answer: the client's
// own cost, without a server's.
func replayClient(b *testing.B, answer string) *pop3client.Client {
	c, err := pop3client.NewClient(replay{r: io.MultiReader(strings.NewReader("+OK\r\n"), &cycle{s: answer})})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func BenchmarkListing(b *testing.B) {
	const entries = 10000
	var ans strings.Builder
	ans.WriteString("+OK\r\n")
	for i := range entries {
		fmt.Fprintf(&ans, "%d %08X%08X\r\n", i+1, i, 1234567)
	}
	ans.WriteString(".\r\n")
	c := replayClient(b, ans.String())
	list := make([]pop3client.Entry, 0, entries)
	b.SetBytes(int64(ans.Len()))
	b.ReportAllocs()
	for b.Loop() {
		var err error
		if list, err = c.AppendListing(list[:0], "UIDL"); err != nil || len(list) != entries {
			b.Fatal(len(list), err)
		}
	}
}

func BenchmarkRetr(b *testing.B) {
	msg := strings.Repeat("Received: from somewhere by somewhere else; a header line of some length\r\n", 20) +
		"\r\n" + strings.Repeat("body text of the message, with a line end: 76 octets or so\r\n.dotted\r\n", 2000)
	ans := "+OK\r\n" + strings.ReplaceAll(msg, "\r\n.", "\r\n..") + ".\r\n"
	c := replayClient(b, ans)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for b.Loop() {
		r, err := c.RetrReader(1)
		if err != nil {
			b.Fatal(err)
		}
		if n, err := io.Copy(io.Discard, r); err != nil || n != int64(len(msg)) {
			b.Fatal(n, err)
		}
	}
}
