package pop3client_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3mem"
)

// testMessages: a plain one, one with lines that start with dots, one
// without a final line end (the server adds CRLF).
var testMessages = []string{
	"Subject: one\r\n\r\nhello\r\n",
	"Subject: dots\r\nX: y\r\n\r\n.leading dot\r\n..two\r\n.\r\nend\r\n",
	"Subject: three\r\n\r\nno final line end",
}

// server is an in-process pop3.Server over pop3mem with the user alice
// (password secret) and testMessages.
type server struct {
	addr string
	pool *x509.CertPool // trusts the server's certificate, with TLS
	user *pop3mem.User
}

func startServer(t testing.TB, lc pop3.ListenerConfig, msgs ...string) *server {
	t.Helper()
	mem := pop3mem.New()
	s := &server{user: mem.AddUser("alice", "secret")}
	for _, m := range msgs {
		s.user.Append([]byte(m))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	srv := &pop3.Server{Backend: mem}
	if lc.TLS != pop3.TLSNone {
		// httptest's certificate is for 127.0.0.1.
		hs := httptest.NewUnstartedServer(nil)
		hs.StartTLS()
		srv.TLSConfig = &tls.Config{Certificates: hs.TLS.Certificates}
		s.pool = x509.NewCertPool()
		s.pool.AddCert(hs.Certificate())
		hs.Close()
	}
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(l, lc) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-done; !errors.Is(err, pop3.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// scripted is a fake server that sends script at once (as a server
// answering pipelined commands would) and records what the client sends.
type scripted struct {
	addr string
	sent chan string // what the client sent, once it closed
}

func startScripted(t *testing.T, script string) *scripted {
	t.Helper()
	return serveScript(t, script, false)
}

// startScriptedEOF is startScripted whose server ends the connection after
// the script (but reads on).
func startScriptedEOF(t *testing.T, script string) *scripted {
	t.Helper()
	return serveScript(t, script, true)
}

func serveScript(t *testing.T, script string, eof bool) *scripted {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := &scripted{addr: l.Addr().String(), sent: make(chan string, 1)}
	go func() {
		conn, err := l.Accept()
		if err != nil {
			s.sent <- err.Error()
			return
		}
		defer conn.Close()
		go func() {
			io.WriteString(conn, script)
			if eof {
				conn.(*net.TCPConn).CloseWrite()
			}
		}()
		got, _ := io.ReadAll(bufio.NewReader(conn))
		s.sent <- string(got)
	}()
	return s
}

// commands returns the command lines the client sent.
func (s *scripted) commands() []string {
	return strings.Split(strings.TrimSuffix(<-s.sent, "\r\n"), "\r\n")
}
