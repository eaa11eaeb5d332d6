package pop3

import (
	"bufio"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

// starttls sends STLS, checks the answer, completes the TLS handshake and
// returns the client over TLS.
func (e *testEnv) starttls(c *client) *client {
	e.t.Helper()
	if got := c.cmd("STLS"); got != "+OK Begin TLS negotiation" {
		e.t.Fatalf("STLS: %q", got)
	}
	return e.tlsHandshake(c)
}

// tlsHandshake starts TLS on c once the server said +OK to STLS. Nothing may
// have been sent in the clear after that +OK.
func (e *testEnv) tlsHandshake(c *client) *client {
	e.t.Helper()
	if n := c.r.Buffered(); n != 0 {
		e.t.Fatalf("%d bytes in the clear after the STLS answer", n)
	}
	tc := tls.Client(c.nc, &tls.Config{RootCAs: e.pool, ServerName: "127.0.0.1"})
	_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
	if err := tc.Handshake(); err != nil {
		e.t.Fatalf("TLS handshake after STLS: %v", err)
	}
	_ = tc.SetDeadline(time.Time{})
	return &client{t: e.t, nc: tc, r: bufio.NewReader(tc)}
}

var baseCaps = []string{"TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE"}

func capsWith(extra ...string) []string {
	return append(append(slices.Clone(baseCaps), extra...), "IMPLEMENTATION popbridge-test")
}

// TestCAPAByListener checks the exact capability lists before login, after
// STLS and after login, on each kind of listener, with plaintext login
// allowed and refused.
func TestCAPAByListener(t *testing.T) {
	const sasl = "SASL PLAIN LOGIN OAUTHBEARER XOAUTH2"
	for _, tt := range []struct {
		name      string
		mode      TLSMode
		plaintext bool
		before    []string // on connect
		afterSTLS []string // nil: no STLS on this listener
		after     []string // after login; nil: cannot log in
	}{
		{"none/allowed", TLSNone, true, capsWith("USER", sasl), nil, capsWith()},
		{"none/refused", TLSNone, false, capsWith(), nil, nil},
		{"starttls/allowed", TLSStartTLS, true, capsWith("STLS", "USER", sasl), capsWith("USER", sasl), capsWith()},
		{"starttls/refused", TLSStartTLS, false, capsWith("STLS"), capsWith("USER", sasl), capsWith()},
		{"implicit/allowed", TLSImplicit, true, capsWith("USER", sasl), nil, capsWith()},
		{"implicit/refused", TLSImplicit, false, capsWith("USER", sasl), nil, capsWith()},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := startServerLC(t, newMemBackend(testMessages...), ListenerConfig{TLS: tt.mode}, func(s *Server) {
				s.Mechanisms = SupportedMechanisms()
				s.AllowPlaintext = func(*ConnInfo) bool { return tt.plaintext }
			})
			c := e.dial()
			if got := c.multi("CAPA"); !slices.Equal(got, tt.before) {
				t.Fatalf("CAPA before login:\n got %q\nwant %q", got, tt.before)
			}
			if tt.afterSTLS != nil {
				c = e.starttls(c)
				if got := c.multi("CAPA"); !slices.Equal(got, tt.afterSTLS) {
					t.Fatalf("CAPA after STLS:\n got %q\nwant %q", got, tt.afterSTLS)
				}
			}
			if tt.after == nil {
				c.expectErr("USER alice", "[AUTH] Plaintext authentication disallowed")
				return
			}
			c.login()
			if got := c.multi("CAPA"); !slices.Equal(got, tt.after) {
				t.Fatalf("CAPA after login:\n got %q\nwant %q", got, tt.after)
			}
			// Without STLS on a STARTTLS listener, plaintext login (where
			// allowed) ends with the same capabilities.
			if tt.afterSTLS != nil && tt.plaintext {
				c := e.dial()
				c.login()
				if got := c.multi("CAPA"); !slices.Equal(got, tt.after) {
					t.Fatalf("CAPA after plaintext login:\n got %q\nwant %q", got, tt.after)
				}
			}
		})
	}
}

