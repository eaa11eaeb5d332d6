package pop3

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// trustOnly trusts the peer IP addresses given.
func trustOnly(ips ...string) func(net.Addr) bool {
	return func(a net.Addr) bool {
		ta, ok := a.(*net.TCPAddr)
		return ok && slices.Contains(ips, ta.IP.String())
	}
}

// proxyEnv is a server on a ProxyProtocol listener that trusts 127.0.0.1,
// with its Observer and logs at hand.
type proxyEnv struct {
	*testEnv
	rec  *recorder
	logs *observer.ObservedLogs
}

func startProxyServer(t *testing.T, b *memBackend, lc ListenerConfig, configure func(*Server)) *proxyEnv {
	t.Helper()
	if lc.ProxyProtocol == nil {
		lc.ProxyProtocol = &ProxyProtocol{Trusted: trustOnly("127.0.0.1")}
	}
	rec := &recorder{}
	core, logs := observer.New(zap.DebugLevel)
	e := startServerLC(t, b, lc, func(s *Server) {
		s.Observer = rec
		s.Logger = zap.New(core)
		if configure != nil {
			configure(s)
		}
	})
	return &proxyEnv{testEnv: e, rec: rec, logs: logs}
}

// tcpAddr parses "ip:port".
func tcpAddr(t *testing.T, s string) *net.TCPAddr {
	t.Helper()
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// proxyHeader is the header a load balancer sends for a client at src that
// connected to dst.
func proxyHeader(t *testing.T, version byte, src, dst string) *proxyproto.Header {
	t.Helper()
	return proxyproto.HeaderProxyFromAddrs(version, tcpAddr(t, src), tcpAddr(t, dst))
}

// dialProxied connects from local IP from, sends h (if not nil) and
// returns the connection, not yet read from.
func (e *proxyEnv) dialProxied(from string, h *proxyproto.Header) *client {
	e.t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", e.addr)
	if err != nil {
		if os.Getenv("CI") != "" { // Linux routes all of 127/8 to lo: this must work in CI
			e.t.Fatalf("cannot dial from %s: %v", from, err)
		}
		e.t.Skipf("cannot dial from %s: %v", from, err)
	}
	e.t.Cleanup(func() { nc.Close() })
	if h != nil {
		if _, err := h.WriteTo(nc); err != nil {
			e.t.Fatal(err)
		}
	}
	return &client{t: e.t, nc: nc, r: bufio.NewReader(nc)}
}

// greeted is dialProxied from 127.0.0.1 that expects the greeting.
func (e *proxyEnv) greeted(h *proxyproto.Header) *client {
	e.t.Helper()
	c := e.dialProxied("127.0.0.1", h)
	if g := c.line(); !strings.HasPrefix(g, "+OK") {
		e.t.Fatalf("greeting %q", g)
	}
	return c
}

// refusals counts the Observer's refusals for reason.
func (e *proxyEnv) refusals(reason string) int {
	events, _, _ := e.rec.snapshot()
	n := 0
	for _, ev := range events {
		if ev == "refused "+reason {
			n++
		}
	}
	return n
}

// lastInfo is the ConnInfo of the latest login.
func lastInfo(t *testing.T, b *memBackend) ConnInfo {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.infos) == 0 {
		t.Fatal("no login reached the backend")
	}
	return b.infos[len(b.infos)-1]
}

func TestProxyProtocolCarriesClientAddress(t *testing.T) {
	for _, tc := range []struct {
		name     string
		version  byte
		src, dst string
	}{
		{"v1/IPv4", 1, "203.0.113.7:40001", "192.0.2.10:110"},
		{"v2/IPv4", 2, "198.51.100.23:40002", "192.0.2.10:110"},
		{"v2/IPv6", 2, "[2001:db8::42]:40003", "[2001:db8::1]:110"},
		{"v1/IPv6", 1, "[2001:db8::43]:40004", "[2001:db8::1]:110"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newMemBackend(testMessages...)
			e := startProxyServer(t, b, ListenerConfig{Name: "lb"}, nil)
			c := e.greeted(proxyHeader(t, tc.version, tc.src, tc.dst))
			c.login()
			c.expectOK("QUIT")
			c.expectEOF()

			ci := lastInfo(t, b)
			if ci.RemoteAddr.String() != tcpAddr(t, tc.src).String() || ci.LocalAddr.String() != tcpAddr(t, tc.dst).String() {
				t.Fatalf("backend saw remote %v local %v, want %s and %s", ci.RemoteAddr, ci.LocalAddr, tc.src, tc.dst)
			}
			if ci.ProxyAddr == nil || !strings.HasPrefix(ci.ProxyAddr.String(), "127.0.0.1:") {
				t.Fatalf("ProxyAddr %v, want the load balancer's 127.0.0.1", ci.ProxyAddr)
			}
			if ci.FromLoopback() {
				t.Fatal("a remote client behind a local proxy counted as loopback")
			}
			sums := e.rec.waitSessions(t, 1)
			if sums[0].Info.RemoteAddr.String() != tcpAddr(t, tc.src).String() {
				t.Fatalf("session summary remote %v", sums[0].Info.RemoteAddr)
			}
			ended := e.logs.FilterMessage("session ended").All()
			if len(ended) != 1 {
				t.Fatalf("%d session ended lines", len(ended))
			}
			fields := ended[0].ContextMap()
			if fields["remote"] != tcpAddr(t, tc.src).String() || !strings.HasPrefix(fields["proxy"].(string), "127.0.0.1:") {
				t.Fatalf("session log fields %v", fields)
			}
		})
	}
}

