package pop3

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestGreeting(t *testing.T) {
	e := startServer(t, newMemBackend(), nil)
	if _, g := e.dialGreeting(); g != "+OK POP3 server ready" {
		t.Fatalf("default greeting %q", g)
	}
	// A CRLF in the greeting must not make two lines.
	e = startServer(t, newMemBackend(), func(s *Server) { s.Greeting = "hello\r\nthere" })
	c, g := e.dialGreeting()
	if g != "+OK hello  there" {
		t.Fatalf("greeting %q", g)
	}
	c.expectOK("QUIT")
}

func TestCAPA(t *testing.T) {
	e := startServer(t, newMemBackend(testMessages...), nil)
	c := e.dial()
	before := c.multi("CAPA")
	want := []string{"TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "USER", "SASL PLAIN LOGIN", "IMPLEMENTATION popbridge-test"}
	if !slices.Equal(before, want) {
		t.Fatalf("CAPA before login = %q, want %q", before, want)
	}
	c.login()
	after := c.multi("capa")
	want = []string{"TOP", "UIDL", "RESP-CODES", "PIPELINING", "AUTH-RESP-CODE", "IMPLEMENTATION popbridge-test"}
	if !slices.Equal(after, want) {
		t.Fatalf("CAPA after login = %q, want %q", after, want)
	}
	c.expectErr("CAPA x", "too many arguments")
	c.expectOK("NOOP")
}

// TestCAPAPolicy: LOGIN-DELAY (rounded up to whole seconds) and EXPIRE are
// announced when set, before and after login, and follow Reconfigure.
func TestCAPAPolicy(t *testing.T) {
	var srv *Server
	e := startServer(t, newMemBackend(testMessages...), func(s *Server) {
		s.LoginDelay, s.Expire = 299500*time.Millisecond, "NEVER"
		srv = s
	})
	c := e.dial()
	for _, when := range []string{"before", "after"} {
		caps := c.multi("CAPA")
		if !slices.Contains(caps, "LOGIN-DELAY 300") || !slices.Contains(caps, "EXPIRE NEVER") {
			t.Fatalf("CAPA %s login = %q", when, caps)
		}
		if when == "before" {
			c.login()
		}
	}
	st := srv.fieldSettings()
	st.LoginDelay, st.Expire = 0, ""
	if err := srv.Reconfigure(st); err != nil {
		t.Fatal(err)
	}
	caps := e.dial().multi("CAPA")
	if slices.ContainsFunc(caps, func(s string) bool { return strings.HasPrefix(s, "LOGIN-DELAY") || strings.HasPrefix(s, "EXPIRE") }) {
		t.Fatalf("CAPA after both were turned off: %q", caps)
	}
}

func TestPlaintextRefused(t *testing.T) {
	b := newMemBackend(testMessages...)
	var seen *ConnInfo
	e := startServer(t, b, func(s *Server) {
		s.MaxBadCommandsAuth = -1
		s.AllowPlaintext = func(ci *ConnInfo) bool { seen = ci; return false }
	})
	c := e.dial()
	caps := c.multi("CAPA")
	if slices.Contains(caps, "USER") || slices.ContainsFunc(caps, func(s string) bool { return strings.HasPrefix(s, "SASL") }) {
		t.Fatalf("CAPA offers USER or SASL where plaintext is refused: %q", caps)
	}
	c.expectErr("USER alice", "[AUTH] Plaintext authentication disallowed")
	c.expectErr("PASS secret", "[AUTH] Plaintext authentication disallowed")
	c.expectOK("QUIT")
	c.expectEOF()
	if seen == nil || seen.RemoteAddr == nil || !IsLoopback(seen.RemoteAddr) {
		t.Fatalf("AllowPlaintext got %+v", seen)
	}
	if b.loginCount() != 0 {
		t.Fatal("Login was called")
	}
}

func TestCommandsBeforeLogin(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) { s.MaxBadCommandsAuth = -1 })
	c := e.dial()
	for _, cmd := range []string{"STAT", "LIST", "LIST 1", "UIDL", "UIDL 1", "RETR 1", "TOP 1 1", "DELE 1", "RSET", "NOOP"} {
		c.expectErr(cmd, "not valid before login")
	}
	c.expectErr("APOP alice c4c9334bac560ecc979e58001b3e22fb", "APOP not supported")
	c.expectErr("AUTH CRAM-MD5", "unsupported authentication mechanism")
	c.expectErr("STLS", "STLS not available")
	c.expectErr("XYZZY", "unknown command")
	c.expectErr("", "unknown command")
	if b.loginCount() != 0 {
		t.Fatal("Login was called")
	}
	c.login()
	c.expectOK("STAT")
}