func TestSTLS(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServerLC(t, b, ListenerConfig{TLS: TLSStartTLS}, func(s *Server) {
		s.AllowPlaintext = func(*ConnInfo) bool { return false }
	})
	c := e.dial()
	c.expectErr("STLS now", "too many arguments")
	c = e.starttls(c)
	c.expectErr("STLS", "TLS is already active") // a second STLS
	c.expectOK("CAPA")
	c.body()
	c.login()
	c.expectErr("STLS", "not valid after login")
	c.expectOK("STAT")
	c.expectOK("QUIT")
	c.expectEOF()
	b.mu.Lock()
	defer b.mu.Unlock()
	if ci := b.infos[0]; ci.TLS == nil || !ci.TLS.HandshakeComplete {
		t.Fatalf("ConnInfo.TLS after STLS = %+v", ci.TLS)
	}
}

// TestSTLSInjection sends a command in the same packet as STLS: it was
// sent in the clear, so it must be dropped, never executed over TLS
// (CVE-2011-0411).
func TestSTLSInjection(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServerLC(t, b, ListenerConfig{TLS: TLSStartTLS}, nil)
	c := e.dial()
	c.sendRaw("STLS\r\nUSER alice\r\n")
	if got := c.line(); got != "+OK Begin TLS negotiation" {
		t.Fatalf("STLS: %q", got)
	}
	// Had USER run, its +OK would come in the clear here and break the
	// handshake; tlsHandshake also checks nothing else came.
	c = e.tlsHandshake(c)
	c.expectErr("PASS secret", "send USER first")
	if b.loginCount() != 0 {
		t.Fatal("Login was called")
	}
	c.login()
	c.expectOK("STAT")

	// The same with a whole login injected.
	c = e.dial()
	c.sendRaw("STLS\r\nUSER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n")
	if got := c.line(); got != "+OK Begin TLS negotiation" {
		t.Fatalf("STLS: %q", got)
	}
	c = e.tlsHandshake(c)
	c.expectErr("STAT", "not valid before login") // alive, and not logged in
	c.expectOK("QUIT")
	if b.loginCount() != 1 {
		t.Fatalf("%d logins, want 1", b.loginCount())
	}
}

func TestSTLSNotOffered(t *testing.T) {
	// On a plaintext listener, STLS gets a clear -ERR and the session
	// goes on (fetchmail sends it unprompted).
	e := startServer(t, newMemBackend(testMessages...), func(s *Server) {
		s.TLSConfig = &tls.Config{} // there is a config, but not STLS here
	})
	c := e.dial()
	c.expectErr("STLS", "STLS not available on this connection")
	c.expectErr("STLS", "STLS not available on this connection")
	c.login() // not counted as bad commands
	c.expectOK("STAT")

	// On an implicit TLS listener, TLS is already there.
	e = startServerLC(t, newMemBackend(testMessages...), ListenerConfig{TLS: TLSImplicit}, nil)
	c = e.dial()
	c.expectErr("STLS", "TLS is already active")
	c.login()
	c.expectOK("STAT")
}

func TestSTLSHandshakeFailure(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServerLC(t, b, ListenerConfig{TLS: TLSStartTLS}, nil)
	c := e.dial()
	if got := c.cmd("STLS"); got != "+OK Begin TLS negotiation" {
		t.Fatalf("STLS: %q", got)
	}
	c.send("USER alice") // not a ClientHello
	rest := c.expectEOF()
	if strings.Contains(string(rest), "+OK") {
		t.Fatalf("got %q after a failed handshake", rest)
	}
	// The server goes on.
	c = e.starttls(e.dial())
	c.login()
	c.expectOK("STAT")
}