func TestProxyProtocolLocalCommand(t *testing.T) {
	// A v2 LOCAL header (the proxy's own health check) carries no client:
	// the connection is the proxy's.
	b := newMemBackend(testMessages...)
	e := startProxyServer(t, b, ListenerConfig{}, nil)
	h := &proxyproto.Header{Version: 2, Command: proxyproto.LOCAL, TransportProtocol: proxyproto.UNSPEC}
	c := e.greeted(h)
	c.login()
	ci := lastInfo(t, b)
	if !strings.HasPrefix(ci.RemoteAddr.String(), "127.0.0.1:") || ci.RemoteAddr.String() != ci.ProxyAddr.String() {
		t.Fatalf("remote %v proxy %v", ci.RemoteAddr, ci.ProxyAddr)
	}
}

func TestProxyProtocolRefusals(t *testing.T) {
	b := newMemBackend(testMessages...)
	lc := ListenerConfig{ProxyProtocol: &ProxyProtocol{Trusted: trustOnly("127.0.0.1"), HeaderTimeout: 300 * time.Millisecond}}
	e := startProxyServer(t, b, lc, nil)

	// An untrusted peer is closed unread, even with a well-formed header.
	c := e.dialProxied("127.0.0.2", proxyHeader(t, 2, "203.0.113.7:1", "192.0.2.10:110"))
	if got := c.expectEOF(); len(got) != 0 {
		t.Fatalf("untrusted peer got %q", got)
	}
	// A trusted peer that speaks POP3 straight away has no header.
	c = e.dialProxied("127.0.0.1", nil)
	c.sendRaw("USER " + testUser + "\r\n")
	if got := c.expectEOF(); len(got) != 0 {
		t.Fatalf("headerless connection got %q", got)
	}
	// A malformed header.
	c = e.dialProxied("127.0.0.1", nil)
	c.sendRaw("PROXY TCP4 not-an-address 192.0.2.10 1 110\r\n")
	c.expectEOF()
	// A trusted peer that sends nothing is dropped after HeaderTimeout.
	start := time.Now()
	c = e.dialProxied("127.0.0.1", nil)
	c.expectEOF()
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("silent peer held for %v", took)
	}
	// A datagram header describes no TCP client.
	h := proxyproto.HeaderProxyFromAddrs(2, &net.UDPAddr{IP: net.ParseIP("203.0.113.7"), Port: 1},
		&net.UDPAddr{IP: net.ParseIP("192.0.2.10"), Port: 110})
	c = e.dialProxied("127.0.0.1", h)
	c.expectEOF()

	if n := e.refusals(RefuseUntrustedProxy); n != 1 {
		t.Errorf("%d untrusted_proxy refusals, want 1", n)
	}
	if n := e.refusals(RefuseProxyHeader); n != 4 {
		t.Errorf("%d proxy_header refusals, want 4", n)
	}
	if b.loginCount() != 0 {
		t.Fatal("a refused connection reached the backend")
	}
	_, _, sums := e.rec.snapshot()
	if len(sums) != 0 {
		t.Fatalf("refused connections counted as sessions: %+v", sums)
	}
	refused := e.logs.FilterMessage("connection refused").All()
	if len(refused) != 5 {
		t.Fatalf("%d refusals logged, want 5", len(refused))
	}
	if f := refused[0].ContextMap(); !strings.HasPrefix(f["proxy"].(string), "127.0.0.2:") {
		t.Fatalf("untrusted refusal logged %v", f)
	}
	var timedOut bool
	for _, l := range refused {
		if strings.Contains(fmt.Sprint(l.ContextMap()["error"]), "timed out") {
			timedOut = true
		}
	}
	if !timedOut {
		t.Error("the silent peer's refusal does not say it timed out")
	}

	// And the listener still serves proxied clients.
	c = e.greeted(proxyHeader(t, 1, "203.0.113.7:1", "192.0.2.10:110"))
	c.login()
}

