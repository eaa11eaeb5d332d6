package pop3

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"regexp"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestPanicInRetrieve(t *testing.T) {
	b := newMemBackend(testMessages...)
	b.setup = func(s *memSession) { s.panicRetr = true }
	e := startServer(t, b, nil)
	other := e.dial() // already open while the first one panics
	c := e.dial()
	c.login()
	c.expectErr("RETR 1", "[SYS/TEMP] internal server error")
	c.expectEOF()
	if updates, closes := b.session(t, 0).waitClosed(t); len(updates) != 0 || closes != 1 {
		t.Fatalf("updates %v closes %d", updates, closes)
	}
	// The server and its other connections go on.
	other.login()
	other.expectOK("STAT")
	c = e.dial()
	c.login()
	c.expectOK("LIST 1")
}

// A panic in Backend.Login, which runs on a goroutine of its own, ends the
// connection as one on the connection's goroutine does, and its log line
// has the stack of where it happened.
func TestPanicInLogin(t *testing.T) {
	b := newMemBackend(testMessages...)
	b.loginHook = func() { panic("test panic in Login") }
	core, logs := observer.New(zap.DebugLevel)
	e := startServer(t, b, func(s *Server) { s.Logger = zap.New(core) })
	c := e.dial()
	c.expectOK("USER alice")
	c.expectErr("PASS secret", "[SYS/TEMP] internal server error")
	c.expectEOF()
	var found bool
	for _, l := range logs.FilterMessage("panic in POP3 session; connection closed").All() {
		f := l.ContextMap()
		stack, _ := f["stack"].(string)
		if f["panic"] == "test panic in Login" && strings.Contains(stack, "memBackend).Login") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no log line with the panic and the stack of Login: %v", logs.All())
	}
	b.mu.Lock()
	b.loginHook = nil
	b.mu.Unlock()
	c = e.dial()
	c.login()
	c.expectOK("STAT")
}

// Login runs on a goroutine other than the connection's, so that the
// connection's goroutine does not keep the stack a login grew while the
// session idles.
func TestLoginRunsAside(t *testing.T) {
	b := newMemBackend(testMessages...)
	stacks := make(chan string, 1)
	b.loginHook = func() { stacks <- string(debug.Stack()) }
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	stack := <-stacks
	if !strings.Contains(stack, "memBackend).Login") || strings.Contains(stack, "(*conn).serve") {
		t.Fatalf("Login ran on the connection's goroutine:\n%s", stack)
	}
	c.expectOK("STAT")
}

func TestPanicInMessages(t *testing.T) {
	b := newMemBackend(testMessages...)
	b.setup = func(s *memSession) { s.panicMsgs = true }
	e := startServer(t, b, nil)
	c := e.dial()
	c.expectOK("USER alice")
	c.expectErr("PASS secret", "[SYS/TEMP] internal server error")
	c.expectEOF()
	if _, closes := b.session(t, 0).waitClosed(t); closes != 1 {
		t.Fatalf("Close called %d times", closes)
	}
}

func TestShutdownIdleSession(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	c.expectOK("DELE 1")
	const grace = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	if err := e.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took < grace {
		t.Fatalf("Shutdown returned after %v, before the grace period", took)
	}
	// Shutdown returns only once the sessions are closed.
	s := b.session(t, 0)
	s.mu.Lock()
	updates, closes := s.updates, s.closes
	s.mu.Unlock()
	if len(updates) != 0 || closes != 1 {
		t.Fatalf("updates %v, closes %d; want a close and no update", updates, closes)
	}
	c.expectEOF()
	if err := e.waitServe(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	if _, err := net.Dial("tcp", e.addr); err == nil {
		t.Fatal("the listener still accepts after Shutdown")
	}
}

func TestShutdownWaitsForQuit(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	c.expectOK("DELE 2")
	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	// Serve returning shows that Shutdown is under way.
	if err := e.waitServe(); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
	c.expectOK("LIST") // the session still works
	c.body()
	c.expectOK("QUIT")
	c.expectEOF()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	updates, _ := b.session(t, 0).waitClosed(t)
	if len(updates) != 1 || !slices.Equal(updates[0], []int{2}) {
		t.Fatalf("updates %v", updates)
	}
}

func TestServeAfterClose(t *testing.T) {
	srv := &Server{Backend: newMemBackend()}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Close = %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("listener not closed: %v", err)
	}
	if err := srv.Shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown after Close = %v", err)
	}
}

func TestServeListenerConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for _, lc := range []ListenerConfig{{TLS: TLSStartTLS}, {TLS: TLSImplicit}, {TLS: TLSMode(9)}} {
		srv := &Server{Backend: newMemBackend()}
		if err := srv.ServeListener(ln, lc); err == nil || errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeListener(%v) = %v, want a configuration error", lc.TLS, err)
		}
	}
	if err := (&Server{}).Serve(ln); err == nil || errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve without a backend = %v", err)
	}
	if got := fmt.Sprint(TLSNone, TLSStartTLS, TLSImplicit, TLSMode(9)); got != "none starttls implicit TLSMode(9)" {
		t.Errorf("TLSMode strings: %q", got)
	}
}

func TestCloseCancelsBackendContext(t *testing.T) {
	b := newMemBackend(testMessages...)
	entered := make(chan struct{})
	b.setup = func(s *memSession) { s.blockRetr = entered }
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	c.send("RETR 1")
	<-entered
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	// Close returned, so the session is already closed.
	s := b.session(t, 0)
	s.mu.Lock()
	closes, updates := s.closes, s.updates
	s.mu.Unlock()
	if closes != 1 || len(updates) != 0 {
		t.Fatalf("closes %d updates %v", closes, updates)
	}
}

func TestIdleTimeouts(t *testing.T) {
	t.Run("before login", func(t *testing.T) {
		t.Parallel()
		e := startServer(t, newMemBackend(), func(s *Server) { s.AuthTimeout = 50 * time.Millisecond })
		c := e.dial()
		if got := c.line(); got != "-ERR disconnected for inactivity" {
			t.Fatalf("got %q", got)
		}
		c.expectEOF()
	})
	t.Run("after login", func(t *testing.T) {
		t.Parallel()
		b := newMemBackend(testMessages...)
		e := startServer(t, b, func(s *Server) {
			s.AuthTimeout = 10 * time.Second
			s.IdleTimeout = 500 * time.Millisecond
		})
		c := e.dial()
		c.login()
		c.expectOK("DELE 1")
		if got := c.line(); got != "-ERR disconnected for inactivity" {
			t.Fatalf("got %q", got)
		}
		c.expectEOF()
		if updates, closes := b.session(t, 0).waitClosed(t); len(updates) != 0 || closes != 1 {
			t.Fatalf("updates %v closes %d", updates, closes)
		}
	})
}

// endless is a message reader that never ends, for a client that stops
// reading.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = "0123456789abcdef\r\n"[i%18]
	}
	return len(p), nil
}

func TestWriteTimeout(t *testing.T) {
	b := newMemBackend(testMessages...)
	b.setup = func(s *memSession) { s.bodies = map[int]io.Reader{1: endless{}} }
	e := startServer(t, b, func(s *Server) { s.WriteTimeout = 100 * time.Millisecond })
	c := e.dial()
	c.login()
	c.send("RETR 1") // and never read the answer
	if updates, closes := b.session(t, 0).waitClosed(t); len(updates) != 0 || closes != 1 {
		t.Fatalf("updates %v closes %d", updates, closes)
	}
}

