package pop3

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

const loginOK = "+OK maildrop has 3 messages (146 octets)"

// challenge reads a "+ " continuation and returns it decoded.
func (c *client) challenge() string {
	c.t.Helper()
	line := c.line()
	enc, ok := strings.CutPrefix(line, "+ ")
	if !ok {
		c.t.Fatalf("want a continuation, got %q", line)
	}
	dec, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		c.t.Fatalf("continuation %q: %v", line, err)
	}
	return string(dec)
}

func (b *memBackend) lastCred(t *testing.T) Credentials {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.creds) == 0 {
		t.Fatal("Login was never called")
	}
	return b.creds[len(b.creds)-1]
}

func oauthBearerIR(user, token string) string {
	return b64("n,a=" + user + ",\x01host=pop.example.com\x01port=110\x01auth=Bearer " + token + "\x01\x01")
}

func xoauth2IR(user, token string) string {
	return b64("user=" + user + "\x01auth=Bearer " + token + "\x01\x01")
}

func TestAuthPlain(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) { s.MaxBadCommandsAuth = -1 })
	want := Credentials{Mechanism: "PLAIN", Username: testUser, Password: testPass}

	// Initial response.
	c := e.dial()
	if got := c.cmd("AUTH PLAIN " + b64("\x00alice\x00secret")); got != loginOK {
		t.Fatalf("AUTH PLAIN with initial response: %q", got)
	}
	c.expectOK("STAT")
	if got := b.lastCred(t); got != want {
		t.Fatalf("credentials %+v", got)
	}

	// Continuation: an empty challenge, "+ " (RFC 5034).
	c = e.dial()
	if got := c.cmd("AUTH PLAIN"); got != "+ " {
		t.Fatalf("AUTH PLAIN: %q", got)
	}
	if got := c.cmd(b64("\x00alice\x00secret")); got != loginOK {
		t.Fatalf("PLAIN response: %q", got)
	}

	// An authorization identity, lower-case mechanism, no padding.
	c = e.dial()
	c.expectOK("auth plain " + strings.TrimRight(b64("admin\x00alice\x00secret"), "="))
	want.AuthzID = "admin"
	if got := b.lastCred(t); got != want {
		t.Fatalf("credentials %+v", got)
	}

	// "=" is an empty initial response: no continuation, and PLAIN
	// cannot make sense of it.
	c = e.dial()
	c.expectErr("AUTH PLAIN =", "invalid SASL response")
	c.expectErr("AUTH PLAIN "+b64("alice\x00secret"), "invalid SASL response")
	before := b.loginCount()
	if got := c.cmd("AUTH PLAIN " + b64("\x00alice\x00wrong")); got != "-ERR [AUTH] authentication failed" {
		t.Fatalf("wrong password: %q", got)
	}
	if b.loginCount() != before+1 {
		t.Fatal("Login not called once")
	}
	c.expectOK("AUTH PLAIN " + b64("\x00alice\x00secret"))
}

func TestAuthLogin(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	if got := c.cmd("AUTH LOGIN"); got != "+ "+b64("Username:") {
		t.Fatalf("AUTH LOGIN: %q", got)
	}
	if got := c.cmd(b64("alice")); got != "+ "+b64("Password:") {
		t.Fatalf("user name: %q", got)
	}
	if got := c.cmd(b64("secret")); got != loginOK {
		t.Fatalf("password: %q", got)
	}
	if got, want := b.lastCred(t), (Credentials{Mechanism: "LOGIN", Username: testUser, Password: testPass}); got != want {
		t.Fatalf("credentials %+v", got)
	}
}

func TestAuthLoginInitialResponse(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, nil)
	c := e.dial()
	c.send("AUTH LOGIN " + b64("alice"))
	if got := c.challenge(); got != "Password:" {
		t.Fatalf("challenge %q", got)
	}
	if got := c.cmd(b64("wrong")); got != "-ERR [AUTH] authentication failed" {
		t.Fatalf("wrong password: %q", got)
	}
	c.send("AUTH LOGIN =") // an empty user name
	if got := c.challenge(); got != "Password:" {
		t.Fatalf("challenge %q", got)
	}
	c.expectErr(b64("secret"), "[AUTH]")
	if got := b.lastCred(t); got.Username != "" || got.Mechanism != "LOGIN" {
		t.Fatalf("credentials %+v", got)
	}
}