func TestCommandsAfterLogin(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	for _, cmd := range []string{"USER bob", "PASS x", "APOP bob 0123", "AUTH PLAIN", "STLS"} {
		c.expectErr(cmd, "not valid after login")
		c.expectOK("NOOP")
	}
	c.expectErr("XYZZY", "unknown command")
	c.expectErr("NOOP now", "too many arguments")
	c.expectErr("STAT 1", "too many arguments")
	c.expectErr("RSET 1", "too many arguments")
	c.expectOK("noop")
	if b.loginCount() != 1 {
		t.Fatalf("%d logins", b.loginCount())
	}
}

func TestLoginFlow(t *testing.T) {
	b := newMemBackend(testMessages...)
	const delay = 50 * time.Millisecond
	e := startServer(t, b, func(s *Server) {
		s.FailureDelay = delay
		s.MaxBadCommandsAuth = 10
	})
	c := e.dial()
	c.expectErr("PASS secret", "send USER first")
	c.expectErr("USER", "missing user name")
	c.expectOK("USER alice")
	start := time.Now()
	c.expectErr("PASS wrong", "[AUTH] authentication failed")
	if took := time.Since(start); took < delay {
		t.Fatalf("failed login answered after %v, want at least FailureDelay %v", took, delay)
	}
	// After a failed PASS, the client starts again with USER.
	c.expectErr("PASS secret", "send USER first")
	c.expectOK("USER nobody")
	c.expectOK("USER alice") // a second USER replaces the first
	c.expectErr("PASS", "missing password")
	c.expectOK("USER alice")
	resp := c.expectOK("PASS secret")
	if resp != "+OK maildrop has 3 messages (146 octets)" {
		t.Fatalf("login answer %q", resp)
	}
	s := b.session(t, 0)
	c.expectOK("STAT")
	c.expectOK("QUIT")
	c.expectEOF()
	s.waitClosed(t)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.messagesCalls != 1 {
		t.Fatalf("Messages called %d times", s.messagesCalls)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.logins != 2 {
		t.Fatalf("%d logins, want 2", b.logins)
	}
	if cr := b.creds[1]; cr.Mechanism != "USER" || cr.Username != testUser || cr.Password != testPass {
		t.Fatalf("credentials %+v", cr)
	}
	if ci := b.infos[1]; len(ci.ID) != 12 || ci.RemoteAddr == nil || ci.LocalAddr == nil || ci.TLS != nil {
		t.Fatalf("conn info %+v", ci)
	}
}

func TestPasswordWithSpaces(t *testing.T) {
	b := newMemBackend(testMessages...)
	b.users["bob smith"] = " pass with  spaces "
	e := startServer(t, b, nil)
	c := e.dial()
	c.expectOK("USER bob smith")
	c.expectOK("PASS  pass with  spaces ")
}

func TestLoginErrors(t *testing.T) {
	const delay = 500 * time.Millisecond
	tests := []struct {
		name    string
		err     error
		want    string
		delayed bool
		closes  bool
	}{
		{"in use", &Error{Code: CodeInUse, Message: "maildrop is in use"}, "-ERR [IN-USE] maildrop is in use", false, false},
		{"login delay", &Error{Code: CodeLoginDelay, Message: "wait"}, "-ERR [LOGIN-DELAY] wait", false, false},
		{"plain error", errors.New("dial imap.example.net: connection refused"), "-ERR [SYS/TEMP] temporary server failure", false, false},
		{"wrapped perm", fmt.Errorf("select: %w", &Error{Code: CodeSysPerm, Message: "no mailbox"}), "-ERR [SYS/PERM] no mailbox", false, false},
		{"no code means auth", &Error{Message: "bad login"}, "-ERR [AUTH] bad login", true, false},
		{"auth", fmt.Errorf("upstream: %w", ErrAuthFailed), "-ERR [AUTH] authentication failed", true, false},
		{"close", &Error{Code: CodeSysTemp, Message: "shutting down", Close: true}, "-ERR [SYS/TEMP] shutting down", false, true},
		{"crlf in message", &Error{Code: "IN USE\r\n", Message: "a\r\n.\r\nb"}, "-ERR a  .  b", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			b := newMemBackend(testMessages...)
			b.setLoginErr(tt.err)
			e := startServer(t, b, func(s *Server) { s.FailureDelay = delay })
			c := e.dial()
			c.expectOK("USER alice")
			start := time.Now()
			if got := c.cmd("PASS secret"); got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			took := time.Since(start)
			if tt.delayed && took < delay {
				t.Fatalf("answered after %v, want at least %v", took, delay)
			}
			if !tt.delayed && took >= delay {
				t.Fatalf("answered after %v: a non-credential failure must not be delayed", took)
			}
			if tt.closes {
				c.expectEOF()
				return
			}
			// The client may try again.
			b.setLoginErr(nil)
			c.expectOK("USER alice")
			c.expectOK("PASS secret")
		})
	}
}

