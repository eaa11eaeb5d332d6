package pop3

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// recorder is an Observer that writes down what it is told.
type recorder struct {
	mu       sync.Mutex
	events   []string
	sent     int64
	sessions []SessionSummary
}

func (r *recorder) add(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, fmt.Sprintf(format, args...))
}

func (r *recorder) ConnOpened(ci *ConnInfo, mode TLSMode)  { r.add("open %s %s", ci.Listener, mode) }
func (r *recorder) ConnRefused(_ *ConnInfo, reason string) { r.add("refused %s", reason) }
func (r *recorder) TLSHandshake(ci *ConnInfo, err error) {
	r.add("tls %s %v", TLSVersionName(ci.TLS), err == nil)
}
func (r *recorder) Login(_ *ConnInfo, result string) { r.add("login %s", result) }
func (r *recorder) Command(name string, ok bool)     { r.add("cmd %s %v", name, ok) }
func (r *recorder) BytesSent(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent += int64(n)
}
func (r *recorder) SessionEnded(s *SessionSummary) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sessions = append(r.sessions, *s)
}

func (r *recorder) snapshot() ([]string, int64, []SessionSummary) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.events), r.sent, slices.Clone(r.sessions)
}

// waitSessions waits until n sessions have ended.
func (r *recorder) waitSessions(t *testing.T, n int) []SessionSummary {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, _, s := r.snapshot()
		if len(s) >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d sessions ended, want %d", len(s), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestObserverAndSessionLog(t *testing.T) {
	rec := &recorder{}
	core, logs := observer.New(zap.DebugLevel)
	b := newMemBackend(testMessages...)
	e := startServerLC(t, b, ListenerConfig{Name: "pop3-main"}, func(s *Server) {
		s.Observer = rec
		s.Logger = zap.New(core)
	})
	c := e.dial()
	c.expectErr("USER", "missing user name")
	c.login()
	c.expectOK("RETR 1")
	got := c.body()
	c.expectOK("DELE 2")
	c.send("NOPE")
	c.line()
	c.expectOK("QUIT")
	c.expectEOF()
	sessions := rec.waitSessions(t, 1)

	events, sent, _ := rec.snapshot()
	want := []string{"open pop3-main none", "cmd USER false", "cmd USER true", "login ok", "cmd PASS true",
		"cmd RETR true", "cmd DELE true", "cmd unknown false", "cmd QUIT true"}
	if !slices.Equal(events, want) {
		t.Errorf("events\n got %q\nwant %q", events, want)
	}
	s := sessions[0]
	if s.User != testUser || s.Mechanism != "USER" || s.Listed != 3 || s.Retrieved != 1 || s.Deleted != 1 ||
		s.End != EndUpdateOK || s.Info.Listener != "pop3-main" || s.BytesSent != sent || s.Duration <= 0 {
		t.Errorf("summary %+v (observer counted %d octets)", s, sent)
	}
	// What the client read: greeting, 9 status lines, the body (with its
	// dot-stuffing and terminator) — more than the message itself.
	if sent < int64(len(got)) {
		t.Errorf("%d octets counted, the message alone is %d", sent, len(got))
	}

	ends := logs.FilterMessage("session ended").All()
	if len(ends) != 1 {
		t.Fatalf("%d 'session ended' lines, want 1", len(ends))
	}
	f := ends[0].ContextMap()
	for k, v := range map[string]any{"user": testUser, "listener": "pop3-main", "tls": "none", "listed": int64(3),
		"retrieved": int64(1), "deleted": int64(1), "bytes_sent": sent, "end": "update_ok"} {
		if f[k] != v {
			t.Errorf("session ended: %s = %v (%T), want %v; all %v", k, f[k], f[k], v, f)
		}
	}
	if _, ok := f["remote"]; !ok {
		t.Errorf("session ended has no remote address: %v", f)
	}
}

func TestSessionEnds(t *testing.T) {
	rec := &recorder{}
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) {
		s.Observer = rec
		s.MaxBadCommandsAuth = 2
	})
	// QUIT before login.
	c := e.dial()
	c.expectOK("QUIT")
	c.expectEOF()
	// The client goes away.
	c = e.dial()
	c.login()
	c.nc.Close()
	// Too many bad commands.
	c = e.dial()
	c.expectErr("X", "unknown")
	c.expectErr("Y", "unknown")
	c.expectEOF()
	sessions := rec.waitSessions(t, 3)
	var ends []string
	for _, s := range sessions {
		ends = append(ends, s.End)
	}
	slices.Sort(ends)
	if want := []string{EndBadCommands, EndDropped, EndQuit}; !slices.Equal(ends, want) {
		t.Fatalf("ends %v, want %v", ends, want)
	}
}