func TestSessionIDs(t *testing.T) {
	b := newMemBackend()
	e := startServer(t, b, nil)
	for range 3 {
		c := e.dial()
		c.login()
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	hex := regexp.MustCompile(`^[0-9a-f]{12}$`)
	seen := map[string]bool{}
	for _, ci := range b.infos {
		if !hex.MatchString(ci.ID) || seen[ci.ID] {
			t.Fatalf("bad or repeated session id %q", ci.ID)
		}
		seen[ci.ID] = true
	}
}

func TestLogs(t *testing.T) {
	const secret = "hunter2-Secret"
	const bodyMark = "BODY-MARKER-1234"
	b := newMemBackend("Subject: s\r\n\r\n" + bodyMark + "\r\n")
	b.users[testUser] = secret
	core, logs := observer.New(zapcore.DebugLevel)
	e := startServer(t, b, func(s *Server) {
		s.Logger = zap.New(core)
		s.MaxBadCommandsAuth = -1
	})
	c := e.dial()
	c.expectOK("USER alice")
	c.expectErr("PASS "+secret+"x", "[AUTH]")
	c.expectErr(secret, "unknown command") // a confused client typing its password
	c.expectOK("USER alice")
	c.expectOK("PASS " + secret)
	c.expectOK("RETR 1")
	c.body()
	c.expectOK("TOP 1 5")
	c.body()
	c.expectOK("QUIT")
	c.expectEOF()
	b.session(t, 0).waitClosed(t)
	if err := e.srv.Close(); err != nil { // all logging is done once Close returns
		t.Fatal(err)
	}

	var sawRETR bool
	for _, entry := range logs.All() {
		text := entry.Message + fmt.Sprint(entry.ContextMap())
		if strings.Contains(text, secret) || strings.Contains(text, bodyMark) {
			t.Errorf("log entry leaks a secret or message text: %s", text)
		}
		if _, ok := entry.ContextMap()["session"]; !ok {
			t.Errorf("log entry without session id: %s", text)
		}
		if _, ok := entry.ContextMap()["remote"]; !ok {
			t.Errorf("log entry without remote address: %s", text)
		}
		if entry.Message == "command" && entry.ContextMap()["cmd"] == "RETR" {
			sawRETR = true
		}
	}
	if !sawRETR {
		t.Error("no debug log of the RETR command")
	}
}

func TestIsLoopback(t *testing.T) {
	for _, tt := range []struct {
		addr net.Addr
		want bool
	}{
		{&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, true},
		{&net.TCPAddr{IP: net.IPv4(127, 1, 2, 3)}, true},
		{&net.TCPAddr{IP: net.IPv6loopback}, true},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1")}, true},
		{&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1)}, false},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1")}, false},
		{&net.UnixAddr{Name: "/run/pop3.sock", Net: "unix"}, false},
		{&net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, true},
		{nil, false},
	} {
		if got := IsLoopback(tt.addr); got != tt.want {
			t.Errorf("IsLoopback(%v) = %v", tt.addr, got)
		}
	}
}

// testCert makes a self-signed certificate for 127.0.0.1.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

func TestImplicitTLS(t *testing.T) {
	cert, pool := testCert(t)
	b := newMemBackend(testMessages...)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{
		Backend:        b,
		TLSConfig:      &tls.Config{Certificates: []tls.Certificate{cert}},
		AllowPlaintext: func(*ConnInfo) bool { return false },
	}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeTLS = %v", err)
		}
	}()

	tc, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	c := &client{t: t, nc: tc, r: bufio.NewReader(tc)}
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting %q", g)
	}
	// Plaintext login is refused only on plaintext connections.
	if caps := c.multi("CAPA"); !slices.Contains(caps, "USER") {
		t.Fatalf("CAPA over TLS lacks USER: %q", caps)
	}
	c.login()
	c.expectOK("RETR 1")
	if body := c.body(); string(body) != testMessages[0] {
		t.Fatalf("body %q", body)
	}
	c.expectOK("QUIT")
	b.mu.Lock()
	defer b.mu.Unlock()
	if ci := b.infos[0]; ci.TLS == nil || !ci.TLS.HandshakeComplete {
		t.Fatalf("ConnInfo.TLS = %+v", ci.TLS)
	}
}

func TestTLSHandshakeFailure(t *testing.T) {
	cert, _ := testCert(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Backend: newMemBackend(), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	served := make(chan error, 1)
	go func() { served <- srv.ServeTLS(ln) }()
	defer func() {
		srv.Close()
		<-served
	}()
	// A plaintext client on a TLS port gets no greeting, just a close.
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	fmt.Fprintf(nc, "USER alice\r\n")
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, _ := io.ReadAll(nc)
	if strings.Contains(string(got), "+OK") {
		t.Fatalf("plaintext client got %q", got)
	}
}
