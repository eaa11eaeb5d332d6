package daemon

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/testenv"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/e2e"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/uidmap"
)

// TestMetricsAndReadyz: the metrics scraped during a real session (a real
// Dovecot behind) count it; /healthz answers; /readyz follows the state
// store.
func TestMetricsAndReadyz(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	msg := []byte("Subject: metrics\r\nMessage-ID: <m1@test>\r\n\r\n" + strings.Repeat("a line of the body\r\n", 200))
	dv.Append(t, user, "INBOX", msg)
	addr := freeAddr(t)
	var failing atomic.Bool
	s := startOps(t, fmt.Sprintf(`listeners:
  - address: %q
upstream:
  address: %q
  tls: none
state:
  path: %q
metrics:
  address: "127.0.0.1:0"
shutdown_grace: 2s
`, addr, dv.IMAPAddr, filepath.Join(t.TempDir(), "state.db")), opsOptions{
		wrapStore: func(st uidmap.Store) uidmap.Store { return failingStore{st, &failing} },
	})

	if code, body := s.get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz: %d %q", code, body)
	}
	if code, body := s.get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz: %d %q", code, body)
	}

	p := e2e.Dial(t, addr, nil, nil)
	p.Login(user, dv.Password)
	if l := p.Cmd("RETR 1"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("RETR 1: %q", l)
	}
	p.Multi()
	// A RETR is counted once its last byte has left (so are the bytes
	// sent), and the client can read the answer a moment before the
	// counters move: wait for the RETR, the last thing counted.
	e2e.WaitFor(t, "the RETR counted", func() bool {
		return s.scrape()[`popbridge_commands_total{command="RETR",result="ok"}`] == 1
	})
	lbl := fmt.Sprintf(`{listener=%q}`, addr)
	m := s.scrape() // during the session
	m.want(t, fmt.Sprintf(`popbridge_sessions_total{listener=%q,tls="none"}`, addr), "==", 1)
	m.want(t, "popbridge_sessions_active"+lbl, "==", 1)
	m.want(t, `popbridge_logins_total{result="ok"}`, "==", 1)
	m.want(t, `popbridge_logins_total{result="auth"}`, "==", 0)
	m.want(t, `popbridge_commands_total{command="RETR",result="ok"}`, "==", 1)
	m.want(t, `popbridge_commands_total{command="PASS",result="ok"}`, "==", 1)
	m.want(t, "popbridge_sent_bytes_total", ">=", float64(len(msg)))
	m.want(t, "popbridge_uidls_assigned_total", "==", 1)
	m.want(t, "popbridge_uidls_reidentified_total", "==", 0)
	m.want(t, `popbridge_upstream_connect_duration_seconds_count{result="ok"}`, "==", 1)
	m.want(t, `popbridge_upstream_command_duration_seconds_count{op="fetch"}`, "==", 1)
	m.want(t, `popbridge_upstream_command_duration_seconds_count{op="snapshot"}`, "==", 1)
	m.want(t, `popbridge_upstream_errors_total{kind="unavailable"}`, "==", 0)
	m.want(t, `popbridge_connections_refused_total{reason="max_connections"}`, "==", 0)
	m.want(t, fmt.Sprintf(`popbridge_build_info{version=%q}`, version), "==", 1)

	// A second session of the same user is refused [IN-USE]: lock contention.
	q := e2e.Dial(t, addr, nil, nil)
	q.Cmd("USER %s", user)
	if l := q.Cmd("PASS %s", dv.Password); !strings.HasPrefix(l, "-ERR [IN-USE]") {
		t.Fatalf("second session: %q", l)
	}
	if l := p.Cmd("QUIT"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("QUIT: %q", l)
	}
	e2e.WaitFor(t, "the session's end", func() bool {
		return s.scrape()[`popbridge_sessions_ended_total{end="update_ok"}`] == 1
	})
	m = s.scrape()
	m.want(t, "popbridge_sessions_active"+lbl, "<=", 1) // q may still be open
	m.want(t, `popbridge_logins_total{result="in_use"}`, "==", 1)
	m.want(t, "popbridge_maildrop_lock_contention_total", "==", 1)

	// /readyz follows the store.
	failing.Store(true)
	if code, body := s.get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "state store") {
		t.Fatalf("/readyz with a broken store: %d %q", code, body)
	}
	if code, _ := s.get("/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz with a broken store: %d (the process is alive)", code)
	}
	failing.Store(false)
	if code, body := s.get("/readyz"); code != http.StatusOK {
		t.Fatalf("/readyz with the store back: %d %q", code, body)
	}
}