// TestLoginWaitAndAttempts: an [AUTH] refusal's own Wait replaces
// FailureDelay (an authentication service asked for it), and the backend
// is told which attempt of the connection each login is.
func TestLoginWaitAndAttempts(t *testing.T) {
	t.Parallel()
	b := newMemBackend(testMessages...)
	const wait = 300 * time.Millisecond
	b.setLoginErr(&Error{Code: CodeAuth, Message: "Invalid login or password", Wait: wait})
	e := startServer(t, b, func(s *Server) { s.FailureDelay = 10 * time.Second })
	c := e.dial()
	c.expectOK("USER alice")
	start := time.Now()
	c.expectErr("PASS wrong", "[AUTH] Invalid login or password")
	if took := time.Since(start); took < wait || took >= 10*time.Second {
		t.Fatalf("refusal answered after %v, want the error's Wait %v instead of FailureDelay", took, wait)
	}
	b.setLoginErr(nil)
	c.expectOK("USER alice")
	c.expectOK("PASS secret")
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.infos) != 2 || b.infos[0].LoginAttempt != 1 || b.infos[1].LoginAttempt != 2 {
		t.Fatalf("attempts: %+v", b.infos)
	}
}

func TestLoginNilSession(t *testing.T) {
	e := startServer(t, newMemBackend(), func(s *Server) { s.Backend = nilBackend{} })
	c := e.dial()
	c.expectOK("USER alice")
	c.expectErr("PASS secret", "[SYS/TEMP]")
}

type nilBackend struct{}

func (nilBackend) Login(_ context.Context, _ *ConnInfo, _ *Credentials) (Session, error) {
	return nil, nil
}

func TestInvalidListing(t *testing.T) {
	for _, listing := range [][]Message{
		{{Size: 1, UIDL: "has space"}},
		{{Size: 1, UIDL: ""}},
		{{Size: 1, UIDL: strings.Repeat("u", 71)}},
		{{Size: 1, UIDL: "crlf\r\n"}},
		{{Size: -1, UIDL: "ok"}},
	} {
		b := newMemBackend("x")
		b.setup = func(s *memSession) { s.listing = listing }
		e := startServer(t, b, nil)
		c := e.dial()
		c.expectOK("USER alice")
		c.expectErr("PASS secret", "[SYS/PERM]")
		c.expectEOF()
		if _, closes := b.session(t, 0).waitClosed(t); closes != 1 {
			t.Fatalf("Close called %d times", closes)
		}
	}
}

func TestBadCommandLimitBeforeLogin(t *testing.T) {
	e := startServer(t, newMemBackend(), nil)
	c := e.dial()
	c.expectErr("XYZZY", "unknown command")
	c.expectErr("STAT", "not valid before login")
	c.expectErr("FOO", "unknown command")
	if got := c.line(); got != "-ERR too many bad commands" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
}

func TestWrongPasswordLimit(t *testing.T) {
	b := newMemBackend()
	e := startServer(t, b, nil)
	c := e.dial()
	for range 3 {
		c.expectOK("USER alice")
		c.expectErr("PASS wrong", "[AUTH]")
	}
	if got := c.line(); got != "-ERR too many bad commands" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
	if b.loginCount() != 3 {
		t.Fatalf("%d logins", b.loginCount())
	}
}

