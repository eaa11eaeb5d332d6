package pop3

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// testMessages is the maildrop of the default test user: dot lines, a bare
// LF body and a message without a final line ending.
var testMessages = []string{
	"Subject: one\r\nFrom: a@example.com\r\n\r\nline 1\r\n.\r\n..two dots\r\nlast line\r\n",
	"Subject: two\r\n\r\nbare LF body\n.dot\nsecond\n",
	"Subject: three\r\n\r\nno final newline",
}

const (
	testUser  = "alice"
	testPass  = "secret"
	testToken = "ya29.test-token"
)

// memBackend is a test double: a Backend that records what the server does
// with it and can inject failures. The in-memory Backend for everyone is
// pop3mem (used by the pop3_test tests); this package's own tests cannot
// import it, since pop3mem imports pop3.
type memBackend struct {
	msgs  [][]byte
	setup func(*memSession) // adjusts each new session before use

	mu        sync.Mutex
	users     map[string]string
	tokens    map[string]string // bearer tokens, for OAUTHBEARER and XOAUTH2
	loginErr  error             // returned by every Login when set
	loginHook func()            // called by every Login when set (before loginErr)
	logins    int
	creds     []Credentials
	infos     []ConnInfo
	sessions  []*memSession
}

func newMemBackend(msgs ...string) *memBackend {
	b := &memBackend{users: map[string]string{testUser: testPass}, tokens: map[string]string{testUser: testToken}}
	for _, m := range msgs {
		b.msgs = append(b.msgs, []byte(m))
	}
	return b
}

func (b *memBackend) Login(_ context.Context, ci *ConnInfo, cred *Credentials) (Session, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logins++
	b.creds = append(b.creds, *cred)
	b.infos = append(b.infos, *ci)
	if b.loginHook != nil {
		b.loginHook()
	}
	if b.loginErr != nil {
		return nil, b.loginErr
	}
	secrets, secret := b.users, cred.Password
	if cred.Mechanism == "OAUTHBEARER" || cred.Mechanism == "XOAUTH2" {
		secrets, secret = b.tokens, cred.Token
	}
	if want, ok := secrets[cred.Username]; !ok || want != secret {
		return nil, ErrAuthFailed
	}
	s := &memSession{msgs: b.msgs, closed: make(chan struct{})}
	if b.setup != nil {
		b.setup(s)
	}
	b.sessions = append(b.sessions, s)
	return s, nil
}

func (b *memBackend) loginCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.logins
}

func (b *memBackend) setLoginErr(err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.loginErr = err
}

// session returns the i-th session opened, failing if there is none.
func (b *memBackend) session(t *testing.T, i int) *memSession {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if i >= len(b.sessions) {
		t.Fatalf("session %d was never opened (%d sessions)", i, len(b.sessions))
	}
	return b.sessions[i]
}

// memSession is one opened maildrop of memBackend.
type memSession struct {
	msgs [][]byte

	// Injections, set by memBackend.setup.
	listing   []Message         // returned by Messages instead of msgs
	updateErr error             // returned by Update
	retrErr   map[int]error     // returned by Retrieve and Top
	failAfter map[int]int       // the reader fails after this many bytes
	chunk     int               // at most this many bytes per Read (0: all)
	panicRetr bool              // Retrieve panics
	blockRetr chan struct{}     // Retrieve closes it, then waits for ctx
	bodies    map[int]io.Reader // Retrieve returns this reader instead
	panicMsgs bool              // Messages panics

	mu            sync.Mutex
	messagesCalls int
	updates       [][]int
	closes        int
	retrieved     []int
	tops          [][2]int
	closed        chan struct{}
}

func (s *memSession) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.messagesCalls++
	if s.panicMsgs {
		panic("test panic in Messages")
	}
	if s.listing != nil {
		return s.listing
	}
	out := make([]Message, len(s.msgs))
	for i, m := range s.msgs {
		out[i] = Message{Size: int64(len(m)), UIDL: fmt.Sprintf("uid%04d", i+1)}
	}
	return out
}

func (s *memSession) reader(n int, data []byte) io.ReadCloser {
	var r io.Reader = bytes.NewReader(data)
	if k, ok := s.failAfter[n]; ok {
		r = io.MultiReader(bytes.NewReader(data[:min(k, len(data))]),
			iotestErrReader{errors.New("upstream connection lost")})
	}
	if s.chunk > 0 {
		r = &chunkReader{r: r, n: s.chunk}
	}
	return io.NopCloser(r)
}

