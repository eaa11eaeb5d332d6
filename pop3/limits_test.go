package pop3

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// dialFrom connects from the local IP address ip (any 127.0.0.0/8 address
// works on Linux) and returns the first line the server sends.
func (e *testEnv) dialFrom(ip string) (*client, string) {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", e.addr)
	if err != nil {
		if os.Getenv("CI") != "" { // Linux routes all of 127/8 to lo: this must work in CI
			e.t.Fatalf("cannot dial from %s: %v", ip, err)
		}
		e.t.Skipf("cannot dial from %s: %v", ip, err)
	}
	e.t.Cleanup(func() { nc.Close() })
	c := &client{t: e.t, nc: nc, r: bufio.NewReader(nc)}
	return c, c.line()
}

// waitAdmitted dials until the server greets again: a slot is released
// when the connection's goroutine ends, a moment after the client saw EOF.
func (e *testEnv) waitAdmitted(ip string) *client {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, g := e.dialFrom(ip)
		if strings.HasPrefix(g, "+OK") {
			return c
		}
		c.nc.Close()
		if time.Now().After(deadline) {
			e.t.Fatalf("still refused: %q", g)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestMaxConnections(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) { s.MaxConnections = 2 })
	c1 := e.dial()
	c2, _ := e.dialFrom("127.0.0.2")
	c3, g := e.dialFrom("127.0.0.3")
	if g != "-ERR [SYS/TEMP] too many connections, try again later" {
		t.Fatalf("third connection: %q", g)
	}
	c3.expectEOF()
	// The first ones still work.
	c1.login()
	c1.expectOK("STAT")
	c2.login()
	c1.expectOK("QUIT")
	c1.expectEOF()
	c := e.waitAdmitted("127.0.0.1")
	c.login()
	c.expectOK("STAT")
	if b.loginCount() != 3 {
		t.Fatalf("%d logins", b.loginCount())
	}
}

func TestMaxConnectionsPerIP(t *testing.T) {
	e := startServer(t, newMemBackend(testMessages...), func(s *Server) { s.MaxConnectionsPerIP = 2 })
	c1 := e.dial()
	c2 := e.dial()
	c3, g := e.dialGreeting()
	if g != "-ERR [SYS/TEMP] too many connections from your address, try again later" {
		t.Fatalf("third connection: %q", g)
	}
	c3.expectEOF()
	// Another address is not affected.
	other, g := e.dialFrom("127.0.0.2")
	if !strings.HasPrefix(g, "+OK") {
		t.Fatalf("connection from another address: %q", g)
	}
	other.login()
	c1.login()
	c1.expectOK("STAT")
	// A dropped connection frees its slot too.
	c2.nc.Close()
	c := e.waitAdmitted("127.0.0.1")
	c.login()
	c.expectOK("STAT")
	e.srv.mu.Lock()
	defer e.srv.mu.Unlock()
	if e.srv.active != 3 || e.srv.perIP["127.0.0.1"] != 2 || e.srv.perIP["127.0.0.2"] != 1 {
		t.Fatalf("active %d, per IP %v", e.srv.active, e.srv.perIP)
	}
}

// TestMaxConnectionsImplicitTLS: a refused client on an implicit TLS port is
// closed at once, before any handshake.
func TestMaxConnectionsImplicitTLS(t *testing.T) {
	e := startServerLC(t, newMemBackend(testMessages...), ListenerConfig{TLS: TLSImplicit}, func(s *Server) {
		s.MaxConnections = 1
	})
	c := e.dial()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// We send no ClientHello: only a refusal closes the connection.
	if got := readAllFrom(nc); got != "" {
		t.Fatalf("refused TLS client got %q", got)
	}
	c.login()
	c.expectOK("STAT")
	// A real TLS client that is refused fails its handshake.
	if tc, err := tls.Dial("tcp", e.addr, &tls.Config{RootCAs: e.pool}); err == nil {
		tc.Close()
		t.Fatal("TLS handshake with a refused connection succeeded")
	}
}

func TestConnectionCountsReleased(t *testing.T) {
	e := startServer(t, newMemBackend(testMessages...), func(s *Server) {
		s.MaxConnections = 100
		s.MaxConnectionsPerIP = 100
	})
	for range 5 {
		c := e.dial()
		c.expectOK("QUIT")
		c.expectEOF()
	}
	c := e.dial()
	c.nc.Close()
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	if e.srv.active != 0 || len(e.srv.perIP) != 0 {
		t.Fatalf("after Close: active %d, per IP %v", e.srv.active, e.srv.perIP)
	}
}

func TestLoginTimeout(t *testing.T) {
	const timeout = 500 * time.Millisecond
	e := startServer(t, newMemBackend(testMessages...), func(s *Server) {
		s.LoginTimeout = timeout
		s.AuthTimeout = 10 * time.Second
	})
	start := time.Now()
	c := e.dial()
	// Activity does not extend it.
	for range 3 {
		c.multi("CAPA")
		time.Sleep(timeout / 5)
	}
	if got := c.line(); got != "-ERR login timeout" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
	if took := time.Since(start); took < timeout || took > timeout+5*time.Second {
		t.Fatalf("closed after %v, want about %v", took, timeout)
	}

	// It ends with login.
	c = e.dial()
	c.login()
	time.Sleep(timeout + 100*time.Millisecond)
	c.expectOK("STAT")

	// It bounds a SASL exchange too.
	c = e.dial()
	c.cmd("AUTH PLAIN")
	if got := c.line(); got != "-ERR login timeout" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
}