func TestProxyProtocolSlowHeaderBlocksNoOne(t *testing.T) {
	b := newMemBackend(testMessages...)
	lc := ListenerConfig{ProxyProtocol: &ProxyProtocol{Trusted: trustOnly("127.0.0.1"), HeaderTimeout: time.Minute}}
	e := startProxyServer(t, b, lc, nil)
	// Peers that send nothing, and half a header, and wait.
	var stalled []*client
	for range 3 {
		stalled = append(stalled, e.dialProxied("127.0.0.1", nil))
	}
	half := e.dialProxied("127.0.0.1", nil)
	half.sendRaw("PROXY TCP4 203.0.")
	stalled = append(stalled, half)
	time.Sleep(50 * time.Millisecond) // accepted and waiting

	start := time.Now()
	for i := range 3 {
		c := e.greeted(proxyHeader(t, byte(1+i%2), "203.0.113.7:1", "192.0.2.10:110"))
		c.login()
		c.expectOK("QUIT")
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("proxied clients behind stalled peers took %v", took)
	}
	for _, c := range stalled {
		_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.r.ReadByte(); err == nil {
			t.Fatal("a peer without a header was greeted")
		}
	}
}

func TestProxyProtocolPerIPLimit(t *testing.T) {
	// MaxConnectionsPerIP counts the carried addresses, not the proxy's.
	b := newMemBackend(testMessages...)
	e := startProxyServer(t, b, ListenerConfig{}, func(s *Server) { s.MaxConnectionsPerIP = 1 })
	first := e.greeted(proxyHeader(t, 2, "203.0.113.7:1001", "192.0.2.10:110"))
	same := e.dialProxied("127.0.0.1", proxyHeader(t, 1, "203.0.113.7:1002", "192.0.2.10:110"))
	if g := same.line(); g != "-ERR [SYS/TEMP] too many connections from your address, try again later" {
		t.Fatalf("second connection of 203.0.113.7: %q", g)
	}
	same.expectEOF()
	other := e.greeted(proxyHeader(t, 2, "203.0.113.8:1003", "192.0.2.10:110"))
	other.login()
	first.login()
	if n := e.refusals(RefusePerIP); n != 1 {
		t.Fatalf("%d per_ip refusals", n)
	}
}

// addrLimiter is a LoginLimiter that writes down the addresses it is asked
// about.
type addrLimiter struct {
	mu    sync.Mutex
	addrs []string
}

func (l *addrLimiter) Allow(remote net.Addr) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrs = append(l.addrs, "allow "+remote.String())
	return true, 0
}

func (l *addrLimiter) Failed(remote net.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.addrs = append(l.addrs, "failed "+remote.String())
}

func TestProxyProtocolLoginPolicy(t *testing.T) {
	// The LoginLimiter and AllowPlaintext judge the carried client.
	lim := &addrLimiter{}
	b := newMemBackend(testMessages...)
	e := startProxyServer(t, b, ListenerConfig{}, func(s *Server) {
		s.LoginLimiter = lim
		s.AllowPlaintext = func(ci *ConnInfo) bool { return ci.FromLoopback() }
	})
	// A client on the (local) proxy's machine: the whole path is local.
	local := e.greeted(proxyHeader(t, 2, "127.0.0.1:2001", "127.0.0.1:110"))
	local.expectOK("USER " + testUser)
	local.expectErr("PASS wrong", "[AUTH]")
	// A remote client behind the same proxy may not send a password in the clear.
	remote := e.greeted(proxyHeader(t, 2, "203.0.113.9:2002", "192.0.2.10:110"))
	remote.expectErr("USER "+testUser, "Plaintext authentication disallowed")

	lim.mu.Lock()
	defer lim.mu.Unlock()
	want := []string{"allow 127.0.0.1:2001", "failed 127.0.0.1:2001"}
	if !slices.Equal(lim.addrs, want) {
		t.Fatalf("limiter saw %q, want %q", lim.addrs, want)
	}
}