func TestLoginLimiterObserved(t *testing.T) {
	rec := &recorder{}
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) {
		s.Observer = rec
		s.LoginLimiter = denyAll{}
	})
	c := e.dial()
	c.expectOK("USER " + testUser)
	c.expectErr("PASS "+testPass, "[LOGIN-DELAY]")
	c.expectEOF()
	sessions := rec.waitSessions(t, 1)
	events, _, _ := rec.snapshot()
	if !slices.Contains(events, "refused login_limiter") || !slices.Contains(events, "login login_delay") ||
		sessions[0].End != EndRefused {
		t.Fatalf("events %q, end %q", events, sessions[0].End)
	}
}

type denyAll struct{}

func (denyAll) Allow(net.Addr) (bool, time.Duration) { return false, 3 * time.Second }
func (denyAll) Failed(net.Addr)                      {}

// TestShutdownDraining: with RefuseDuringShutdown, the listener stays open
// during the grace period and answers new connections -ERR [SYS/TEMP]; a
// connection that has not logged in cannot log in any more; a logged-in
// session finishes, QUIT and UPDATE included; then Shutdown returns and the
// listener is closed.
func TestShutdownDraining(t *testing.T) {
	rec := &recorder{}
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) {
		s.Observer = rec
		s.RefuseDuringShutdown = true
	})
	sess := e.dial()
	sess.login()
	idle := e.dial()
	idle.expectOK("USER " + testUser)

	done := make(chan error, 1)
	go func() { done <- e.srv.Shutdown(context.Background()) }()
	deadline := time.Now().Add(10 * time.Second)
	for !e.srv.Draining() {
		if time.Now().After(deadline) {
			t.Fatal("Shutdown did not start")
		}
		time.Sleep(time.Millisecond)
	}

	c, greeting := e.dialGreeting()
	if greeting != "-ERR [SYS/TEMP] server shutting down" {
		t.Fatalf("new connection during the grace period: %q", greeting)
	}
	c.expectEOF()
	idle.expectErr("PASS "+testPass, "[SYS/TEMP] server shutting down")
	idle.expectEOF()

	sess.expectOK("DELE 1")
	sess.expectOK("RETR 2")
	sess.body()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v while a session was open", err)
	default:
	}
	sess.expectOK("QUIT")
	sess.expectEOF()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Shutdown = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return after the last session ended")
	}
	if updates, _ := b.session(t, 0).waitClosed(t); len(updates) != 1 || !slices.Equal(updates[0], []int{1}) {
		t.Fatalf("updates %v", updates)
	}
	if err := e.waitServe(); err != ErrServerClosed {
		t.Fatalf("Serve = %v", err)
	}
	events, _, _ := rec.snapshot()
	if n := strings.Count(strings.Join(events, "\n"), "refused shutting_down"); n != 2 {
		t.Errorf("%d shutting_down refusals observed, want 2: %q", n, events)
	}
}

// TestShutdownDrainingTLS: on an implicit-TLS listener the refusal comes
// after the handshake.
func TestShutdownDrainingTLS(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServerLC(t, b, ListenerConfig{TLS: TLSImplicit}, func(s *Server) { s.RefuseDuringShutdown = true })
	sess := e.dial()
	sess.login()
	go e.srv.Shutdown(context.Background())
	for !e.srv.Draining() {
		time.Sleep(time.Millisecond)
	}
	c, greeting := e.dialGreeting()
	if greeting != "-ERR [SYS/TEMP] server shutting down" {
		t.Fatalf("new TLS connection during the grace period: %q", greeting)
	}
	if _, ok := c.nc.(*tls.Conn); !ok {
		t.Fatal("not a TLS connection")
	}
	sess.expectOK("QUIT")
}

// TestReconfigure: new connections get the new settings, open ones keep
// theirs.
func TestReconfigure(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) { s.Mechanisms = []string{"PLAIN"} })
	before := e.dial()
	if err := e.srv.Reconfigure(Settings{Mechanisms: []string{"NOPE"}}); err == nil {
		t.Fatal("Reconfigure took an unknown mechanism")
	}
	if err := e.srv.Reconfigure(Settings{Mechanisms: []string{"LOGIN"}, MaxConnections: 2}); err != nil {
		t.Fatal(err)
	}
	after := e.dial()
	if capa := strings.Join(after.multi("CAPA"), " "); !strings.Contains(capa, "SASL LOGIN") {
		t.Errorf("CAPA after Reconfigure: %q", capa)
	}
	if capa := strings.Join(before.multi("CAPA"), " "); !strings.Contains(capa, "SASL PLAIN") {
		t.Errorf("CAPA of a connection open before Reconfigure: %q", capa)
	}
	// Two connections are open: a third is over the new limit.
	_, g := e.dialGreeting()
	if !strings.HasPrefix(g, "-ERR [SYS/TEMP] too many connections") {
		t.Errorf("third connection: %q", g)
	}
}
