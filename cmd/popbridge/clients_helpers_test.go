package main

// Helpers for clients_test.go: a `popbridge serve` with one
// listener of each TLS kind in front of a real Dovecot, a TCP tap that
// records what each client sends (to prove STLS and implicit TLS were really
// used), the IMAP reference state, and the comparison of deliveries.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/e2e"
)

// TLS kinds of a listener, as in the config.
const (
	modePlain    = "none"
	modeSTLS     = "starttls"
	modeImplicit = "implicit"
)

var listenerModes = []string{modePlain, modeSTLS, modeImplicit}

// serveInstance is one `popbridge serve` with a listener of each TLS kind.
type serveInstance struct {
	Addr   map[string]string // listener address by TLS kind
	stderr *syncBuffer
}

type serveOptions struct {
	onDele         string // policy.on_dele
	host           string // listen host; 127.0.0.1 if empty
	allowPlaintext bool
}

// startServeAll writes a config file and runs `popbridge serve` in-process
// until the test ends.
func startServeAll(t *testing.T, dv *dovecot.Server, pki *e2e.PKI, o serveOptions) *serveInstance {
	t.Helper()
	host := o.host
	if host == "" {
		host = "127.0.0.1"
	}
	s := &serveInstance{Addr: map[string]string{}}
	var listeners strings.Builder
	for _, mode := range listenerModes {
		addr := freeAddrOn(t, host)
		s.Addr[mode] = addr
		fmt.Fprintf(&listeners, "  - address: %q\n    tls: %s\n", addr, mode)
	}
	dir := t.TempDir()
	cfg := fmt.Sprintf(`listeners:
%stls:
  cert_file: %q
  key_file: %q
auth:
  allow_plaintext: %t
  failure_delay: 100ms
upstream:
  address: %q
  tls: none
state:
  path: %q
policy:
  on_dele: %s
log:
  level: info
  format: console
shutdown_grace: 2s
`, listeners.String(), pki.CertFile, pki.KeyFile, o.allowPlaintext, dv.IMAPAddr,
		filepath.Join(dir, "state.db"), o.onDele)
	path := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, s.stderr = startRun(t, "serve", "-config", path)
	for _, mode := range listenerModes {
		waitListening(t, s.Addr[mode], s.stderr)
	}
	return s
}

// freeAddrOn is freeAddr on a given local IP.
func freeAddrOn(t *testing.T, host string) string {
	t.Helper()
	return dovecot.FreeAddr(t, host)
}

// tap is a TCP relay in front of one popbridge listener that records the
// octets each client connection sends, so a test can prove that a client
// really started TLS (STLS, then a TLS handshake record; or a handshake
// record first) and never sent its password in the clear.
type tap struct {
	Addr string
	mu   sync.Mutex
	sent []*lockedBuffer // client → server, one per connection
	wg   sync.WaitGroup
}

func startTap(t *testing.T, target string) *tap {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tp := &tap{Addr: l.Addr().String()}
	t.Cleanup(func() {
		l.Close()
		tp.wg.Wait()
	})
	tp.wg.Add(1)
	go func() {
		defer tp.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			buf := &lockedBuffer{done: make(chan struct{})}
			tp.mu.Lock()
			tp.sent = append(tp.sent, buf)
			tp.mu.Unlock()
			tp.wg.Add(1)
			go func() {
				defer tp.wg.Done()
				defer close(buf.done)
				tp.relay(c, target, buf)
			}()
		}
	}()
	return tp
}

// lockedBuffer is written by a relay and read by the test.
type lockedBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	done chan struct{} // closed when the relay has finished
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (tp *tap) relay(client net.Conn, target string, rec io.Writer) {
	defer client.Close()
	server, err := net.Dial("tcp", target)
	if err != nil {
		return
	}
	defer server.Close()
	done := make(chan struct{}, 2)
	go func() {
		io.Copy(io.MultiWriter(server, rec), client)
		server.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	go func() {
		io.Copy(client, server)
		client.(*net.TCPConn).CloseWrite()
		done <- struct{}{}
	}()
	<-done
	<-done
}

// connections returns, and forgets, what each client connection sent. Called
// after the client has exited, it waits (briefly) for each relay to finish
// copying.
func (tp *tap) connections() [][]byte {
	tp.mu.Lock()
	sent := tp.sent
	tp.sent = nil
	tp.mu.Unlock()
	timeout := time.After(10 * time.Second)
	var out [][]byte
	for _, b := range sent {
		select {
		case <-b.done:
		case <-timeout:
		}
		b.mu.Lock()
		out = append(out, bytes.Clone(b.b.Bytes()))
		b.mu.Unlock()
	}
	return out
}

// checkTransport verifies what the client sent on each connection: on an
// implicit TLS listener a TLS handshake record first; on a starttls
// listener "STLS" before any login command and a TLS handshake record right
// after it; and except on plain listeners never the password in the clear.
func checkTransport(t *testing.T, mode, password string, conns [][]byte) {
	t.Helper()
	if len(conns) == 0 {
		t.Errorf("the client made no connection through the tap")
	}
	const tlsHandshake = 0x16 // TLS record type handshake
	for i, sent := range conns {
		if len(sent) == 0 {
			continue // e.g. a connection probe
		}
		switch mode {
		case modePlain:
			if sent[0] == tlsHandshake {
				t.Errorf("connection %d to the plain listener started with TLS", i+1)
			}
			continue
		case modeImplicit:
			if sent[0] != tlsHandshake {
				t.Errorf("connection %d to the implicit TLS listener began with %q, not a TLS handshake", i+1, head(sent))
			}
		case modeSTLS:
			upper := bytes.ToUpper(sent)
			k := bytes.Index(upper, []byte("STLS\r\n"))
			if k < 0 {
				t.Errorf("connection %d to the starttls listener never sent STLS: %q", i+1, head(sent))
				continue
			}
			before := upper[:k]
			for _, cmd := range []string{"USER ", "PASS ", "AUTH ", "APOP "} {
				if bytes.Contains(before, []byte(cmd)) {
					t.Errorf("connection %d sent %q before STLS: %q", i+1, cmd, before)
				}
			}
			if len(sent) <= k+6 || sent[k+6] != tlsHandshake {
				t.Errorf("connection %d: no TLS handshake right after STLS: %q", i+1, head(sent[k:]))
			}
		}
		if bytes.Contains(sent, []byte(password)) {
			t.Errorf("connection %d sent the password in the clear on a %s listener", i+1, mode)
		}
	}
}

func head(b []byte) []byte {
	if len(b) > 80 {
		return b[:80]
	}
	return b
}

// imapMsg is one message as the IMAP server holds it: the reference.
type imapMsg struct {
	UID  uint32
	Body []byte // BODY[]
}

// imapInbox reads the user's INBOX over a separate IMAP connection,
// read-only, like imapState in proxy/harness_test.go.
func imapInbox(t *testing.T, dv *dovecot.Server, user string) (uidValidity uint32, msgs []imapMsg) {
	t.Helper()
	c := dv.Client(t, user)
	defer c.Close()
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("select INBOX: %v", err)
	}
	if sel.NumMessages == 0 {
		return sel.UIDValidity, nil
	}
	var all imap.UIDSet
	all.AddRange(1, 0)
	bufs, err := c.Fetch(all, &imap.FetchOptions{
		UID:         true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bufs {
		var body []byte
		for _, s := range b.BodySection {
			body = s.Bytes
		}
		msgs = append(msgs, imapMsg{UID: uint32(b.UID), Body: body})
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].UID < msgs[j].UID })
	return sel.UIDValidity, msgs
}