func TestAuthOAuthBearer(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) {
		s.Mechanisms = []string{"OAUTHBEARER"}
		s.MaxBadCommandsAuth = -1
	})
	want := Credentials{Mechanism: "OAUTHBEARER", Username: testUser, Token: testToken}
	c := e.dial()
	if got := c.cmd("AUTH OAUTHBEARER " + oauthBearerIR("alice", testToken)); got != loginOK {
		t.Fatalf("AUTH OAUTHBEARER: %q", got)
	}
	if got := b.lastCred(t); got != want {
		t.Fatalf("credentials %+v", got)
	}

	c = e.dial()
	if got := c.cmd("AUTH OAUTHBEARER"); got != "+ " {
		t.Fatalf("AUTH OAUTHBEARER: %q", got)
	}
	if got := c.cmd(oauthBearerIR("alice", testToken)); got != loginOK {
		t.Fatalf("OAUTHBEARER response: %q", got)
	}

	// A refused token: the RFC 7628 error challenge, the client's %x01,
	// then -ERR. An empty answer or "*" does as well.
	c = e.dial()
	for _, answer := range []string{"AQ==", "", "*"} {
		c.send("AUTH OAUTHBEARER " + oauthBearerIR("alice", "expired"))
		var status struct{ Status, Schemes string }
		if err := json.Unmarshal([]byte(c.challenge()), &status); err != nil || status.Status != "invalid_token" || status.Schemes != "bearer" {
			t.Fatalf("error challenge %+v, %v", status, err)
		}
		if got := c.cmd(answer); got != "-ERR [AUTH] authentication failed" {
			t.Fatalf("after error challenge, %q: %q", answer, got)
		}
	}

	// A malformed message: go-sasl sends its invalid_request challenge;
	// any answer, even an empty one, ends in -ERR (and no panic).
	for _, answer := range []string{"", "AQ==", "AQE="} {
		c.send("AUTH OAUTHBEARER " + b64("y,,\x01auth=Bearer x\x01\x01"))
		if got := c.challenge(); !strings.Contains(got, "invalid_request") {
			t.Fatalf("challenge %q", got)
		}
		c.expectErr(answer, "invalid SASL response")
	}
	c.send("AUTH OAUTHBEARER " + b64("n,a=alice,\x01\x01")) // no token
	c.challenge()
	c.expectErr("", "invalid SASL response")
	c.expectOK("AUTH OAUTHBEARER " + oauthBearerIR("alice", testToken))
}

func TestAuthXOAuth2(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) {
		s.Mechanisms = []string{"XOAUTH2"}
		s.MaxBadCommandsAuth = -1
	})
	c := e.dial()
	if got := c.cmd("AUTH XOAUTH2 " + xoauth2IR("alice", testToken)); got != loginOK {
		t.Fatalf("AUTH XOAUTH2: %q", got)
	}
	if got, want := b.lastCred(t), (Credentials{Mechanism: "XOAUTH2", Username: testUser, Token: testToken}); got != want {
		t.Fatalf("credentials %+v", got)
	}
	c = e.dial()
	if got := c.cmd("AUTH XOAUTH2"); got != "+ " {
		t.Fatalf("AUTH XOAUTH2: %q", got)
	}
	c.expectOK(b64("user=alice\x01auth=bearer " + testToken + "\x01\x01"))

	// Failure: the base64 JSON error continuation, the client's empty
	// line, then -ERR [AUTH].
	c = e.dial()
	c.send("AUTH XOAUTH2 " + xoauth2IR("alice", "expired"))
	var status map[string]string
	if err := json.Unmarshal([]byte(c.challenge()), &status); err != nil || status["status"] != "401" || status["schemes"] != "bearer" {
		t.Fatalf("error challenge %v, %v", status, err)
	}
	if got := c.cmd(""); got != "-ERR [AUTH] authentication failed" {
		t.Fatalf("after the error challenge: %q", got)
	}

	// Malformed messages fail at once, without a challenge.
	for _, msg := range []string{
		"user=alice\x01\x01",
		"auth=Bearer " + testToken + "\x01\x01",
		"user=alice\x01auth=Basic YWxpY2U6c2VjcmV0\x01\x01",
		"user=alice\x01auth=Bearer \x01\x01",
		"user=alice\x01auth\x01\x01",
	} {
		c.expectErr("AUTH XOAUTH2 "+b64(msg), "invalid SASL response")
	}
	c.expectErr("AUTH XOAUTH2 =", "invalid SASL response")
	c.expectOK("AUTH XOAUTH2 " + xoauth2IR("alice", testToken))
}