// TestGracefulShutdown: on shutdown (what SIGTERM does: the context ends),
// a RETR under way finishes byte for byte, a new connection during the
// grace period gets -ERR [SYS/TEMP], /readyz turns 503, and when the grace
// period is over the session still open is cut off without UPDATE: nothing
// is deleted.
func TestGracefulShutdown(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	big := []byte("Subject: big\r\n\r\n" + strings.Repeat(strings.Repeat("x", 76)+"\r\n", (4<<20)/78))
	big = append(big, ".starts with a dot\r\nlast\r\n"...)
	dv.Append(t, user, "INBOX", big)
	dv.Append(t, user, "INBOX", []byte("Subject: small\r\n\r\nsmall\r\n"))
	addr := freeAddr(t)
	const grace = 2 * time.Second
	s := startOps(t, fmt.Sprintf(`listeners:
  - address: %q
upstream:
  address: %q
  tls: none
state:
  driver: memory
metrics:
  address: "127.0.0.1:0"
shutdown_grace: %s
`, addr, dv.IMAPAddr, grace), opsOptions{})

	p := e2e.Dial(t, addr, nil, nil)
	p.Login(user, dv.Password)
	if l := p.Cmd("DELE 2"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("DELE 2: %q", l)
	}
	if l := p.Cmd("RETR 1"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("RETR 1: %q", l)
	}
	first := make([]byte, 64<<10)
	if _, err := io.ReadFull(p.R, first); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	e2e.WaitFor(t, "the drain", s.d.srv.Draining)

	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatalf("the listener must stay open during the grace period: %v", err)
	}
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	refusal, _ := io.ReadAll(nc)
	nc.Close()
	if string(refusal) != "-ERR [SYS/TEMP] server shutting down\r\n" {
		t.Fatalf("new connection during the grace period got %q", refusal)
	}
	if code, body := s.get("/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "shutting down") {
		t.Fatalf("/readyz while draining: %d %q", code, body)
	}

	// The RETR goes on to its end, exactly.
	rest, err := readDotBody(p)
	if err != nil {
		t.Fatalf("RETR cut off during the grace period: %v", err)
	}
	if got := unstuff(append(first, rest...)); !bytes.Equal(got, big) {
		t.Fatalf("RETR during the grace period: %d octets, want %d, identical: %v", len(got), len(big), bytes.Equal(got, big))
	}
	// The client neither QUITs nor leaves: cut off at the end of the grace.
	p.NC.SetReadDeadline(time.Now().Add(grace + 10*time.Second))
	if b, err := p.R.ReadByte(); err == nil {
		t.Fatalf("the server sent %q instead of closing", b)
	}
	if took := time.Since(start); took < grace-100*time.Millisecond {
		t.Fatalf("session cut off after %v, before the grace period of %v", took, grace)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if len(s.logged("sessions cut off at the end of shutdown_grace (nothing was deleted for them)")) != 1 {
		t.Errorf("no log of the sessions cut off:\n%s", s.logs.String())
	}
	ends := s.logged("session ended")
	if len(ends) != 1 || ends[0]["end"] != "shutdown" || ends[0]["retrieved"] != float64(1) || ends[0]["deleted"] != float64(0) {
		t.Errorf("session ended lines: %v", ends)
	}

	// Nothing was deleted upstream.
	c := dv.Client(t, user)
	sel, err := c.Select("INBOX", &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatal(err)
	}
	if sel.NumMessages != 2 {
		t.Fatalf("%d messages upstream after the cut-off session, want 2", sel.NumMessages)
	}
	msgs, err := c.Fetch(imap.SeqSetNum(1, 2), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if slices.Contains(m.Flags, imap.FlagDeleted) {
			t.Errorf("message %d is \\Deleted upstream", m.SeqNum)
		}
	}
}

// readDotBody reads a multi-line answer to its terminating "." line and
// returns it with the terminator, still dot-stuffed.
func readDotBody(p *e2e.Conn) ([]byte, error) {
	p.NC.SetReadDeadline(time.Now().Add(30 * time.Second))
	var out []byte
	for {
		line, err := p.R.ReadBytes('\n')
		out = append(out, line...)
		if err != nil {
			return out, err
		}
		if bytes.HasSuffix(out, []byte("\r\n.\r\n")) {
			return out, nil
		}
	}
}

