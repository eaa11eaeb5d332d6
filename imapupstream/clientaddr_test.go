package imapupstream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/imapupstream/internal/prelogin"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

// trustedNetworks makes the test Dovecot believe ID's x-originating-ip from
// loopback, where popbridge connects from.
var trustedNetworks = dovecot.WithConfig("login_trusted_networks = 127.0.0.0/8")

// clientCred is the env's user logging in for a POP3 client at client that
// connected to connected.
func (e *env) clientCred(t *testing.T, client, connected string) Credentials {
	t.Helper()
	cred := Credentials{Username: e.user, Password: e.srv.Password}
	var err error
	if cred.ClientAddr, err = net.ResolveTCPAddr("tcp", client); err != nil {
		t.Fatal(err)
	}
	if cred.ConnectedAddr, err = net.ResolveTCPAddr("tcp", connected); err != nil {
		t.Fatal(err)
	}
	return cred
}

// waitLog waits until Dovecot's log has a line with every one of parts.
func (e *env) waitLog(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(e.srv.Log(), "\n") {
			found := true
			for _, p := range parts {
				found = found && strings.Contains(line, p)
			}
			if found {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Dovecot log line with %q:\n%s", parts, e.srv.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLoginTellsClientAddress(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dovecot.WithTLS(), trustedNetworks)
	e.append(t, msg("id", "x"))
	cases := []struct {
		name string
		cfg  Config
	}{
		{"none", e.config()},
		{"implicit", Config{Address: e.srv.IMAPSAddr, TLS: TLSImplicit, CAFile: e.srv.CAFile}},
		{"starttls", Config{Address: e.srv.IMAPAddr, TLS: TLSStartTLS, CAFile: e.srv.CAFile}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			client := fmt.Sprintf("203.0.113.%d", 10+i)
			trace := &wire{}
			c, err := e.dialer(t, tc.cfg, trace).Login(context.Background(), e.clientCred(t, client+":40001", "192.0.2.1:110"))
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			defer c.Close()
			if mb, err := c.Select(context.Background()); err != nil || mb.NumMessages != 1 {
				t.Fatalf("Select: %v %+v", err, mb)
			}
			want := `ID ("x-originating-ip" "` + client + `" "x-originating-port" "40001" "x-connected-ip" "192.0.2.1" "x-connected-port" "110")`
			if !strings.Contains(trace.String(), want) {
				t.Fatalf("no %s on the wire:\n%s", want, trace.String())
			}
			if strings.Count(trace.String(), "CAPABILITY\r\n") > 1 {
				t.Fatalf("CAPABILITY asked more than once:\n%s", trace.String())
			}
			// Dovecot logged (and would penalise) the client, not us.
			e.waitLog(t, "Login: user=<"+e.user+">", "rip="+client, "lip=192.0.2.1")
		})
	}
}

func TestLoginWithoutIDCapability(t *testing.T) {
	t.Parallel()
	// A server that does not advertise ID is not sent one, and logins work.
	e := newEnv(t, dovecot.WithTLS(), dovecot.WithoutCapabilities("ID"), trustedNetworks)
	for _, cfg := range []Config{e.config(), {Address: e.srv.IMAPAddr, TLS: TLSStartTLS, CAFile: e.srv.CAFile}} {
		trace := &wire{}
		c, err := e.dialer(t, cfg, trace).Login(context.Background(), e.clientCred(t, "203.0.113.50:1", "192.0.2.1:110"))
		if err != nil {
			t.Fatalf("%s: Login: %v", cfg.TLS, err)
		}
		if _, err := c.Select(context.Background()); err != nil {
			t.Fatal(err)
		}
		c.Close()
		if strings.Contains(trace.String(), " ID ") {
			t.Fatalf("%s: ID sent to a server without it:\n%s", cfg.TLS, trace.String())
		}
	}
	e.waitLog(t, "Login: user=<"+e.user+">", "rip=127.0.0.1")
}

func TestLoginIDAnswers(t *testing.T) {
	// Whatever the server makes of ID, the login goes on; a greeting without
	// capabilities gets no ID (it would cost a CAPABILITY round trip).
	for _, tc := range []struct {
		name, greeting, answer string
		wantID                 bool
	}{
		{"ok", "* OK [CAPABILITY IMAP4rev1 ID AUTH=PLAIN] hi\r\n", "* ID (\"name\" \"fake\")\r\n%s OK done\r\n", true},
		{"literal", "* OK [CAPABILITY IMAP4rev1 ID] hi\r\n", "* ID (\"name\" {4}\r\nfake)\r\n%s OK done\r\n", true},
		{"nil", "* OK [CAPABILITY IMAP4rev1 id] hi\r\n", "* ID NIL\r\n%s OK done\r\n", true},
		{"bad", "* OK [CAPABILITY IMAP4rev1 ID] hi\r\n", "%s BAD what\r\n", true},
		{"no-caps", "* OK hi\r\n", "%s BAD not expected\r\n", false},
		{"no-id", "* OK [CAPABILITY IMAP4rev1] hi\r\n", "%s BAD not expected\r\n", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sawID := make(chan string, 1)
			addr := newFake(t, func(fc *fakeConn) {
				fc.send(tc.greeting)
				fc.serve(func(tag, cmd, line string) bool {
					if cmd != "ID" {
						return false
					}
					sawID <- line
					fc.send(fmt.Sprintf(tc.answer, tag))
					return true
				})
			})
			d := fakeDialer(t, addr, 5*time.Second)
			cred := Credentials{Username: "u", Password: "p", ClientAddr: &net.TCPAddr{IP: net.ParseIP("2001:db8::7"), Port: 995}}
			c, err := d.Login(context.Background(), cred)
			if err != nil {
				t.Fatalf("Login: %v", err)
			}
			defer c.Close()
			if _, err := c.Select(context.Background()); err != nil {
				t.Fatal(err)
			}
			select {
			case line := <-sawID:
				if !tc.wantID {
					t.Fatalf("ID sent: %q", line)
				}
				if want := `ID ("x-originating-ip" "2001:db8::7" "x-originating-port" "995")`; !strings.HasSuffix(line, want) {
					t.Fatalf("sent %q, want %q", line, want)
				}
			default:
				if tc.wantID {
					t.Fatal("no ID sent")
				}
			}
		})
	}
}