func TestProxyProtocolTLS(t *testing.T) {
	// Implicit TLS and STLS run over the stream after the header, and a
	// tls.Config's GetConfigForClient (legacy lanes) sees the client's address.
	for _, mode := range []TLSMode{TLSImplicit, TLSStartTLS} {
		t.Run(mode.String(), func(t *testing.T) {
			cert, pool := testCert(t)
			var mu sync.Mutex
			var hellos []string
			tc := &tls.Config{
				Certificates: []tls.Certificate{cert},
				GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
					mu.Lock()
					hellos = append(hellos, h.Conn.RemoteAddr().String())
					mu.Unlock()
					return nil, nil
				},
			}
			b := newMemBackend(testMessages...)
			e := startProxyServer(t, b, ListenerConfig{TLS: mode, TLSConfig: tc}, nil)
			c := e.dialProxied("127.0.0.1", proxyHeader(t, 2, "203.0.113.7:3001", "192.0.2.10:995"))
			if mode == TLSStartTLS {
				if g := c.line(); !strings.HasPrefix(g, "+OK") {
					t.Fatalf("greeting %q", g)
				}
				c.expectOK("STLS")
			}
			tlsConn := tls.Client(c.nc, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
			if err := tlsConn.Handshake(); err != nil {
				t.Fatal(err)
			}
			c = &client{t: t, nc: tlsConn, r: bufio.NewReader(tlsConn)}
			if mode == TLSImplicit {
				if g := c.line(); !strings.HasPrefix(g, "+OK") {
					t.Fatalf("greeting %q", g)
				}
			}
			c.login()
			if ci := lastInfo(t, b); ci.RemoteAddr.String() != "203.0.113.7:3001" || ci.TLS == nil {
				t.Fatalf("remote %v, TLS %v", ci.RemoteAddr, ci.TLS != nil)
			}
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(hellos, []string{"203.0.113.7:3001"}) {
				t.Fatalf("GetConfigForClient saw %q", hellos)
			}
		})
	}
}

func TestProxyProtocolNeedsTrusted(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{Backend: newMemBackend()}
	err = srv.ServeListener(ln, ListenerConfig{ProxyProtocol: &ProxyProtocol{}})
	if err == nil || !strings.Contains(err.Error(), "Trusted") {
		t.Fatalf("got %v", err)
	}
}

func TestFromLoopback(t *testing.T) {
	a := func(s string) net.Addr { return tcpAddr(t, s) }
	for _, tc := range []struct {
		ci   ConnInfo
		want bool
	}{
		{ConnInfo{RemoteAddr: a("127.0.0.1:1")}, true},
		{ConnInfo{RemoteAddr: a("[::1]:1")}, true},
		{ConnInfo{RemoteAddr: a("192.0.2.1:1")}, false},
		{ConnInfo{RemoteAddr: a("127.0.0.1:1"), ProxyAddr: a("127.0.0.2:9")}, true},
		{ConnInfo{RemoteAddr: a("127.0.0.1:1"), ProxyAddr: a("10.0.0.5:9")}, false},    // local to a remote proxy
		{ConnInfo{RemoteAddr: a("203.0.113.7:1"), ProxyAddr: a("127.0.0.1:9")}, false}, // remote behind a local proxy
	} {
		if got := tc.ci.FromLoopback(); got != tc.want {
			t.Errorf("remote %v proxy %v: %v, want %v", tc.ci.RemoteAddr, tc.ci.ProxyAddr, got, tc.want)
		}
	}
}

func TestProxyProtocolDataWithHeader(t *testing.T) {
	// What arrives in the same segment as the header is the client's: it is
	// read, not lost with the header's buffer.
	b := newMemBackend(testMessages...)
	e := startProxyServer(t, b, ListenerConfig{}, nil)
	hdr, err := proxyHeader(t, 2, "203.0.113.7:1", "192.0.2.10:110").Format()
	if err != nil {
		t.Fatal(err)
	}
	c := e.dialProxied("127.0.0.1", nil)
	c.sendRaw(string(hdr) + "USER " + testUser + "\r\nPASS " + testPass + "\r\nSTAT\r\n")
	for _, want := range []string{"+OK", "+OK", "+OK", fmt.Sprintf("+OK %d ", len(testMessages))} {
		if l := c.line(); !strings.HasPrefix(l, want) {
			t.Fatalf("got %q, want %q…", l, want)
		}
	}
	if ci := lastInfo(t, b); ci.RemoteAddr.String() != "203.0.113.7:1" {
		t.Fatalf("remote %v", ci.RemoteAddr)
	}
}
