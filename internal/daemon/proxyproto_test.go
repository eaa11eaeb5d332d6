package daemon

import (
	"bufio"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pires/go-proxyproto"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/e2e"
)

// dialProxied connects to addr from the local IP from, as a load balancer
// would, and sends h (when not nil). Nothing is read yet.
func dialProxied(t *testing.T, addr, from string, h *proxyproto.Header) *e2e.Conn {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if h != nil {
		if _, err := h.WriteTo(nc); err != nil {
			t.Fatal(err)
		}
	}
	return &e2e.Conn{T: t, NC: nc, R: bufio.NewReader(nc)}
}

// proxyHeaderFor is the header a load balancer sends for a client at src
// that connected to dst ("ip:port" both).
func proxyHeaderFor(t *testing.T, version byte, src, dst string) *proxyproto.Header {
	t.Helper()
	s, err := net.ResolveTCPAddr("tcp", src)
	if err != nil {
		t.Fatal(err)
	}
	d, err := net.ResolveTCPAddr("tcp", dst)
	if err != nil {
		t.Fatal(err)
	}
	return proxyproto.HeaderProxyFromAddrs(version, s, d)
}

// TestProxyProtocol runs popbridge behind a "load balancer" (this test,
// connecting from 127.0.0.1 and sending PROXY v1 and v2 headers) in front of
// a real Dovecot that trusts popbridge's ID: the client address in the
// header is the one popbridge logs, limits and checks the plaintext lane
// against, and the one Dovecot sees; other peers, and trusted ones without
// a header, are refused; trusted_proxies reloads.
func TestProxyProtocol(t *testing.T) {
	dv := dovecot.Start(t, dovecot.WithConfig("login_trusted_networks = 127.0.0.0/8"))
	user, user2 := dovecot.User(t), dovecot.User(t) // one maildrop lock each
	dv.Append(t, user, "INBOX", []byte("Subject: behind a balancer\r\nMessage-ID: <lb1@test>\r\n\r\nhello\r\n"))
	addr := freeAddr(t)
	const frontend = "192.0.2.1:110" // where clients connected, on the balancer
	cfgYAML := func(trusted string) string {
		return fmt.Sprintf(`listeners:
  - address: %q
    proxy_protocol: true
    legacy:
      allow_plaintext: true
      networks: [203.0.113.0/24]
upstream:
  address: %q
  tls: none
state:
  driver: memory
limits:
  max_connections_per_ip: 1
  trusted_proxies: [%s]
metrics:
  address: "127.0.0.1:0"
shutdown_grace: 2s
`, addr, dv.IMAPAddr, trusted)
	}
	s := startOps(t, cfgYAML("127.0.0.1, 10.0.0.0/8"), opsOptions{})

	// v1 and v2 headers from the trusted balancer; the legacy lane lets
	// 203.0.113.0/24 log in without TLS.
	first := dialProxied(t, addr, "127.0.0.1", proxyHeaderFor(t, 1, "203.0.113.7:40001", frontend)).Greeted()
	first.Login(user, dv.Password)
	if l := first.Cmd("STAT"); !strings.HasPrefix(l, "+OK 1 ") {
		t.Fatalf("STAT: %q", l)
	}
	// max_connections_per_ip: 1 counts the client, not the balancer.
	same := dialProxied(t, addr, "127.0.0.1", proxyHeaderFor(t, 2, "203.0.113.7:40002", frontend))
	if l := same.Line(); !strings.HasPrefix(l, "-ERR [SYS/TEMP] too many connections from your address") {
		t.Fatalf("second connection of 203.0.113.7: %q", l)
	}
	other := dialProxied(t, addr, "127.0.0.1", proxyHeaderFor(t, 2, "203.0.113.8:40003", frontend)).Greeted()
	if l := other.Cmd("USER %s", user2); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("USER from 203.0.113.8: %q", l)
	}
	// Outside the lane, behind the same local balancer: no plaintext.
	outside := dialProxied(t, addr, "127.0.0.1", proxyHeaderFor(t, 2, "198.51.100.9:40004", frontend)).Greeted()
	if capa := outside.Capa(); slices.Contains(capa, "USER") {
		t.Fatalf("CAPA offers USER to a remote client behind a local proxy: %q", capa)
	}
	if l := outside.Cmd("USER %s", user); !strings.Contains(l, "Plaintext authentication disallowed") {
		t.Fatalf("USER from 198.51.100.9: %q", l)
	}
	outside.Cmd("QUIT")
	if l := other.Cmd("PASS %s", dv.Password); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("PASS from 203.0.113.8: %q", l)
	}
	for _, p := range []*e2e.Conn{first, other} {
		if l := p.Cmd("QUIT"); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("QUIT: %q", l)
		}
	}

	// An untrusted peer is closed unread, header or not; a trusted one
	// without a header too.
	dialProxied(t, addr, "127.0.0.2", proxyHeaderFor(t, 2, "203.0.113.9:40005", frontend)).ClosedUnread()
	headerless := dialProxied(t, addr, "127.0.0.1", nil)
	fmt.Fprintf(headerless.NC, "CAPA\r\n")
	headerless.ClosedUnread()

	// popbridge's session log names the client (and the balancer).
	e2e.WaitFor(t, "three sessions logged", func() bool { return len(s.logged("session ended")) == 3 })
	remotes := map[string]map[string]any{}
	for _, e := range s.logged("session ended") {
		remotes[e["remote"].(string)] = e
		if p, _ := e["proxy"].(string); !strings.HasPrefix(p, "127.0.0.1:") {
			t.Errorf("session log without the balancer's address: %v", e)
		}
	}
	for _, client := range []string{"203.0.113.7:40001", "203.0.113.8:40003", "198.51.100.9:40004"} {
		if remotes[client] == nil {
			t.Errorf("no session ended line with remote %s: %v", client, s.logged("session ended"))
		}
	}
	if e := remotes["203.0.113.7:40001"]; e == nil || e["user"] != user || e["end"] != "update_ok" {
		t.Errorf("session of 203.0.113.7: %v", e)
	}
	refused := s.logged("connection refused")
	if len(refused) != 3 {
		t.Errorf("%d refusals logged, want 3 (per-IP, untrusted, headerless): %v", len(refused), refused)
	}
	m := s.scrape()
	m.want(t, `popbridge_connections_refused_total{reason="per_ip"}`, "==", 1)
	m.want(t, `popbridge_connections_refused_total{reason="untrusted_proxy"}`, "==", 1)
	m.want(t, `popbridge_connections_refused_total{reason="proxy_header"}`, "==", 1)

	// Dovecot saw the clients, not popbridge (ID x-originating-ip).
	log := dv.Log()
	for _, want := range []string{"rip=203.0.113.7, lip=192.0.2.1", "rip=203.0.113.8, lip=192.0.2.1"} {
		if !strings.Contains(log, want) {
			t.Errorf("Dovecot's log has no %q:\n%s", want, log)
		}
	}

	// limits.trusted_proxies reloads: without 127.0.0.1 the next
	// connection from here is refused.
	s.writeConfig(cfgYAML("10.0.0.0/8"))
	if err := s.reload(); err != nil {
		t.Fatal(err)
	}
	reloaded := s.logged("config reloaded")
	if len(reloaded) != 1 || !slices.Contains(toStrings(reloaded[0]["changed"]), "limits.trusted_proxies") ||
		len(toStrings(reloaded[0]["needs_restart"])) != 0 {
		t.Fatalf("reload log: %v", reloaded)
	}
	dialProxied(t, addr, "127.0.0.1", proxyHeaderFor(t, 1, "203.0.113.7:40006", frontend)).ClosedUnread()
	s.scrape().want(t, `popbridge_connections_refused_total{reason="untrusted_proxy"}`, "==", 2)
}

// toStrings converts a JSON array of strings.
func toStrings(v any) []string {
	var out []string
	list, _ := v.([]any)
	for _, x := range list {
		if s, ok := x.(string); ok {
			out = append(out, s)
		}
	}
	return out
}