func TestLoginTimeoutSTLS(t *testing.T) {
	e := startServerLC(t, newMemBackend(), ListenerConfig{TLS: TLSStartTLS}, func(s *Server) {
		s.LoginTimeout = 300 * time.Millisecond
	})
	c := e.dial()
	c.cmd("STLS")
	start := time.Now()
	c.expectEOF() // no handshake: the login deadline ends it
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("took %v", took)
	}
}

// fakeLimiter refuses an address after max failures.
type fakeLimiter struct {
	max   int
	retry time.Duration

	mu       sync.Mutex
	failures map[string]int
	allows   int
}

func (f *fakeLimiter) Allow(remote net.Addr) (bool, time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.allows++
	return f.failures[ipKey(remote)] < f.max, f.retry
}

func (f *fakeLimiter) Failed(remote net.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failures == nil {
		f.failures = map[string]int{}
	}
	f.failures[ipKey(remote)]++
}

func (f *fakeLimiter) counts() (allows int, failures map[string]int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.allows, f.failures
}

func TestLoginLimiter(t *testing.T) {
	b := newMemBackend(testMessages...)
	lim := &fakeLimiter{max: 2, retry: 30 * time.Second}
	e := startServer(t, b, func(s *Server) {
		s.LoginLimiter = lim
		s.MaxBadCommandsAuth = -1
	})
	c := e.dial()
	c.expectOK("USER alice")
	c.expectErr("PASS wrong", "[AUTH]")
	c.expectErr("AUTH PLAIN "+b64("\x00alice\x00wrong"), "[AUTH]")
	// Now refused without asking the backend, and closed.
	c.expectOK("USER alice")
	if got := c.cmd("PASS secret"); got != "-ERR [LOGIN-DELAY] too many failed logins, try again in 30 seconds" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
	c = e.dial()
	if got := c.cmd("AUTH PLAIN " + b64("\x00alice\x00secret")); !strings.HasPrefix(got, "-ERR [LOGIN-DELAY]") {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
	if b.loginCount() != 2 {
		t.Fatalf("backend called %d times, want 2", b.loginCount())
	}
	// Another address may still log in.
	other, _ := e.dialFrom("127.0.0.2")
	other.login()
	allows, failures := lim.counts()
	if allows != 5 || failures["127.0.0.1"] != 2 || failures["127.0.0.2"] != 0 {
		t.Fatalf("allows %d failures %v", allows, failures)
	}

	// Failures that are not the client's doing are not reported.
	b2 := newMemBackend(testMessages...)
	b2.setLoginErr(&Error{Code: CodeSysTemp, Message: "upstream down"})
	lim2 := &fakeLimiter{max: 1}
	e = startServer(t, b2, func(s *Server) { s.LoginLimiter = lim2 })
	c = e.dial()
	for range 3 {
		c.expectOK("USER alice")
		c.expectErr("PASS secret", "[SYS/TEMP]")
	}
	if _, failures := lim2.counts(); len(failures) != 0 {
		t.Fatalf("failures %v", failures)
	}
}

func TestLoginDelayText(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0:                       "too many failed logins, try again later",
		-time.Second:            "too many failed logins, try again later",
		time.Millisecond:        "too many failed logins, try again in 1 seconds",
		1500 * time.Millisecond: "too many failed logins, try again in 2 seconds",
		time.Minute:             "too many failed logins, try again in 60 seconds",
	} {
		if got := loginDelayText(d); got != want {
			t.Errorf("loginDelayText(%v) = %q", d, got)
		}
	}
}

func TestOutlookNoNULs(t *testing.T) {
	msg := "Subject: nul\x00\r\n\r\na\x00b\r\n\x00\x00\r\n.\x00\r\nend"
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprint(on), func(t *testing.T) {
			e := startServer(t, newMemBackend(msg), func(s *Server) { s.OutlookNoNULs = on })
			c := e.dial()
			c.login()
			conv := func(s string) string {
				if on {
					return strings.ReplaceAll(s, "\x00", "\x80")
				}
				return s
			}
			if got := c.cmd("LIST 1"); got != fmt.Sprintf("+OK 1 %d", len(msg)) {
				t.Fatalf("LIST: %q", got)
			}
			if got := c.cmd("RETR 1"); got != fmt.Sprintf("+OK %d octets", len(msg)) {
				t.Fatalf("RETR: %q", got)
			}
			if body, want := string(c.body()), conv(msg)+"\r\n"; body != want {
				t.Fatalf("RETR body %q, want %q", body, want)
			}
			c.expectOK("TOP 1 1")
			if body, want := string(c.body()), conv("Subject: nul\x00\r\n\r\na\x00b\r\n"); body != want {
				t.Fatalf("TOP body %q, want %q", body, want)
			}
		})
	}
}
