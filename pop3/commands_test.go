package pop3

import (
	"bytes"
	"crypto/tls"
	"io"
	"math"
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestParseNumber(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"1", 1, true},
		{"0", 0, true}, // callers refuse 0 as a message number
		{"42", 42, true},
		{"007", 7, true},
		{"9223372036854775807", math.MaxInt, true},
		{"9223372036854775808", 0, false},
		{"99999999999999999999999", 0, false},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1x", 0, false},
		{"x1", 0, false},
		{" 1", 0, false},
		{"1 ", 0, false},
		{"0x10", 0, false},
		{"1.0", 0, false},
		{"1e3", 0, false},
		{"\uff11", 0, false}, // a full-width digit one
	}
	for _, tt := range tests {
		got, ok := parseNumber(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseNumber(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestParseLineCount(t *testing.T) {
	tests := []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 0, true},
		{"10", 10, true},
		{"99999999", 99999999, true},
		{"9223372036854775807", math.MaxInt, true},
		{"9223372036854775808", math.MaxInt, true},
		{"999999999999999999999999999999", math.MaxInt, true},
		{"", 0, false},
		{"-1", 0, false},
		{"+1", 0, false},
		{"1x", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseLineCount(tt.in)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseLineCount(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}

func TestCommandName(t *testing.T) {
	for in, want := range map[string]string{
		"STAT": "STAT", "stat": "STAT", "StAt": "STAT", "top": "TOP", "uidl": "UIDL",
		"STATS": "", "STA": "", "": "", "ST\x00T": "", "S\u0130AT": "",
	} {
		if got := commandName([]byte(in)); got != want {
			t.Errorf("commandName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestSplitCommand(t *testing.T) {
	kw, rest := splitCommand([]byte("PASS  two  spaces "))
	if string(kw) != "PASS" || rest != " two  spaces " {
		t.Fatalf("got %q %q", kw, rest)
	}
	kw, rest = splitCommand([]byte("NOOP"))
	if string(kw) != "NOOP" || rest != "" {
		t.Fatalf("got %q %q", kw, rest)
	}
}

// pipeConn is an in-memory net.Conn: it reads a fixed input, then EOF, and
// collects what is written. It lets a fuzz target drive a whole session
// synchronously, without sockets or goroutines.
type pipeConn struct {
	in  io.Reader
	out bytes.Buffer
}

func (p *pipeConn) Read(b []byte) (int, error)       { return p.in.Read(b) }
func (p *pipeConn) Write(b []byte) (int, error)      { return p.out.Write(b) }
func (p *pipeConn) Close() error                     { return nil }
func (p *pipeConn) LocalAddr() net.Addr              { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 110} }
func (p *pipeConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 4242} }
func (p *pipeConn) SetDeadline(time.Time) error      { return nil }
func (p *pipeConn) SetReadDeadline(time.Time) error  { return nil }
func (p *pipeConn) SetWriteDeadline(time.Time) error { return nil }

// runSession serves one in-memory connection to the end and returns its
// output and the logs.
func runSession(t testing.TB, b *memBackend, input []byte, configure func(*Server)) (string, *observer.ObservedLogs) {
	t.Helper()
	return runSessionLC(t, b, input, ListenerConfig{}, configure)
}

// runSessionLC is runSession with a listener configuration.
func runSessionLC(t testing.TB, b *memBackend, input []byte, lc ListenerConfig, configure func(*Server)) (string, *observer.ObservedLogs) {
	t.Helper()
	core, logs := observer.New(zapcore.DebugLevel)
	srv := &Server{Backend: b, Logger: zap.New(core), MaxBadCommands: -1, MaxBadCommandsAuth: -1}
	if configure != nil {
		configure(srv)
	}
	pc := &pipeConn{in: bytes.NewReader(input)}
	c := srv.trackConn(pc, lc)
	c.serve()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	return pc.out.String(), logs
}

func TestRunSessionPipe(t *testing.T) {
	b := newMemBackend(testMessages...)
	out, _ := runSession(t, b, []byte("USER alice\r\nPASS secret\r\nSTAT\nQUIT\r\n"), nil)
	want := "+OK POP3 server ready\r\n+OK send PASS\r\n+OK maildrop has 3 messages (146 octets)\r\n+OK 3 146\r\n+OK bye\r\n"
	if out != want {
		t.Fatalf("got  %q\nwant %q", out, want)
	}
}

// stlsStarted is the answer after which the output of a session is TLS
// bytes (in FuzzCommand, the failed handshake's alert), not POP3 lines.
const stlsStarted = "+OK Begin TLS negotiation\r\n"

// FuzzCommand feeds arbitrary client input to a session (logged in or not)
// on a STARTTLS listener offering every SASL mechanism, and checks that it
// never panics, that every answer is framed, and that the backend sees a
// sane sequence of calls. After a successful STLS the rest of the input is
// taken for a TLS handshake, which fails: nothing pipelined behind STLS
// may ever run.
func FuzzCommand(f *testing.F) {
	cert, _ := testCert(f)
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}}
	for _, s := range []string{
		"USER alice\r\nPASS secret\r\nSTAT\r\nLIST\r\nUIDL\r\nRETR 1\r\nTOP 2 0\r\nDELE 1\r\nQUIT\r\n",
		"USER alice\r\nPASS secret\r\nDELE 1\r\nRSET\r\nLIST 1\r\nUIDL 3\r\nRETR 3\r\n",
		"CAPA\r\nUSER alice\r\nPASS wrong\r\nPASS secret\r\n",
		"USER alice\r\nPASS secret\r\nRETR 0\r\nRETR -1\r\nTOP 1 99999999999999999999\r\nLIST 1 2\r\n",
		"user alice\npass secret\nstat\nquit\n",
		"APOP alice 0123456789abcdef\r\nAUTH PLAIN\r\nSTLS\r\nNOOP\r\n",
		"USER alice\r\nPASS secret\r\n" + strings.Repeat("x", 3000) + "\r\nNOOP\r\n",
		"\r\n\r\n \r\n",
		"AUTH\r\nAUTH PLAIN AGFsaWNlAHNlY3JldA==\r\nSTAT\r\nQUIT\r\n",
		"AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\nRETR 1\r\n",
		"AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\nLIST\r\n",
		"AUTH OAUTHBEARER bixhPWFsaWNlLAFhdXRoPUJlYXJlciB4AQE=\r\n\r\nAUTH OAUTHBEARER eSwsAQE=\r\n\r\n",
		"AUTH XOAUTH2 dXNlcj1hbGljZQFhdXRoPUJlYXJlciB5YTI5LnRlc3QtdG9rZW4BAQ==\r\nUIDL\r\n",
		"AUTH PLAIN =\r\nAUTH PLAIN\r\n*\r\nAUTH PLAIN !!\r\nAUTH X\r\n",
		"STLS\r\nUSER alice\r\nPASS secret\r\nDELE 1\r\nQUIT\r\n",
		"CAPA\r\nSTLS x\r\nUSER alice\r\nPASS secret\r\nSTLS\r\nQUIT\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		b := newMemBackend(testMessages...)
		out, logs := runSessionLC(t, b, input, ListenerConfig{TLS: TLSStartTLS}, func(s *Server) {
			s.TLSConfig = tlsConfig
			s.Mechanisms = SupportedMechanisms()
		})
		if e := logs.FilterLevelExact(zapcore.ErrorLevel); e.Len() > 0 {
			t.Fatalf("error logged: %v", e.All()[0].Message)
		}
		if i := strings.Index(out, stlsStarted); i >= 0 {
			out = out[:i+len(stlsStarted)]
		}
		stls := false
		for _, entry := range logs.FilterMessage("command").All() {
			if stls {
				t.Fatalf("command %v ran after STLS", entry.ContextMap()["cmd"])
			}
			m := entry.ContextMap()
			stls = m["cmd"] == "STLS" && m["ok"] == true
		}
		if !strings.HasPrefix(out, "+OK ") || !strings.HasSuffix(out, "\r\n") {
			t.Fatalf("output not framed: %q", abbrev(out))
		}
		for i := 0; i < len(out); i++ {
			if out[i] == '\n' && out[i-1] != '\r' {
				t.Fatalf("bare LF in output at %d: %q", i, abbrev(out))
			}
		}
		b.mu.Lock()
		sessions := b.sessions
		b.mu.Unlock()
		for _, s := range sessions {
			s.mu.Lock()
			if s.closes != 1 || len(s.updates) > 1 || s.messagesCalls != 1 {
				t.Fatalf("session calls: closes=%d updates=%d messages=%d", s.closes, len(s.updates), s.messagesCalls)
			}
			s.mu.Unlock()
		}
	})
}