func (s *memSession) Retrieve(ctx context.Context, n int) (io.ReadCloser, error) {
	if s.panicRetr {
		panic("test panic in Retrieve")
	}
	if s.blockRetr != nil {
		close(s.blockRetr)
		<-ctx.Done()
		return nil, fmt.Errorf("retrieve: %w", ctx.Err())
	}
	if err := s.retrErr[n]; err != nil {
		return nil, err
	}
	if r, ok := s.bodies[n]; ok {
		return io.NopCloser(r), nil
	}
	return s.reader(n, s.msgs[n-1]), nil
}

func (s *memSession) Top(_ context.Context, n int, lines int) (io.ReadCloser, error) {
	s.mu.Lock()
	s.tops = append(s.tops, [2]int{n, lines})
	s.mu.Unlock()
	if err := s.retrErr[n]; err != nil {
		return nil, err
	}
	return s.reader(n, topOf(s.msgs[n-1], lines)), nil
}

func (s *memSession) Retrieved(_ context.Context, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.retrieved = append(s.retrieved, n)
}

func (s *memSession) Update(_ context.Context, deleted []int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.updates = append(s.updates, deleted)
	return s.updateErr
}

func (s *memSession) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closes++
	if s.closes == 1 {
		close(s.closed)
	}
	return nil
}

// waitClosed waits for Session.Close and returns the recorded calls.
func (s *memSession) waitClosed(t *testing.T) (updates [][]int, closes int) {
	t.Helper()
	select {
	case <-s.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Session.Close was not called")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.updates, s.closes
}

func (s *memSession) retrievedCalls() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]int(nil), s.retrieved...)
}

func (s *memSession) topCalls() [][2]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([][2]int(nil), s.tops...)
}

// topOf returns the header of msg, the blank line and up to k body lines.
func topOf(msg []byte, k int) []byte {
	end := len(msg)
	i := 0
	// The header ends at the first empty line.
	for i < len(msg) {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			return msg
		}
		line := msg[i : i+j+1]
		i += j + 1
		if string(line) == "\r\n" || string(line) == "\n" {
			break
		}
	}
	for n := 0; n < k && i < end; n++ {
		j := bytes.IndexByte(msg[i:], '\n')
		if j < 0 {
			i = end
			break
		}
		i += j + 1
	}
	return msg[:i]
}

type iotestErrReader struct{ err error }

func (r iotestErrReader) Read([]byte) (int, error) { return 0, r.err }

// chunkReader returns at most n bytes per Read, to split lines and CRLFs.
type chunkReader struct {
	r io.Reader
	n int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(p) > c.n {
		p = p[:c.n]
	}
	return c.r.Read(p)
}

// testEnv is a running server on a loopback port.
type testEnv struct {
	t    *testing.T
	srv  *Server
	b    *memBackend
	addr string
	lc   ListenerConfig
	pool *x509.CertPool // trusts the server's certificate, for TLS modes

	serveDone chan struct{}
	serveErr  error
}

func startServer(t *testing.T, b *memBackend, configure func(*Server)) *testEnv {
	t.Helper()
	return startServerLC(t, b, ListenerConfig{}, configure)
}