func TestBadCommandLimitAfterLogin(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) { s.MaxBadCommandsAuth = 10; s.MaxBadCommands = 5 })
	c := e.dial()
	// Bad commands before login do not count after it.
	c.expectErr("FOO", "unknown")
	c.expectErr("FOO", "unknown")
	c.login()
	c.expectErr("FOO", "unknown")
	c.expectErr("RETR 9", "no such message")
	c.expectOK("NOOP")
	c.expectErr("LIST x", "invalid message number")
	c.expectErr("USER x", "not valid")
	c.expectErr("DELE", "missing message number")
	if got := c.line(); got != "-ERR too many bad commands" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
	updates, closes := b.session(t, 0).waitClosed(t)
	if len(updates) != 0 || closes != 1 {
		t.Fatalf("updates %v, closes %d", updates, closes)
	}
}

func TestStatListUIDL(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	if got := c.cmd("STAT"); got != "+OK 3 146" {
		t.Fatalf("STAT: %q", got)
	}
	if got := c.multi("LIST"); !slices.Equal(got, []string{"1 71", "2 41", "3 34"}) {
		t.Fatalf("LIST: %q", got)
	}
	if got := c.cmd("LIST 2"); got != "+OK 2 41" {
		t.Fatalf("LIST 2: %q", got)
	}
	if got := c.multi("UIDL"); !slices.Equal(got, []string{"1 uid0001", "2 uid0002", "3 uid0003"}) {
		t.Fatalf("UIDL: %q", got)
	}
	if got := c.cmd("UIDL 3"); got != "+OK 3 uid0003" {
		t.Fatalf("UIDL 3: %q", got)
	}
	if got := c.cmd("UIDL 003"); got != "+OK 3 uid0003" {
		t.Fatalf("UIDL 003: %q", got)
	}
	if got := c.cmd("DELE 2"); got != "+OK message 2 deleted" {
		t.Fatalf("DELE 2: %q", got)
	}
	if got := c.cmd("STAT"); got != "+OK 2 105" {
		t.Fatalf("STAT after DELE: %q", got)
	}
	if got := c.multi("LIST"); !slices.Equal(got, []string{"1 71", "3 34"}) {
		t.Fatalf("LIST after DELE: %q", got)
	}
	if got := c.multi("UIDL"); !slices.Equal(got, []string{"1 uid0001", "3 uid0003"}) {
		t.Fatalf("UIDL after DELE: %q", got)
	}
	c.expectErr("LIST 2", "message 2 already deleted")
	c.expectErr("UIDL 2", "message 2 already deleted")
	c.expectErr("LIST 4", "no such message")
	c.expectErr("UIDL 4", "no such message")
	c.expectOK("NOOP")
}

func TestEmptyMaildrop(t *testing.T) {
	e := startServer(t, newMemBackend(), nil)
	c := e.dial()
	c.login()
	if got := c.cmd("STAT"); got != "+OK 0 0" {
		t.Fatalf("STAT: %q", got)
	}
	if got := c.multi("LIST"); got != nil {
		t.Fatalf("LIST: %q", got)
	}
	if got := c.multi("UIDL"); got != nil {
		t.Fatalf("UIDL: %q", got)
	}
	c.expectErr("LIST 1", "no such message")
	c.expectErr("RETR 1", "no such message")
	c.expectOK("RSET")
	c.expectOK("QUIT")
}