func TestLoginNoClientAddressNoID(t *testing.T) {
	var sawID atomic.Bool
	addr := newFake(t, func(fc *fakeConn) {
		fc.send("* OK [CAPABILITY IMAP4rev1 ID] hi\r\n")
		fc.serve(func(tag, cmd, line string) bool {
			sawID.Store(sawID.Load() || cmd == "ID")
			return false
		})
	})
	c := fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	if _, err := c.Select(context.Background()); err != nil {
		t.Fatal(err)
	}
	if sawID.Load() {
		t.Fatal("ID sent without a client address")
	}
}

func TestLoginIDServerHangsUp(t *testing.T) {
	addr := newFake(t, func(fc *fakeConn) {
		fc.send("* OK [CAPABILITY IMAP4rev1 ID] hi\r\n")
		fc.next()
		fc.send("* BYE go away\r\n")
		fc.Close()
	})
	d := fakeDialer(t, addr, 5*time.Second)
	_, err := d.Login(context.Background(), Credentials{Username: "u", Password: "p", ClientAddr: &net.TCPAddr{IP: net.IPv4(192, 0, 2, 9), Port: 1}})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "go away") {
		t.Fatalf("err = %v, want ErrUnavailable with the server's BYE", err)
	}
}

func TestStartTLSInjectionRefused(t *testing.T) {
	// Whatever the server sends after its STARTTLS answer, before the
	// handshake, is not taken as coming over TLS: the login fails.
	addr := newFake(t, func(fc *fakeConn) {
		fc.send("* OK [CAPABILITY IMAP4rev1 STARTTLS ID] hi\r\n")
		tag, _, _, _ := fc.next()
		fc.send(tag + " OK begin TLS\r\n* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] injected\r\n")
		fc.stall()
	})
	d, err := NewDialer(Config{Address: addr, TLS: TLSStartTLS, ConnectTimeout: 2 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.Login(context.Background(), Credentials{Username: "u", Password: "p"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "before TLS") {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkLoginClientAddress measures what telling Dovecot the client's
// address costs a session: Login (and Close) with and without ClientAddr.
//
//	go test -run '^$' -bench LoginClientAddress -benchtime 400x ./imapupstream/
func BenchmarkLoginClientAddress(b *testing.B) {
	srv := dovecot.Start(b, dovecot.WithTLS(), trustedNetworks)
	user := dovecot.User(b)
	srv.Append(b, user, "INBOX", []byte(msg("bench", "x")))
	client := &net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 40001}
	for _, mode := range []TLSMode{TLSNone, TLSImplicit, TLSStartTLS} {
		addr := srv.IMAPAddr
		if mode == TLSImplicit {
			addr = srv.IMAPSAddr
		}
		d, err := NewDialer(Config{Address: addr, TLS: mode, CAFile: srv.CAFile}, nil)
		if err != nil {
			b.Fatal(err)
		}
		for _, withAddr := range []bool{false, true} {
			name := string(mode) + "/without"
			cred := Credentials{Username: user, Password: srv.Password}
			if withAddr {
				name, cred.ClientAddr = string(mode)+"/with-ID", client
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					c, err := d.Login(context.Background(), cred)
					if err != nil {
						b.Fatal(err)
					}
					c.Close()
				}
			})
		}
	}
}

// BenchmarkIDRoundTrip is the part of that cost that is ours: one ID
// command with the client's address and its answer, on one connection to
// Dovecot's login process (the round trip Login adds without STARTTLS).
func BenchmarkIDRoundTrip(b *testing.B) {
	srv := dovecot.Start(b, trustedNetworks)
	nc, err := net.Dial("tcp", srv.IMAPAddr)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	p := prelogin.NewConn(nc, nil)
	if _, err := p.ReadResponse(false); err != nil {
		b.Fatal(err)
	}
	args := prelogin.IDArguments(&net.TCPAddr{IP: net.IPv4(203, 0, 113, 7), Port: 40001},
		&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 110})
	for b.Loop() {
		if st, err := p.Command("ID "+args, nil); err != nil || st != "OK" {
			b.Fatalf("ID: %q %v", st, err)
		}
	}
}
