package imapupstream

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// wire records the raw protocol: both ways mixed (as go-imap's DebugWriter
// sees it) and, separately, what the client sent.
type wire struct {
	mu     sync.Mutex
	buf    bytes.Buffer // both ways
	out    bytes.Buffer // client to server (plaintext unless STARTTLS)
	writes []string     // out, one element per write
}

func (w *wire) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *wire) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// wrap records what the client writes on conn.
func (w *wire) wrap(conn net.Conn) net.Conn { return &wireConn{Conn: conn, w: w} }

type wireConn struct {
	net.Conn
	w *wire
}

func (c *wireConn) Write(p []byte) (int, error) {
	c.w.mu.Lock()
	c.w.out.Write(p)
	c.w.writes = append(c.w.writes, string(p))
	c.w.mu.Unlock()
	return c.Conn.Write(p)
}

// sent returns what the client wrote.
func (w *wire) sent() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.out.String()
}

// writeList returns what the client wrote, one element per write.
func (w *wire) writeList() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.writes)
}

// commands returns the command lines the client sent, without their tags.
func (w *wire) commands() []string {
	w.mu.Lock()
	sent := w.out.String()
	w.mu.Unlock()
	var out []string
	for _, line := range strings.Split(sent, "\n") {
		line = strings.TrimRight(line, "\r")
		// go-imap's tags start with T, the pre-login step's with P and
		// the lean commands' with L.
		if len(line) > 1 && strings.IndexByte("TPL", line[0]) >= 0 && line[1] >= '0' && line[1] <= '9' {
			if _, rest, ok := strings.Cut(line, " "); ok {
				out = append(out, rest)
			}
		}
	}
	return out
}

// countCommands counts the commands that start with prefix.
func (w *wire) countCommands(prefix string) int {
	n := 0
	for _, c := range w.commands() {
		if strings.HasPrefix(c, prefix) {
			n++
		}
	}
	return n
}

// env is a Dovecot, a user of it and a way to make Dialers for it.
type env struct {
	srv  *dovecot.Server
	user string
	logs *observer.ObservedLogs
	log  *zap.Logger

	mu    sync.Mutex
	sizes map[uint32]int64 // of the messages append added
}

func newEnv(t *testing.T, opts ...dovecot.Option) *env {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	return &env{srv: dovecot.Start(t, opts...), user: dovecot.User(t), logs: logs, log: zap.New(core)}
}

func (e *env) config() Config {
	return Config{
		Address:        e.srv.IMAPAddr,
		TLS:            TLSNone,
		ConnectTimeout: 10 * time.Second,
		CommandTimeout: 20 * time.Second,
	}
}

func (e *env) dialer(t *testing.T, cfg Config, trace *wire) *Dialer {
	t.Helper()
	d, err := NewDialer(cfg, e.log)
	if err != nil {
		t.Fatal(err)
	}
	if trace != nil {
		d.trace = trace
		d.wrapConn = trace.wrap
	}
	return d
}

// open logs in as the env's user with cfg, selects and returns the Conn
// (closed at cleanup).
func (e *env) open(t *testing.T, cfg Config, trace *wire) (*Conn, *Mailbox) {
	t.Helper()
	c, err := e.dialer(t, cfg, trace).Login(context.Background(), Credentials{Username: e.user, Password: e.srv.Password})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	mb, err := c.Select(context.Background())
	if err != nil {
		t.Fatalf("Select: %v", err)
	}
	return c, mb
}

func (e *env) append(t *testing.T, msg string, flags ...imap.Flag) uint32 {
	t.Helper()
	uid := e.srv.Append(t, e.user, "INBOX", []byte(msg), flags...)
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sizes == nil {
		e.sizes = make(map[uint32]int64)
	}
	e.sizes[uid] = int64(len(msg))
	return uid
}

// meta is the listing of a message that append added (of size 0 for any
// other UID, which is only ever one that does not exist).
func (e *env) meta(uid uint32) MessageMeta {
	e.mu.Lock()
	defer e.mu.Unlock()
	return MessageMeta{UID: uid, Size: e.sizes[uid]}
}

// other returns another client of the same user, INBOX selected.
func (e *env) other(t *testing.T) *imapclient.Client {
	t.Helper()
	c := e.srv.Client(t, e.user)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	return c
}

// state returns UID → flags of the user's mailbox, seen by another client.
func (e *env) state(t *testing.T, mailbox string) map[uint32][]imap.Flag {
	t.Helper()
	c := e.srv.Client(t, e.user)
	data, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("EXAMINE %s: %v", mailbox, err)
	}
	out := map[uint32][]imap.Flag{}
	if data.NumMessages == 0 {
		return out
	}
	msgs, err := c.Fetch(imap.SeqSet{imap.SeqRange{Start: 1, Stop: 0}}, &imap.FetchOptions{UID: true, Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		out[uint32(m.UID)] = m.Flags
	}
	return out
}

func hasFlag(flags []imap.Flag, f imap.Flag) bool { return slices.Contains(flags, f) }

// msg builds a small message with CRLF line ends.
func msg(subject string, bodyLines ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "From: a@example.org\r\nTo: b@example.org\r\nSubject: %s\r\nMessage-ID: <%s@example.org>\r\n\r\n", subject, strings.ReplaceAll(subject, " ", "."))
	for _, l := range bodyLines {
		b.WriteString(l + "\r\n")
	}
	return b.String()
}