func TestParseXOAuth2(t *testing.T) {
	user, token, err := parseXOAuth2([]byte("user=a@b.example\x01auth=BEARER t=k.1\x01extra=1\x01\x01"))
	if err != nil || user != "a@b.example" || token != "t=k.1" {
		t.Fatalf("got %q %q %v", user, token, err)
	}
	// Without the final 0x01s, leniently.
	if _, token, err := parseXOAuth2([]byte("auth=Bearer x\x01user=")); err != nil || token != "x" {
		t.Fatalf("got %q %v", token, err)
	}
}

func TestAuthCancelAndBadInput(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) { s.MaxBadCommandsAuth = -1 })
	c := e.dial()
	c.cmd("AUTH PLAIN")
	c.expectErr("*", "authentication aborted by client")
	c.cmd("AUTH LOGIN")
	c.cmd(b64("alice"))
	c.expectErr("*", "authentication aborted by client")
	c.expectErr("AUTH PLAIN !!!!", "invalid base64 data")
	c.expectErr("AUTH PLAIN AGFsaWNlAHNlY3JldA=", "invalid base64 data") // bad padding
	c.cmd("AUTH PLAIN")
	c.expectErr("not base64!", "invalid base64 data")
	c.expectErr("AUTH PLAIN a b", "usage: AUTH mechanism [initial-response]")
	c.expectErr("AUTH CRAM-MD5", "unsupported authentication mechanism")
	c.expectErr("AUTH XOAUTH2 "+xoauth2IR("alice", testToken), "unsupported authentication mechanism") // not configured
	if b.loginCount() != 0 {
		t.Fatal("Login was called")
	}
	// A USER before AUTH is forgotten.
	c.expectOK("USER alice")
	c.cmd("AUTH PLAIN")
	c.expectErr("*", "aborted")
	c.expectErr("PASS secret", "send USER first")
	c.login()

	// Bad input counts towards the bad-command limit; a cancel or an
	// unknown mechanism does not.
	e = startServer(t, b, nil)
	c = e.dial()
	for range 5 {
		c.cmd("AUTH PLAIN")
		c.expectErr("*", "aborted")
		c.expectErr("AUTH GSSAPI", "unsupported")
	}
	c.expectErr("AUTH PLAIN =", "invalid")
	c.expectErr("AUTH PLAIN ?", "invalid base64")
	c.expectErr("AUTH PLAIN "+b64("\x00alice\x00wrong"), "[AUTH]")
	if got := c.line(); got != "-ERR too many bad commands" {
		t.Fatalf("got %q", got)
	}
	c.expectEOF()
}