func TestSTLSHandshakeTimeout(t *testing.T) {
	e := startServerLC(t, newMemBackend(), ListenerConfig{TLS: TLSStartTLS}, func(s *Server) {
		s.AuthTimeout = 100 * time.Millisecond
	})
	c := e.dial()
	if got := c.cmd("STLS"); got != "+OK Begin TLS negotiation" {
		t.Fatalf("STLS: %q", got)
	}
	start := time.Now()
	c.expectEOF() // the client never starts the handshake
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("handshake wait took %v", took)
	}
}

// TestPlaintextRefusedSTLS refuses every plaintext login on a STARTTLS
// listener, then accepts them after STLS.
func TestPlaintextRefusedSTLS(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServerLC(t, b, ListenerConfig{TLS: TLSStartTLS}, func(s *Server) {
		s.Mechanisms = SupportedMechanisms()
		s.MaxBadCommandsAuth = -1
		s.AllowPlaintext = func(*ConnInfo) bool { return false }
	})
	const refused = "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections; use STLS first"
	c := e.dial()
	for _, cmd := range []string{
		"USER alice",
		"PASS secret",
		"AUTH PLAIN " + b64("\x00alice\x00secret"),
		"AUTH PLAIN",
		"AUTH LOGIN",
		"AUTH login " + b64("alice"),
		"AUTH OAUTHBEARER " + b64("n,a=alice,\x01auth=Bearer "+testToken+"\x01\x01"),
		"AUTH XOAUTH2 " + b64("user=alice\x01auth=Bearer "+testToken+"\x01\x01"),
	} {
		if got := c.cmd(cmd); got != refused {
			t.Fatalf("%.20s: %q", cmd, got)
		}
	}
	if got := c.multi("AUTH"); got != nil {
		t.Fatalf("bare AUTH lists %q where none is usable", got)
	}
	c.expectErr("AUTH CRAM-MD5", "unsupported authentication mechanism")
	if b.loginCount() != 0 {
		t.Fatal("Login was called")
	}
	c = e.starttls(c)
	if got := c.multi("AUTH"); !slices.Equal(got, SupportedMechanisms()) {
		t.Fatalf("bare AUTH after STLS: %q", got)
	}
	c.expectOK("AUTH PLAIN " + b64("\x00alice\x00secret"))
	c.expectOK("STAT")
	c = e.starttls(e.dial())
	c.login()
	c = e.starttls(e.dial())
	c.expectOK("AUTH XOAUTH2 " + b64("user=alice\x01auth=Bearer "+testToken+"\x01\x01"))

	// Without STLS on the listener, the refusal does not mention it.
	e = startServer(t, b, func(s *Server) { s.AllowPlaintext = func(*ConnInfo) bool { return false } })
	c = e.dial()
	if got := c.cmd("AUTH PLAIN"); got != "-ERR [AUTH] Plaintext authentication disallowed on non-secure connections" {
		t.Fatalf("AUTH PLAIN: %q", got)
	}
}

func TestServeListenerSTLSConfig(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cert, _ := testCert(t)
	for _, srv := range []*Server{
		{Backend: newMemBackend()}, // STLS without a TLSConfig
		{Backend: newMemBackend(), TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}, Mechanisms: []string{"PLAIN", "CRAM-MD5"}},
	} {
		err := srv.ServeListener(ln, ListenerConfig{TLS: TLSStartTLS})
		if err == nil || errors.Is(err, ErrServerClosed) {
			t.Errorf("ServeListener = %v, want a configuration error", err)
		}
	}
	if _, err := resolveMechanisms([]string{"xoauth2", "plain", "PLAIN"}); err != nil {
		t.Fatal(err)
	}
	if m, _ := resolveMechanisms([]string{"xoauth2", "plain", "PLAIN"}); len(m) != 2 || m[0].name != "XOAUTH2" {
		t.Fatalf("resolveMechanisms: %v", m)
	}
}

// readAllFrom reads what the server sends until it closes.
func readAllFrom(nc net.Conn) string {
	_ = nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _ := io.ReadAll(nc)
	return string(b)
}