// startServerLC is startServer with a listener configuration. For TLS modes
// it sets Server.TLSConfig (unless configure does) with a test certificate
// for 127.0.0.1 that e.pool trusts.
func startServerLC(t *testing.T, b *memBackend, lc ListenerConfig, configure func(*Server)) *testEnv {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{
		Backend:        b,
		Logger:         zaptest.NewLogger(t, zaptest.Level(zap.DebugLevel)),
		Implementation: "popbridge-test",
	}
	var pool *x509.CertPool
	if lc.TLS != TLSNone {
		var cert tls.Certificate
		cert, pool = testCert(t)
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}}
	}
	if configure != nil {
		configure(srv)
	}
	e := &testEnv{t: t, srv: srv, b: b, lc: lc, pool: pool, addr: ln.Addr().String(), serveDone: make(chan struct{})}
	go func() {
		e.serveErr = srv.ServeListener(ln, lc)
		close(e.serveDone)
	}()
	t.Cleanup(func() {
		if err := srv.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := e.waitServe(); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return e
}

func (e *testEnv) waitServe() error {
	select {
	case <-e.serveDone:
		return e.serveErr
	case <-time.After(10 * time.Second):
		e.t.Fatal("Serve did not return")
		return nil
	}
}

// client is a raw POP3 client for tests: it checks bytes, not meaning.
type client struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func (e *testEnv) dial() *client {
	e.t.Helper()
	c, g := e.dialGreeting()
	if !strings.HasPrefix(g, "+OK") {
		e.t.Fatalf("greeting %q", g)
	}
	return c
}

// dialGreeting connects and returns the greeting line.
func (e *testEnv) dialGreeting() (*client, string) {
	e.t.Helper()
	var nc net.Conn
	var err error
	if e.lc.TLS == TLSImplicit {
		nc, err = tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.pool})
	} else {
		nc, err = net.Dial("tcp", e.addr)
	}
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { nc.Close() })
	c := &client{t: e.t, nc: nc, r: bufio.NewReader(nc)}
	return c, c.line()
}

func (c *client) send(line string) {
	c.t.Helper()
	c.sendRaw(line + "\r\n")
}

func (c *client) sendRaw(s string) {
	c.t.Helper()
	_ = c.nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// line reads one line and returns it without CRLF.
func (c *client) line() string {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		c.t.Fatalf("read: %v (got %q)", err, s)
	}
	if !strings.HasSuffix(s, "\r\n") {
		c.t.Fatalf("line without CRLF: %q", s)
	}
	return strings.TrimSuffix(s, "\r\n")
}

func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.line()
}

func (c *client) expectOK(line string) string {
	c.t.Helper()
	resp := c.cmd(line)
	if !strings.HasPrefix(resp, "+OK") {
		c.t.Fatalf("%s: got %q, want +OK", line, resp)
	}
	return resp
}

func (c *client) expectErr(line, want string) {
	c.t.Helper()
	resp := c.cmd(line)
	if !strings.HasPrefix(resp, "-ERR") || !strings.Contains(resp, want) {
		c.t.Fatalf("%s: got %q, want -ERR containing %q", line, resp, want)
	}
}

// body reads a multi-line body after its status line and returns it
// un-stuffed, with its line endings, as a POP3 client would.
func (c *client) body() []byte {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := readMultiline(c.r)
	if err != nil {
		c.t.Fatalf("reading multi-line body: %v", err)
	}
	return b
}

// multi sends cmd, expects +OK and returns the lines of the body.
func (c *client) multi(cmd string) []string {
	c.t.Helper()
	c.expectOK(cmd)
	s := string(c.body())
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\r\n"), "\r\n")
}

func (c *client) login() {
	c.t.Helper()
	c.expectOK("USER " + testUser)
	c.expectOK("PASS " + testPass)
}

// expectEOF checks that the server closed the connection, and returns
// whatever it sent before.
func (c *client) expectEOF() []byte {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	rest, err := io.ReadAll(c.r)
	if err != nil && !isConnReset(err) {
		c.t.Fatalf("want EOF, got %v after %q", err, rest)
	}
	return rest
}

func isConnReset(err error) bool {
	var ne *net.OpError
	return errors.As(err, &ne) && !ne.Timeout()
}

// readMultiline reads a multi-line body up to its terminating ".", removes
// the byte-stuffing and returns the body. It insists on CRLF line endings,
// so it also checks the framing.
func readMultiline(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return out, fmt.Errorf("%w (after %q)", err, line)
		}
		if !bytes.HasSuffix(line, []byte("\r\n")) {
			return out, fmt.Errorf("line without CRLF: %q", line)
		}
		if string(line) == ".\r\n" {
			return out, nil
		}
		if line[0] == '.' {
			if line[1] != '.' {
				return out, fmt.Errorf("line starts with a single dot: %q", line)
			}
			line = line[1:]
		}
		out = append(out, line...)
	}
}

// normalize is what a message must look like after the trip through the
// dot-stuffing writer and readMultiline: bare LFs become CRLF and a
// non-empty message gets a final CRLF if it has no final line ending.
func normalize(msg []byte) []byte {
	out := make([]byte, 0, len(msg)+2)
	for i, b := range msg {
		if b == '\n' && (i == 0 || msg[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, b)
	}
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\r', '\n')
	}
	return out
}