func TestAuthList(t *testing.T) {
	e := startServer(t, newMemBackend(testMessages...), nil)
	c := e.dial()
	c.send("AUTH")
	for _, want := range []string{"+OK", "PLAIN", "LOGIN", "."} {
		if got := c.line(); got != want {
			t.Fatalf("bare AUTH: got %q, want %q", got, want)
		}
	}
	c.login()
	c.expectErr("AUTH", "not valid after login")

	e = startServer(t, newMemBackend(testMessages...), func(s *Server) { s.Mechanisms = []string{"xoauth2", "PLAIN", "plain"} })
	c = e.dial()
	if got := c.multi("AUTH"); !slices.Equal(got, []string{"XOAUTH2", "PLAIN"}) {
		t.Fatalf("bare AUTH: %q", got)
	}
	if got := c.multi("CAPA"); !slices.Contains(got, "SASL XOAUTH2 PLAIN") {
		t.Fatalf("CAPA: %q", got)
	}
	c.expectErr("AUTH LOGIN", "unsupported authentication mechanism")

	// No SASL at all.
	e = startServer(t, newMemBackend(testMessages...), func(s *Server) { s.Mechanisms = []string{} })
	c = e.dial()
	if got := c.multi("AUTH"); got != nil {
		t.Fatalf("bare AUTH: %q", got)
	}
	if got := c.multi("CAPA"); slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "SASL") }) {
		t.Fatalf("CAPA: %q", got)
	}
	c.expectErr("AUTH PLAIN", "unsupported authentication mechanism")
	c.login()
}

// TestAuthLongLines: AUTH lines may carry big tokens, up to
// MaxAuthLineLength; other lines keep MaxLineLength.
func TestAuthLongLines(t *testing.T) {
	b := newMemBackend(testMessages...)
	token := strings.Repeat("t", 8000)
	b.tokens[testUser] = token
	e := startServer(t, b, func(s *Server) {
		s.Mechanisms = SupportedMechanisms()
		s.MaxBadCommandsAuth = -1
	})
	c := e.dial()
	ir := xoauth2IR("alice", token)
	if len(ir) < 10000 {
		t.Fatal("test token too short")
	}
	c.expectOK("AUTH XOAUTH2 " + ir)
	c.expectErr("AUTH XOAUTH2 "+ir, "line too long") // after login: MaxLineLength
	c.expectOK("NOOP")

	c = e.dial()
	c.cmd("AUTH OAUTHBEARER")
	c.expectOK(oauthBearerIR("alice", token))

	c = e.dial()
	c.expectErr("AUTH XOAUTH2 "+strings.Repeat("A", MaxAuthLineLength), "line too long")
	c.cmd("AUTH XOAUTH2")
	c.expectErr(strings.Repeat("A", MaxAuthLineLength), "line too long")
	c.expectErr("USER "+strings.Repeat("n", DefaultMaxLineLength), "line too long")
	c.expectErr("XYZZY "+strings.Repeat("n", 3*DefaultMaxLineLength), "line too long")
	c.login()
}