// unstuff turns a dot-stuffed multi-line body with its terminator into
// the message.
func unstuff(b []byte) []byte {
	b = bytes.TrimSuffix(b, []byte(".\r\n"))
	lines := bytes.SplitAfter(b, []byte("\r\n"))
	var out []byte
	for _, l := range lines {
		out = append(out, bytes.TrimPrefix(l, []byte("."))...)
	}
	return out
}

// tlsOnlyConfig is a config with one implicit-TLS listener and no real
// upstream (nothing logs in).
func tlsOnlyConfig(addr string, pki *e2e.PKI, extra string) string {
	return fmt.Sprintf(`listeners:
  - address: %q
    tls: implicit
tls:
  cert_file: %q
  key_file: %q
upstream:
  address: "127.0.0.1:9"
  tls: none
state:
  driver: memory
shutdown_grace: 1s
%s`, addr, pki.CertFile, pki.KeyFile, extra)
}

// peerCert connects with TLS trusting pki and returns the server
// certificate, or the handshake error.
func peerCert(addr string, cfg *tls.Config) ([]byte, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Raw, nil
}

// TestReloadCertificatesAndSettings: a reload (what SIGHUP does) makes the
// next TLS connection use the new certificate, applies the safe settings,
// logs exactly which keys changed and which need a restart; a broken file
// is rejected and the running configuration stays.
func TestReloadCertificatesAndSettings(t *testing.T) {
	pkiA, pkiB := e2e.NewPKI(t), e2e.NewPKI(t)
	addr := freeAddr(t)
	s := startOps(t, tlsOnlyConfig(addr, pkiA, "auth:\n  failure_delay: 2s\n"), opsOptions{})

	certA, err := peerCert(addr, pkiA.TLSConfig())
	if err != nil {
		t.Fatalf("TLS with the first certificate: %v", err)
	}
	// A connection open across the reload goes on.
	open, err := tls.Dial("tcp", addr, pkiA.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	if len(s.logged("connection opened")) != 0 {
		t.Fatal("debug lines at log.level info")
	}

	// New certificate, log level, a delay; and a listener address, which
	// needs a restart.
	other := freeAddr(t)
	s.writeConfig(tlsOnlyConfig(other, pkiB, "auth:\n  failure_delay: 1s\nlog:\n  level: debug\n"))
	if err := s.reload(); err != nil {
		t.Fatalf("reload: %v\n%s", err, s.logs.String())
	}
	certB, err := peerCert(addr, pkiB.TLSConfig())
	if err != nil {
		t.Fatalf("TLS after the reload, trusting the new CA: %v", err)
	}
	if bytes.Equal(certA, certB) {
		t.Fatal("the certificate did not change")
	}
	if _, err := peerCert(addr, pkiA.TLSConfig()); err == nil {
		t.Fatal("a new connection still got the old certificate")
	}
	if _, err := net.DialTimeout("tcp", other, time.Second); err == nil {
		t.Fatal("the listener moved without a restart")
	}
	cfg := s.d.cfg.Load()
	if cfg.Auth.FailureDelay != time.Second || cfg.Listeners[0].Address != addr || cfg.Log.Level != "debug" {
		t.Fatalf("configuration in force after the reload: %+v", cfg)
	}
	rl := s.logged("config reloaded")
	if len(rl) != 1 {
		t.Fatalf("%d 'config reloaded' lines:\n%s", len(rl), s.logs.String())
	}
	if got, want := fmt.Sprint(rl[0]["changed"]), "[tls.cert_file tls.key_file auth.failure_delay log.level]"; got != want {
		t.Errorf("changed = %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(rl[0]["needs_restart"]), "[listeners.0.address]"; got != want {
		t.Errorf("needs_restart = %s, want %s", got, want)
	}
	if len(s.logged("TLS certificate reloaded: new TLS connections use it")) != 1 {
		t.Error("no log of the new certificate")
	}
	// log.level debug is in force at once.
	e2e.WaitFor(t, "a debug line", func() bool { return len(s.logged("connection opened")) > 0 })

	// The connection from before the reload still works.
	open.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(open, "NOOP\r\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 256)
	if n, err := open.Read(buf); err != nil || !strings.HasPrefix(string(buf[:n]), "+OK") {
		t.Fatalf("connection open across the reload: %q %v", buf[:n], err)
	}

	// A broken file: rejected, everything stays.
	s.writeConfig(tlsOnlyConfig(addr, pkiA, "auth:\n  failure_delay: 5s\npolicy:\n  on_dele: shred\n"))
	err = s.reload()
	if err == nil || !strings.Contains(err.Error(), "policy.on_dele") {
		t.Fatalf("reload of a broken file: %v", err)
	}
	// A valid file whose certificate does not load: rejected too.
	broken := *pkiA
	broken.KeyFile = filepath.Join(t.TempDir(), "missing.key")
	s.writeConfig(tlsOnlyConfig(addr, &broken, "auth:\n  failure_delay: 5s\n"))
	if err := s.reload(); err == nil || !strings.Contains(err.Error(), "tls.cert_file") {
		t.Fatalf("reload with a missing key file: %v", err)
	}
	if n := len(s.logged("config reload rejected; the running configuration stays in force")); n != 2 {
		t.Errorf("%d rejections logged, want 2", n)
	}
	if cfg := s.d.cfg.Load(); cfg.Auth.FailureDelay != time.Second || cfg.Policy.OnDele != "expunge" {
		t.Fatalf("a rejected reload changed the configuration: %+v", cfg)
	}
	if got, err := peerCert(addr, pkiB.TLSConfig()); err != nil || !bytes.Equal(got, certB) {
		t.Fatalf("after rejected reloads the certificate must stay: %v", err)
	}
}

// TestAuthRateLimit: limits.auth_failures_per_ip failed logins per minute,
// then -ERR [LOGIN-DELAY] before the upstream is asked; once time has
// passed, logins work again. Counted in the metrics.
func TestAuthRateLimit(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	addr := freeAddr(t)
	clock := newTestClock()
	s := startOps(t, fmt.Sprintf(`listeners:
  - address: %q
upstream:
  address: %q
  tls: none
state:
  driver: memory
auth:
  failure_delay: 10ms
limits:
  auth_failures_per_ip: 3
metrics:
  address: "127.0.0.1:0"
shutdown_grace: 1s
`, addr, dv.IMAPAddr), opsOptions{now: clock.now})

	attempt := func(password string) string {
		p := e2e.Dial(t, addr, nil, nil)
		defer p.NC.Close()
		if l := p.Cmd("USER %s", user); !strings.HasPrefix(l, "+OK") {
			t.Fatalf("USER: %q", l)
		}
		return p.Cmd("PASS %s", password)
	}
	for i := range 3 {
		if l := attempt("wrong-password"); !strings.HasPrefix(l, "-ERR [AUTH]") {
			t.Fatalf("bad password %d: %q", i+1, l)
		}
	}
	if l := attempt(dv.Password); !strings.HasPrefix(l, "-ERR [LOGIN-DELAY]") {
		t.Fatalf("fourth attempt, after 3 failures in a minute: %q", l)
	}
	clock.advance(21 * time.Second) // 3 per minute: one attempt every 20 s
	if l := attempt(dv.Password); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("after the rate allows again: %q", l)
	}
	m := s.scrape()
	m.want(t, `popbridge_logins_total{result="auth"}`, "==", 3)
	m.want(t, `popbridge_logins_total{result="login_delay"}`, "==", 1)
	m.want(t, `popbridge_logins_total{result="ok"}`, "==", 1)
	m.want(t, `popbridge_connections_refused_total{reason="login_limiter"}`, "==", 1)
	m.want(t, `popbridge_upstream_connect_duration_seconds_count{result="auth"}`, "==", 3)
}

// TestLogsHoldNoSecrets: a whole session at log level debug — USER/PASS,
// AUTH PLAIN, a failed login, RETR, TOP, DELE, QUIT — leaves neither the
// password, nor its base64 forms, nor a line of the message body in any log
// line; the session's last line tells what happened.
func TestLogsHoldNoSecrets(t *testing.T) {
	const password = "Pw-9f3c1e-NeverLogMe"
	const bodyLine = "BODY-4d8a2b-this-line-must-not-be-logged"
	dv := dovecot.Start(t, dovecot.WithPassword(password))
	user := dovecot.User(t)
	dv.Append(t, user, "INBOX", []byte("Subject: secret\r\nMessage-ID: <s1@test>\r\n\r\nfirst\r\n"+bodyLine+"\r\nlast\r\n"))
	addr := freeAddr(t)
	s := startOps(t, fmt.Sprintf(`listeners:
  - address: %q
upstream:
  address: %q
  tls: none
state:
  driver: memory
auth:
  failure_delay: 10ms
log:
  level: debug
shutdown_grace: 1s
`, addr, dv.IMAPAddr), opsOptions{})

	plain := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	// AUTH PLAIN, RETR, TOP, QUIT without deletions.
	p := e2e.Dial(t, addr, nil, nil)
	if l := p.Cmd("AUTH PLAIN %s", plain); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("AUTH PLAIN: %q", l)
	}
	if l := p.Cmd("RETR 1"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("RETR: %q", l)
	}
	if body := strings.Join(p.Multi(), "\n"); !strings.Contains(body, bodyLine) {
		t.Fatalf("RETR body: %q", body)
	}
	if l := p.Cmd("TOP 1 2"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("TOP: %q", l)
	}
	p.Multi()
	p.Cmd("QUIT")
	// A failed login with a password close to the real one.
	q := e2e.Dial(t, addr, nil, nil)
	q.Cmd("USER %s", user)
	if l := q.Cmd("PASS %s", password+"x"); !strings.HasPrefix(l, "-ERR [AUTH]") {
		t.Fatalf("wrong password: %q", l)
	}
	q.Cmd("QUIT")
	// USER/PASS, RETR, DELE, QUIT.
	e2e.WaitFor(t, "the first session's end", func() bool { return len(s.logged("session ended")) >= 1 })
	r := e2e.Dial(t, addr, nil, nil)
	r.Login(user, password)
	r.Cmd("RETR 1")
	r.Multi()
	if l := r.Cmd("DELE 1"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("DELE: %q", l)
	}
	if l := r.Cmd("QUIT"); !strings.HasPrefix(l, "+OK") {
		t.Fatalf("QUIT: %q", l)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	logs := s.logs.String()
	if !strings.Contains(logs, `"level":"debug"`) {
		t.Fatal("no debug lines: the test proves nothing")
	}
	for what, secret := range map[string]string{
		"the password":                   password,
		"the AUTH PLAIN response":        plain,
		"the password in base64":         base64.StdEncoding.EncodeToString([]byte(password)),
		"the password in base64 (bare)":  base64.RawStdEncoding.EncodeToString([]byte(password)),
		"a line of the message body":     bodyLine,
		"the password minus its first 3": password[3:],
	} {
		if strings.Contains(logs, secret) {
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(line, secret) {
					t.Errorf("%s is in the log: %s", what, line)
				}
			}
		}
	}
	ends := s.logged("session ended")
	byEnd := map[string]map[string]any{}
	for _, e := range ends {
		byEnd[fmt.Sprint(e["end"])] = e
	}
	if len(ends) != 3 || byEnd["quit"] == nil || byEnd["update_ok"] == nil {
		t.Fatalf("session ended lines: %v", ends)
	}
	u := byEnd["update_ok"]
	for k, v := range map[string]any{"user": user, "listener": addr, "tls": "none", "listed": 1.0, "retrieved": 1.0, "deleted": 1.0} {
		if u[k] != v {
			t.Errorf("session ended %s = %v, want %v (%v)", k, u[k], v, u)
		}
	}
	if u["bytes_sent"].(float64) < float64(len(bodyLine)) || u["remote"] == nil || u["duration"] == nil {
		t.Errorf("session ended: %v", u)
	}
}

// TestLegacyLane: a listener's legacy lane lets TLS 1.0 in from its
// networks only (127.0.0.2 stands for the old scanners' network, 127.0.0.1
// for everyone else); popbridge warns about it (and check-config:
// TestCheckConfigLegacyLane in cmd/popbridge).
func TestLegacyLane(t *testing.T) {
	pki := e2e.NewPKI(t)
	addr := freeAddr(t)
	cfgYAML := fmt.Sprintf(`listeners:
  - address: %q
    tls: implicit
    legacy:
      min_tls_version: "1.0"
      networks: ["127.0.0.2/32", "192.0.2.0/24"]
tls:
  cert_file: %q
  key_file: %q
upstream:
  address: "127.0.0.1:9"
  tls: none
state:
  driver: memory
metrics:
  address: "127.0.0.1:0"
shutdown_grace: 1s
`, addr, pki.CertFile, pki.KeyFile)
	s := startOps(t, cfgYAML, opsOptions{})

	old := pki.TLSConfig()
	old.MinVersion, old.MaxVersion = tls.VersionTLS10, tls.VersionTLS10
	dial := func(from string, cfg *tls.Config) (*tls.Conn, error) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
		nc, err := d.Dial("tcp", addr)
		if err != nil { // Linux routes all of 127/8 to lo: this must work in CI
			testenv.Unavailable(t, "cannot dial from %s: %v", from, err)
		}
		tc := tls.Client(nc, cfg)
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			nc.Close()
			return nil, err
		}
		return tc, nil
	}
	tc, err := dial("127.0.0.2", old)
	if err != nil {
		t.Fatalf("TLS 1.0 from the legacy network: %v", err)
	}
	if v := tc.ConnectionState().Version; v != tls.VersionTLS10 {
		t.Fatalf("version %x", v)
	}
	// (TLS 1.0 splits records 1/n-1 against BEAST: read a whole line.)
	if g, err := bufio.NewReader(tc).ReadString('\n'); err != nil || !strings.HasPrefix(g, "+OK") {
		t.Fatalf("greeting over TLS 1.0: %q %v", g, err)
	}
	tc.Close()
	if _, err := dial("127.0.0.1", old); err == nil {
		t.Fatal("TLS 1.0 accepted from outside the legacy networks")
	}
	old11 := old.Clone()
	old11.MinVersion, old11.MaxVersion = tls.VersionTLS11, tls.VersionTLS11
	if _, err := dial("127.0.0.1", old11); err == nil {
		t.Fatal("TLS 1.1 accepted from outside the legacy networks")
	}
	tc, err = dial("127.0.0.1", pki.TLSConfig())
	if err != nil {
		t.Fatalf("TLS 1.2+ from outside the legacy networks: %v", err)
	}
	tc.Close()

	warned := false
	for _, e := range s.logged("risky setting: legacy lane on " + addr + " for 127.0.0.2/32, 192.0.2.0/24: TLS down to 1.0") {
		warned = e["key"] == "listeners.0.legacy" && e["level"] == "warn"
	}
	if !warned {
		t.Errorf("no start-up warning naming the listener:\n%s", s.logs.String())
	}
	m := s.scrape()
	m.want(t, fmt.Sprintf(`popbridge_tls_handshakes_total{listener=%q,version="1.0"}`, addr), "==", 1)
	m.want(t, fmt.Sprintf(`popbridge_tls_handshake_errors_total{listener=%q}`, addr), "==", 2)
}