func TestBadArguments(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) { s.MaxBadCommands = -1 })
	c := e.dial()
	c.login()
	bad := map[string]string{
		"0":                       "invalid message number",
		"-1":                      "invalid message number",
		"+1":                      "invalid message number",
		"1x":                      "invalid message number",
		"x":                       "invalid message number",
		"0x1":                     "invalid message number",
		"1.0":                     "invalid message number",
		"\uff11":                  "invalid message number",
		"4":                       "no such message",
		"99999999":                "no such message",
		"99999999999999999999999": "invalid message number",
		"9223372036854775807":     "no such message",
		"18446744073709551617":    "invalid message number",
		"1 2":                     "too many arguments",
		"1\x00":                   "invalid message number",
	}
	for _, cmd := range []string{"RETR", "DELE", "LIST", "UIDL", "TOP"} {
		for arg, want := range bad {
			line := cmd + " " + arg
			if cmd == "TOP" {
				line += " 1"
				if want == "too many arguments" {
					line = "TOP 1 2 3"
				}
			}
			c.expectErr(line, want)
			c.expectOK("NOOP")
		}
	}
	for _, cmd := range []string{"RETR", "DELE"} {
		c.expectErr(cmd, "missing message number")
		c.expectErr(cmd+" ", "missing message number")
	}
	c.expectErr("TOP", "usage")
	c.expectErr("TOP 1", "usage")
	c.expectErr("TOP 1 -1", "invalid line count")
	c.expectErr("TOP 1 x", "invalid line count")
	c.expectErr("TOP 1 +1", "invalid line count")
	c.expectErr("TOP 0 1", "invalid message number")
	// Nothing was marked or sent on the way.
	if got := c.cmd("STAT"); got != "+OK 3 146" {
		t.Fatalf("STAT: %q", got)
	}
	s := b.session(t, 0)
	if r, tops := s.retrievedCalls(), s.topCalls(); len(r) != 0 || len(tops) != 0 {
		t.Fatalf("backend called: retrieved %v tops %v", r, tops)
	}
	// Runs of spaces between arguments are tolerated.
	if got := c.cmd("LIST  2"); got != "+OK 2 41" {
		t.Fatalf("LIST  2: %q", got)
	}
}

func TestDeleRset(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	c.expectOK("DELE 1")
	c.expectErr("DELE 1", "message 1 already deleted")
	c.expectErr("RETR 1", "message 1 already deleted")
	c.expectErr("TOP 1 0", "message 1 already deleted")
	if got := c.cmd("RSET"); got != "+OK maildrop has 3 messages (146 octets)" {
		t.Fatalf("RSET: %q", got)
	}
	c.expectOK("RETR 1")
	c.body()
	c.expectOK("DELE 3")
	c.expectOK("DELE 1")
	c.expectOK("QUIT")
	c.expectEOF()
	updates, closes := b.session(t, 0).waitClosed(t)
	if len(updates) != 1 || !slices.Equal(updates[0], []int{1, 3}) || closes != 1 {
		t.Fatalf("updates %v, closes %d; want [[1 3]], 1", updates, closes)
	}
}

func TestQuitWithoutDeletions(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	c.expectOK("QUIT")
	c.expectEOF()
	updates, closes := b.session(t, 0).waitClosed(t)
	if len(updates) != 1 || updates[0] == nil || len(updates[0]) != 0 || closes != 1 {
		t.Fatalf("updates %#v, closes %d; want one empty update", updates, closes)
	}
}

func TestDeleThenDisconnect(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	c.expectOK("DELE 1")
	c.expectOK("DELE 2")
	c.nc.Close()
	updates, closes := b.session(t, 0).waitClosed(t)
	if len(updates) != 0 || closes != 1 {
		t.Fatalf("updates %v, closes %d; want no update, one close", updates, closes)
	}
}

func TestQuitInAuthorization(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	c.expectOK("QUIT")
	c.expectEOF()
	c = e.dial()
	c.expectOK("USER alice")
	c.expectOK("QUIT")
	c.expectEOF()
	if b.loginCount() != 0 {
		t.Fatal("QUIT in AUTHORIZATION called Login")
	}
}

func TestUpdateFailure(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{errors.New("imap: connection reset"), "-ERR [SYS/TEMP] temporary server failure"},
		{fmt.Errorf("expunge: %w", &Error{Code: CodeSysTemp, Message: "upstream failed, nothing deleted"}), "-ERR [SYS/TEMP] upstream failed, nothing deleted"},
	} {
		b := newMemBackend(testMessages...)
		b.setup = func(s *memSession) { s.updateErr = tt.err }
		e := startServer(t, b, nil)
		c := e.dial()
		c.login()
		c.expectOK("DELE 2")
		if got := c.cmd("QUIT"); got != tt.want {
			t.Fatalf("QUIT: %q, want %q", got, tt.want)
		}
		c.expectEOF()
		updates, closes := b.session(t, 0).waitClosed(t)
		if len(updates) != 1 || !slices.Equal(updates[0], []int{2}) || closes != 1 {
			t.Fatalf("updates %v, closes %d", updates, closes)
		}
	}
}