// TestAuthResponseCodes sends every backend error code through USER/PASS
// and each SASL mechanism.
func TestAuthResponseCodes(t *testing.T) {
	b := newMemBackend(testMessages...)
	e := startServer(t, b, func(s *Server) {
		s.Mechanisms = SupportedMechanisms()
		s.MaxBadCommandsAuth = -1
	})
	type result struct{ challenge, line string }
	methods := map[string]func(c *client) result{
		"USER": func(c *client) result {
			c.expectOK("USER alice")
			return result{line: c.cmd("PASS secret")}
		},
		"PLAIN": func(c *client) result {
			return result{line: c.cmd("AUTH PLAIN " + b64("\x00alice\x00secret"))}
		},
		"LOGIN": func(c *client) result {
			c.cmd("AUTH LOGIN " + b64("alice"))
			return result{line: c.cmd(b64("secret"))}
		},
		"OAUTHBEARER": func(c *client) result {
			c.send("AUTH OAUTHBEARER " + oauthBearerIR("alice", testToken))
			if line := c.line(); !strings.HasPrefix(line, "+ ") {
				return result{line: line}
			} else {
				return result{challenge: line, line: c.cmd("AQ==")}
			}
		},
		"XOAUTH2": func(c *client) result {
			c.send("AUTH XOAUTH2 " + xoauth2IR("alice", testToken))
			if line := c.line(); !strings.HasPrefix(line, "+ ") {
				return result{line: line}
			} else {
				return result{challenge: line, line: c.cmd("")}
			}
		},
	}
	for _, tt := range []struct {
		err  error
		want string
	}{
		{ErrAuthFailed, "-ERR [AUTH] authentication failed"},
		{&Error{Message: "no such user"}, "-ERR [AUTH] no such user"},
		{&Error{Code: CodeSysTemp, Message: "upstream down"}, "-ERR [SYS/TEMP] upstream down"},
		{&Error{Code: CodeSysPerm, Message: "account disabled"}, "-ERR [SYS/PERM] account disabled"},
		{fmt.Errorf("lock: %w", &Error{Code: CodeInUse, Message: "maildrop in use"}), "-ERR [IN-USE] maildrop in use"},
		{&Error{Code: CodeLoginDelay, Message: "wait 5 minutes"}, "-ERR [LOGIN-DELAY] wait 5 minutes"},
		{errors.New("dial tcp: refused"), "-ERR [SYS/TEMP] temporary server failure"},
	} {
		b.setLoginErr(tt.err)
		for _, name := range []string{"USER", "PLAIN", "LOGIN", "OAUTHBEARER", "XOAUTH2"} {
			c := e.dial()
			before := b.loginCount()
			got := methods[name](c)
			if got.line != tt.want {
				t.Errorf("%s with %v: %q, want %q", name, tt.err, got.line, tt.want)
			}
			bearer := name == "OAUTHBEARER" || name == "XOAUTH2"
			if wantChallenge := bearer && strings.Contains(tt.want, "[AUTH]"); (got.challenge != "") != wantChallenge {
				t.Errorf("%s with %v: error challenge %q", name, tt.err, got.challenge)
			}
			if b.loginCount() != before+1 {
				t.Errorf("%s: Login called %d times", name, b.loginCount()-before)
			}
			if cred := b.lastCred(t); cred.Mechanism != name || cred.Username != testUser {
				t.Errorf("%s: credentials %+v", name, cred)
			}
			c.expectOK("QUIT")
		}
	}
	// An error that asks to close does so through SASL too.
	b.setLoginErr(&Error{Code: CodeSysTemp, Message: "bye", Close: true})
	c := e.dial()
	if got := methods["XOAUTH2"](c); got.line != "-ERR [SYS/TEMP] bye" {
		t.Fatalf("got %+v", got)
	}
	c.expectEOF()
}

// TestSASLLogs checks that no secret of an AUTH exchange reaches the logs.
func TestSASLLogs(t *testing.T) {
	const secret = "hunter2-Secret"
	const token = "ya29.Token-Secret"
	b := newMemBackend(testMessages...)
	b.users[testUser] = secret
	b.tokens[testUser] = token
	core, logs := observer.New(zapcore.DebugLevel)
	e := startServer(t, b, func(s *Server) {
		s.Logger = zap.New(core)
		s.Mechanisms = SupportedMechanisms()
		s.MaxBadCommandsAuth = -1
	})
	c := e.dial()
	c.expectErr("AUTH PLAIN "+b64("\x00alice\x00"+secret+"x"), "[AUTH]")
	c.expectErr("AUTH PLAIN "+b64("\x00alice\x00"+secret+"\x00"), "invalid")
	c.cmd("AUTH LOGIN " + b64("alice"))
	c.expectErr(b64(secret+"x"), "[AUTH]")
	c.send("AUTH XOAUTH2 " + xoauth2IR("alice", token+"x"))
	c.challenge()
	c.expectErr("", "[AUTH]")
	c.send("AUTH OAUTHBEARER " + oauthBearerIR("alice", token+"x"))
	c.challenge()
	c.expectErr("AQ==", "[AUTH]")
	c.expectErr("AUTH XOAUTH2 "+b64("user=alice\x01auth=Basic "+token), "invalid")
	c.expectOK("AUTH PLAIN " + b64("\x00alice\x00"+secret))
	c.expectOK("QUIT")
	c.expectEOF()
	if err := e.srv.Close(); err != nil {
		t.Fatal(err)
	}
	for _, entry := range logs.All() {
		text := entry.Message + fmt.Sprint(entry.ContextMap())
		for _, s := range []string{secret, token, b64(secret), b64(secret + "x"), "Token-Secret"} {
			if strings.Contains(text, s) {
				t.Errorf("log entry leaks a secret: %s", text)
			}
		}
	}
}