// TestLegacyPlaintext: plaintext login is allowed from a lane's networks
// (and loopback, and with auth.allow_plaintext), not from elsewhere.
func TestLegacyPlaintext(t *testing.T) {
	cfg := config.Default()
	cfg.Listeners = []config.Listener{
		{Address: "0.0.0.0:110", TLS: "none", Legacy: config.Legacy{AllowPlaintext: true, Networks: []string{"192.0.2.0/24", "2001:db8::7"}}},
		{Address: "0.0.0.0:111", TLS: "none"},
	}
	lanes, err := newLegacyLanes(cfg.Listeners)
	if err != nil {
		t.Fatal(err)
	}
	d := &daemon{lanes: lanes}
	d.cfg.Store(cfg)
	at := func(listener, ip string) bool {
		return d.allowPlaintext(&pop3.ConnInfo{Listener: listener, RemoteAddr: &net.TCPAddr{IP: net.ParseIP(ip), Port: 40000}})
	}
	for _, c := range []struct {
		listener, ip string
		want         bool
	}{
		{"0.0.0.0:110", "192.0.2.9", true},
		{"0.0.0.0:110", "2001:db8::7", true},
		{"0.0.0.0:110", "::ffff:192.0.2.9", true},
		{"0.0.0.0:110", "198.51.100.1", false},
		{"0.0.0.0:110", "2001:db8::8", false},
		{"0.0.0.0:111", "192.0.2.9", false}, // another listener
		{"0.0.0.0:111", "127.0.0.1", true},  // loopback, as always
	} {
		if got := at(c.listener, c.ip); got != c.want {
			t.Errorf("plaintext on %s from %s: %v, want %v", c.listener, c.ip, got, c.want)
		}
	}
	allow := *cfg
	allow.Auth.AllowPlaintext = true
	d.cfg.Store(&allow)
	if !at("0.0.0.0:111", "198.51.100.1") {
		t.Error("auth.allow_plaintext must allow everyone")
	}
}