func TestRetrBytes(t *testing.T) {
	for _, chunk := range []int{0, 1, 2, 7} {
		t.Run("chunk"+strconv.Itoa(chunk), func(t *testing.T) {
			b := newMemBackend(testMessages...)
			b.setup = func(s *memSession) { s.chunk = chunk }
			e := startServer(t, b, nil)
			c := e.dial()
			c.login()
			// The exact wire form of message 1.
			c.send("RETR 1")
			want := "+OK 71 octets\r\nSubject: one\r\nFrom: a@example.com\r\n\r\nline 1\r\n..\r\n...two dots\r\nlast line\r\n.\r\n"
			got := make([]byte, len(want))
			if _, err := readFull(c, got); err != nil {
				t.Fatal(err)
			}
			if string(got) != want {
				t.Fatalf("RETR 1 wire:\n got %q\nwant %q", got, want)
			}
			for i, msg := range testMessages {
				n := i + 1
				status := c.cmd("RETR " + strconv.Itoa(n))
				if want := fmt.Sprintf("+OK %d octets", len(msg)); status != want {
					t.Fatalf("RETR %d: %q, want %q", n, status, want)
				}
				if body := c.body(); string(body) != string(normalize([]byte(msg))) {
					t.Fatalf("RETR %d body %q", n, body)
				}
			}
			c.expectOK("NOOP")
			s := b.session(t, 0)
			if got := s.retrievedCalls(); !slices.Equal(got, []int{1, 1, 2, 3}) {
				t.Fatalf("Retrieved calls %v", got)
			}
		})
	}
}