// dovecotUIDL is the UIDL popbridge gives by default (Dovecot's %08Xu%08Xv).
func dovecotUIDL(uidValidity, uid uint32) string {
	return fmt.Sprintf("%08x%08x", uid, uidValidity)
}

// asRETR is what RETR delivers for an IMAP body (before dot-stuffing): the
// same octets, plus CRLF where the message does not end with one.
func asRETR(body []byte) []byte {
	if bytes.HasSuffix(body, []byte("\r\n")) {
		return body
	}
	return append(append([]byte(nil), body...), '\r', '\n')
}

// lfToCRLF turns every LF not preceded by CR into CRLF: the inverse of the
// CRLF→LF conversion clients do when they store mail in Unix files. It is
// exact for our messages, which contain no bare LF or CR.
func lfToCRLF(b []byte) []byte {
	var out bytes.Buffer
	out.Grow(len(b) + len(b)/40)
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

var messageIDRE = regexp.MustCompile(`(?im)^Message-ID:\s*(<[^>\r\n]*>)`)

// messageID names a message in failure output.
func messageID(m []byte) string {
	if s := messageIDRE.FindSubmatch(m); s != nil {
		return string(s[1])
	}
	return fmt.Sprintf("(no Message-ID, %d octets)", len(m))
}

// compareDeliveries checks that got holds exactly the messages of want, in
// any order, octet for octet.
func compareDeliveries(t *testing.T, what string, got, want [][]byte) {
	t.Helper()
	used := make([]bool, len(got))
	var missing []string
	for _, w := range want {
		found := false
		for i, g := range got {
			if !used[i] && bytes.Equal(g, w) {
				used[i], found = true, true
				break
			}
		}
		if found {
			continue
		}
		id := messageID(w)
		detail := "not delivered"
		for i, g := range got {
			if !used[i] && messageID(g) == id {
				detail = "delivered with different octets: " + firstDiff(g, w)
				used[i] = true
				break
			}
		}
		missing = append(missing, fmt.Sprintf("%s (%d octets) %s", id, len(w), detail))
	}
	var extra []string
	for i, g := range got {
		if !used[i] {
			extra = append(extra, fmt.Sprintf("%s (%d octets): %q", messageID(g), len(g), head(g)))
		}
	}
	if len(missing) == 0 && len(extra) == 0 {
		return
	}
	msg := fmt.Sprintf("%s: %d messages delivered, want %d", what, len(got), len(want))
	if len(missing) > 0 {
		msg += "\nwrong or missing:\n  " + strings.Join(missing, "\n  ")
	}
	if len(extra) > 0 {
		msg += "\nunexpected:\n  " + strings.Join(extra, "\n  ")
	}
	t.Error(msg)
}

// firstDiff describes where two byte strings first differ.
func firstDiff(got, want []byte) string {
	n := min(len(got), len(want))
	i := 0
	for i < n && got[i] == want[i] {
		i++
	}
	from := max(0, i-20)
	return fmt.Sprintf("got %d octets, want %d; first difference at offset %d: got %q, want %q",
		len(got), len(want), i, got[from:min(len(got), i+40)], want[from:min(len(want), i+40)])
}

// readMaildir returns the messages in dir's new/ and cur/ and removes them,
// so that the next run's deliveries can be told apart.
func readMaildir(t *testing.T, dir string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			p := filepath.Join(dir, sub, e.Name())
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b)
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	return out
}

func makeMaildir(t *testing.T, dir string) {
	t.Helper()
	for _, sub := range []string{"new", "cur", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			t.Fatal(err)
		}
	}
}