func readFull(c *client, p []byte) (int, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	n := 0
	for n < len(p) {
		m, err := c.r.Read(p[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestEmptyMessage(t *testing.T) {
	e := startServer(t, newMemBackend(""), nil)
	c := e.dial()
	c.login()
	if got := c.cmd("RETR 1"); got != "+OK 0 octets" {
		t.Fatalf("RETR: %q", got)
	}
	if got := c.line(); got != "." {
		t.Fatalf("empty message body: %q", got)
	}
	c.expectOK("NOOP")
}

func TestTop(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	msg := testMessages[0]
	header := "Subject: one\r\nFrom: a@example.com\r\n\r\n"
	for _, tt := range []struct {
		k     string
		lines int
		want  string
	}{
		{"0", 0, header},
		{"1", 1, header + "line 1\r\n"},
		{"2", 2, header + "line 1\r\n.\r\n"},
		{"99999999", 99999999, msg},
		{"999999999999999999999999999999", math.MaxInt, msg},
	} {
		if got := c.cmd("TOP 1 " + tt.k); !strings.HasPrefix(got, "+OK") {
			t.Fatalf("TOP 1 %s: %q", tt.k, got)
		}
		if body := string(c.body()); body != tt.want {
			t.Fatalf("TOP 1 %s: %q, want %q", tt.k, body, tt.want)
		}
		tops := b.session(t, 0).topCalls()
		if last := tops[len(tops)-1]; last != [2]int{1, tt.lines} {
			t.Fatalf("Top called with %v, want [1 %d]", last, tt.lines)
		}
	}
	c.expectOK("TOP 3 0")
	if body := string(c.body()); body != "Subject: three\r\n\r\n" {
		t.Fatalf("TOP 3 0: %q", body)
	}
	if got := b.session(t, 0).retrievedCalls(); len(got) != 0 {
		t.Fatalf("TOP called Retrieved: %v", got)
	}
}

func TestRetrErrors(t *testing.T) {
	b := newMemBackend(testMessages...)
	b.setup = func(s *memSession) {
		s.retrErr = map[int]error{
			1: fmt.Errorf("uid 7: %w", ErrNoSuchMessage),
			2: errors.New("fetch failed"),
		}
		s.failAfter = map[int]int{3: 0}
	}
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	c.expectErr("RETR 1", "message no longer exists")
	c.expectOK("NOOP")
	c.expectErr("TOP 1 0", "message no longer exists")
	c.expectErr("RETR 2", "[SYS/TEMP] temporary server failure")
	c.expectOK("NOOP")
	// The reader fails before its first byte: still a plain -ERR.
	c.expectErr("RETR 3", "[SYS/TEMP]")
	c.expectErr("TOP 3 1", "[SYS/TEMP]")
	c.expectOK("STAT")
	if got := b.session(t, 0).retrievedCalls(); len(got) != 0 {
		t.Fatalf("Retrieved called after failures: %v", got)
	}
}

func TestRetrErrorClose(t *testing.T) {
	b := newMemBackend(testMessages...)
	b.setup = func(s *memSession) {
		s.retrErr = map[int]error{1: &Error{Code: CodeSysTemp, Message: "upstream gone", Close: true}}
	}
	e := startServer(t, b, nil)
	c := e.dial()
	c.login()
	c.expectOK("DELE 2")
	if got := c.cmd("RETR 1"); got != "-ERR [SYS/TEMP] upstream gone" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
	if updates, _ := b.session(t, 0).waitClosed(t); len(updates) != 0 {
		t.Fatalf("Update called: %v", updates)
	}
}

func TestRetrMidStreamFailure(t *testing.T) {
	big := "Subject: big\r\n\r\n" + strings.Repeat("0123456789abcdef\r\n", 5000)
	for _, failAt := range []int{10, 60000} {
		t.Run(strconv.Itoa(failAt), func(t *testing.T) {
			b := newMemBackend(big)
			b.setup = func(s *memSession) { s.failAfter = map[int]int{1: failAt} }
			e := startServer(t, b, nil)
			c := e.dial()
			c.login()
			c.expectOK("DELE 1")
			c.expectOK("RSET")
			if got := c.cmd("RETR 1"); got != fmt.Sprintf("+OK %d octets", len(big)) {
				t.Fatalf("RETR: %q", got)
			}
			rest := string(c.expectEOF())
			if !strings.HasPrefix(big, rest[:min(len(rest), failAt)]) || len(rest) < min(failAt, 10) {
				t.Fatalf("client got %d bytes %q, want the first %d of the message", len(rest), abbrev(rest), failAt)
			}
			if strings.HasSuffix(rest, "\r\n.\r\n") || strings.Contains(rest, "\r\n.\r\n") {
				t.Fatal("a truncated message was terminated with a dot")
			}
			s := b.session(t, 0)
			updates, closes := s.waitClosed(t)
			if len(updates) != 0 || closes != 1 || len(s.retrievedCalls()) != 0 {
				t.Fatalf("updates %v closes %d retrieved %v", updates, closes, s.retrievedCalls())
			}
		})
	}
}

// TestPipelining sends 50 commands in one write and compares the answer
// with the same commands sent one at a time.
func TestPipelining(t *testing.T) {
	cmds := []string{
		"CAPA", "USER alice", "PASS secret", "STAT", "LIST", "UIDL", "LIST 1", "UIDL 2",
		"RETR 1", "TOP 1 0", "TOP 2 1", "RETR 2", "RETR 3", "DELE 2", "STAT", "LIST",
		"LIST 2", "UIDL", "RSET", "NOOP", "CAPA", "XYZZY", "RETR 4", "DELE 1", "DELE 3",
		"RETR 1", "STAT", "RSET",
	}
	for len(cmds) < 49 {
		cmds = append(cmds, "STAT", "LIST 3", "UIDL", "RETR 3", "TOP 1 99999999", "NOOP")
	}
	cmds = append(cmds[:49], "QUIT")
	multi := func(cmd string) bool {
		f := strings.Fields(strings.ToUpper(cmd))
		switch f[0] {
		case "RETR", "TOP", "CAPA":
			return true
		case "LIST", "UIDL":
			return len(f) == 1
		}
		return false
	}

	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)

	// One at a time.
	c := e.dial()
	var want strings.Builder
	for _, cmd := range cmds {
		status := c.cmd(cmd)
		want.WriteString(status + "\r\n")
		if strings.HasPrefix(status, "+OK") && multi(cmd) {
			for {
				l := c.line()
				want.WriteString(l + "\r\n")
				if l == "." {
					break
				}
			}
		}
	}
	c.expectEOF()

	// All in one write.
	c = e.dial()
	c.sendRaw(strings.Join(cmds, "\r\n") + "\r\n")
	got := string(c.expectEOF())
	if got != want.String() {
		t.Fatalf("pipelined answers differ:\n got %q\nwant %q", got, want.String())
	}
	for i := range 2 {
		updates, _ := b.session(t, i).waitClosed(t)
		if len(updates) != 1 || len(updates[0]) != 0 {
			t.Fatalf("session %d updates %v", i, updates)
		}
	}
}

func TestLongLines(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	// Exactly MaxLineLength octets, CRLF included, is accepted.
	name := strings.Repeat("n", DefaultMaxLineLength-len("USER \r\n"))
	c.expectOK("USER " + name)
	c.expectErr("USER "+name+"x", "line too long")
	c.expectOK("USER alice")
	c.expectOK("PASS secret")
	// Far longer than any buffer; counts as one bad command only.
	for range 3 {
		c.expectErr("NOOP "+strings.Repeat("x", 100000), "line too long")
		c.expectOK("NOOP")
	}
	// A bare LF ends a line too.
	c.sendRaw("STAT\n")
	if got := c.line(); got != "+OK 3 146" {
		t.Fatalf("STAT: %q", got)
	}
}

func TestMaxLineLength(t *testing.T) {
	e := startServer(t, newMemBackend(), func(s *Server) { s.MaxLineLength = 300 })
	c := e.dial()
	c.expectErr("USER "+strings.Repeat("n", 300), "line too long")
	c.expectOK("USER " + strings.Repeat("n", 250))
}

// A connection's line reader and writer go back to the Server's pools when
// it ends, so that connections one after the other do not each allocate
// their own. The client sends its commands before the greeting comes, so
// no wait for a command gives the buffers back before the end (which a
// pipelining client's commands, already there, never make either).
func TestLineBuffersReused(t *testing.T) {
	// One P: sync.Pool keeps what is put back for the P that put it.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	var made atomic.Int32
	e := startServer(t, newMemBackend(testMessages...), func(s *Server) { countLineBufs(s, &made) })
	const n = 40
	for range n {
		nc := dialSending(t, e, "USER "+testUser+"\r\nPASS "+testPass+"\r\nSTAT\r\nQUIT\r\n")
		all, err := io.ReadAll(nc)
		nc.Close()
		if err != nil || strings.Count(string(all), "+OK") != 5 {
			t.Fatalf("session: %q, %v", all, err)
		}
		// The connection gives its buffers back before it is untracked.
		deadline := time.Now().Add(5 * time.Second)
		for {
			e.srv.mu.Lock()
			left := len(e.srv.conns)
			e.srv.mu.Unlock()
			if left == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d connections still tracked", left)
			}
			time.Sleep(time.Millisecond)
		}
	}
	// Without reuse: a reader and a writer per connection, 2n. With it, a
	// few, and under the race detector, whose sync.Pool drops a quarter of
	// what is put back, about half of n.
	if got := made.Load(); got >= n {
		t.Fatalf("%d line buffers made for %d connections one after the other", got, n)
	}
}

// A logged-in connection waiting for its next command gives its line
// reader and writer back to the Server's pools, so that the next
// connection takes them: connections that stay open and idle share a few.
func TestIdleGivesLineBuffersBack(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1)) // see TestLineBuffersReused
	var made atomic.Int32
	e := startServer(t, newMemBackend(testMessages...), func(s *Server) { countLineBufs(s, &made) })
	const n = 40
	for range n {
		// Both commands are there before the first wait: that wait keeps
		// the buffers, the one after PASS gives them back.
		nc := dialSending(t, e, "USER "+testUser+"\r\nPASS "+testPass+"\r\n")
		r := bufio.NewReader(nc)
		for range 3 { // greeting, USER, PASS
			if l, err := r.ReadString('\n'); err != nil || !strings.HasPrefix(l, "+OK") {
				t.Fatalf("%q, %v", l, err)
			}
		}
	}
	if got := made.Load(); got >= n {
		t.Fatalf("%d line buffers made for %d idle connections", got, n)
	}
}

// countLineBufs has the line buffer pools of s count in made the buffers
// they had to make.
func countLineBufs(s *Server, made *atomic.Int32) {
	s.lineReaders.New = func() any { made.Add(1); return bufio.NewReaderSize(nil, lineBufSize) }
	s.lineWriters.New = func() any { made.Add(1); return bufio.NewWriterSize(nil, lineBufSize) }
}

// dialSending connects to e and sends cmds at once, before the greeting
// comes. The connection is closed at the end of the test.
func dialSending(t *testing.T, e *testEnv, cmds string) net.Conn {
	t.Helper()
	nc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	if _, err := io.WriteString(nc, cmds); err != nil {
		t.Fatal(err)
	}
	return nc
}
