package imapupstream

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
)

// fakeIMAP is a scripted IMAP server for failures Dovecot will not produce
// on demand: stalls, cut-off literals, odd answers.
type fakeIMAP struct {
	ln    net.Listener
	wg    sync.WaitGroup
	mu    sync.Mutex
	conns []net.Conn
}

type fakeConn struct {
	net.Conn
	r *bufio.Reader
}

// send writes raw protocol text (with its own CRLFs).
func (fc *fakeConn) send(s string) { fc.Write([]byte(s)) }

// next reads one command line; cmd is its name in capitals ("UID FETCH"
// counts as "UID FETCH"). ok is false when the client went away.
func (fc *fakeConn) next() (tag, cmd, line string, ok bool) {
	l, err := fc.r.ReadString('\n')
	if err != nil {
		return "", "", "", false
	}
	l = strings.TrimRight(l, "\r\n")
	f := strings.Fields(l)
	if len(f) < 2 {
		return "", "", l, true
	}
	cmd = strings.ToUpper(f[1])
	if cmd == "UID" && len(f) > 2 {
		cmd += " " + strings.ToUpper(f[2])
	}
	return f[0], cmd, l, true
}

// stall answers nothing more until the client hangs up.
func (fc *fakeConn) stall() { io.Copy(io.Discard, fc.r) }

// serve answers the usual commands until script returns true for a command
// (meaning it handled it) or the client leaves.
func (fc *fakeConn) serve(script func(tag, cmd, line string) bool) {
	for {
		tag, cmd, line, ok := fc.next()
		if !ok {
			return
		}
		if script != nil && script(tag, cmd, line) {
			continue
		}
		switch cmd {
		case "LOGIN", "AUTHENTICATE":
			fc.send(tag + " OK [CAPABILITY IMAP4rev1 UIDPLUS MOVE] logged in\r\n")
		case "CAPABILITY":
			fc.send("* CAPABILITY IMAP4rev1 UIDPLUS MOVE\r\n" + tag + " OK done\r\n")
		case "SELECT":
			fc.send("* 3 EXISTS\r\n* OK [UIDVALIDITY 42] ok\r\n* OK [UIDNEXT 4] ok\r\n" + tag + " OK [READ-WRITE] done\r\n")
		case "LOGOUT":
			fc.send("* BYE bye\r\n" + tag + " OK done\r\n")
			return
		default:
			fc.send(tag + " BAD unknown\r\n")
		}
	}
}

func newFake(t *testing.T, handle func(fc *fakeConn)) string { return newFakeB(t, handle) }

func newFakeB(t testing.TB, handle func(fc *fakeConn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeIMAP{ln: ln}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns = append(f.conns, c)
			f.mu.Unlock()
			f.wg.Add(1)
			go func() {
				defer f.wg.Done()
				defer c.Close()
				handle(&fakeConn{Conn: c, r: bufio.NewReader(c)})
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		f.mu.Lock()
		for _, c := range f.conns {
			c.Close()
		}
		f.mu.Unlock()
		f.wg.Wait()
	})
	return ln.Addr().String()
}

const fakeGreeting = "* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] fake ready\r\n"

func fakeDialer(t *testing.T, addr string, cmdTimeout time.Duration) *Dialer {
	t.Helper()
	d, err := NewDialer(Config{Address: addr, TLS: TLSNone, ConnectTimeout: 2 * time.Second, CommandTimeout: cmdTimeout}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func fakeLogin(t *testing.T, d *Dialer) *Conn {
	t.Helper()
	c, err := d.Login(context.Background(), Credentials{Username: "u", Password: "p"})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func isTimeout(err error) bool {
	return errors.Is(err, ErrUnavailable) && errors.Is(err, context.DeadlineExceeded)
}

func TestCommandTimeoutStalledServer(t *testing.T) {
	addr := newFake(t, func(fc *fakeConn) {
		fc.send(fakeGreeting)
		fc.serve(func(tag, cmd, line string) bool {
			if cmd == "SELECT" {
				fc.stall()
				return true
			}
			return false
		})
	})
	c := fakeLogin(t, fakeDialer(t, addr, 300*time.Millisecond))
	start := time.Now()
	_, err := c.Select(context.Background())
	took := time.Since(start)
	if !isTimeout(err) {
		t.Fatalf("err = %v, want ErrUnavailable wrapping context.DeadlineExceeded", err)
	}
	if took < 250*time.Millisecond || took > 2*time.Second {
		t.Fatalf("took %v for a 300ms timeout", took)
	}
	// The Conn is done; everything fails fast.
	start = time.Now()
	if _, err := c.Snapshot(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("after timeout: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("Close after a timeout took %v", time.Since(start))
	}
}

func TestConnectTimeoutNoGreeting(t *testing.T) {
	addr := newFake(t, func(fc *fakeConn) { fc.stall() })
	d, err := NewDialer(Config{Address: addr, TLS: TLSNone, ConnectTimeout: 300 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = d.Login(context.Background(), Credentials{Username: "u", Password: "p"})
	if !isTimeout(err) {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v", took)
	}

	// Implicit TLS against a server that never answers the handshake.
	d, err = NewDialer(Config{Address: addr, TLS: TLSImplicit, ConnectTimeout: 300 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Login(context.Background(), Credentials{Username: "u", Password: "p"}); !isTimeout(err) {
		t.Fatalf("TLS: err = %v", err)
	}
}

func TestContextCancelEndsCommand(t *testing.T) {
	addr := newFake(t, func(fc *fakeConn) {
		fc.send(fakeGreeting)
		fc.serve(func(tag, cmd, line string) bool {
			if cmd == "SELECT" {
				fc.stall()
				return true
			}
			return false
		})
	})
	c := fakeLogin(t, fakeDialer(t, addr, time.Minute))
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	start := time.Now()
	_, err := c.Select(ctx)
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v", took)
	}
}

// fetchServer answers SELECT, then UID FETCH with response (TAG replaced by
// the command's tag), then does what after says.
func fetchServer(t *testing.T, response string, after func(fc *fakeConn)) string {
	return newFake(t, func(fc *fakeConn) {
		fc.send(fakeGreeting)
		fc.serve(func(tag, cmd, line string) bool {
			if cmd == "UID FETCH" {
				fc.send(strings.ReplaceAll(response, "TAG", tag))
				after(fc)
				return true
			}
			return false
		})
	})
}

func TestFetchLiteralCutShort(t *testing.T) {
	addr := fetchServer(t, "* 1 FETCH (UID 1 BODY[] {1000}\r\n0123456789", func(fc *fakeConn) {
		time.Sleep(50 * time.Millisecond)
		fc.Close() // the server goes away mid-literal
	})
	c := fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	if _, err := c.Select(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := c.Fetch(context.Background(), MessageMeta{UID: 1, Size: 1000})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if err == nil || !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ReadAll = %d bytes, %v; want ErrUnavailable", len(data), err)
	}
	if string(data) != "0123456789" {
		t.Fatalf("data %q", data)
	}
	if err := r.Close(); err == nil {
		t.Fatal("Close of a broken reader: nil")
	}
	if _, err := c.Fetch(context.Background(), MessageMeta{UID: 2, Size: 1000}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Fetch after: %v", err)
	}
}

func TestFetchLiteralStalls(t *testing.T) {
	addr := fetchServer(t, "* 1 FETCH (UID 1 BODY[] {1000}\r\n0123456789", func(fc *fakeConn) { fc.stall() })
	c := fakeLogin(t, fakeDialer(t, addr, 300*time.Millisecond))
	if _, err := c.Select(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := c.Fetch(context.Background(), MessageMeta{UID: 1, Size: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// A slow consumer is not a stall: wait longer than the timeout first.
	time.Sleep(500 * time.Millisecond)
	buf := make([]byte, 10)
	if n, err := io.ReadFull(r, buf); err != nil || n != 10 {
		t.Fatalf("first read: %d %v", n, err)
	}
	start := time.Now()
	_, err = r.Read(buf)
	if !isTimeout(err) {
		t.Fatalf("stalled read: %v", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("took %v", took)
	}
}

func TestFetchNoTaggedOKAfterLiteral(t *testing.T) {
	// The whole literal arrives, then the connection dies before the command
	// completes: the reader must not report a clean end.
	addr := fetchServer(t, "* 1 FETCH (UID 1 BODY[] {10}\r\n0123456789)\r\n", func(fc *fakeConn) { fc.Close() })
	c := fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	if _, err := c.Select(context.Background()); err != nil {
		t.Fatal(err)
	}
	r, err := c.Fetch(context.Background(), MessageMeta{UID: 1, Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(r)
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("ReadAll = %q, %v", data, err)
	}
}

func TestFetchNilBody(t *testing.T) {
	// Some servers answer an expunged message with NIL.
	addr := fetchServer(t, "* 1 FETCH (UID 1 BODY[] NIL)\r\nTAG OK done\r\n", func(fc *fakeConn) {})
	c := fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	if _, err := c.Select(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(context.Background(), MessageMeta{UID: 1, Size: 10}); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("err = %v", err)
	}
	// EXPUNGEISSUED, as Dovecot may say.
	addr = fetchServer(t, "TAG NO [EXPUNGEISSUED] Some of the requested messages no longer exist\r\n", func(fc *fakeConn) {})
	c = fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	if _, err := c.Select(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Fetch(context.Background(), MessageMeta{UID: 1, Size: 10}); !errors.Is(err, ErrNoSuchMessage) {
		t.Fatalf("EXPUNGEISSUED: err = %v", err)
	}
	if _, err := c.Select(context.Background()); err != nil {
		t.Fatalf("Conn unusable after ErrNoSuchMessage: %v", err)
	}
}

func TestServerAnswers(t *testing.T) {
	cases := []struct {
		name     string
		greeting string
		login    string // answer to LOGIN/AUTHENTICATE ("%s" = tag)
		selectR  string
		want     error
		inSelect bool
	}{
		{name: "BYE greeting", greeting: "* BYE [UNAVAILABLE] maintenance\r\n", want: ErrUnavailable},
		{name: "LOGIN UNAVAILABLE", login: "NO [UNAVAILABLE] backend down", want: ErrUnavailable},
		{name: "LOGIN plain NO", login: "NO go away", want: ErrAuthFailed},
		{name: "LOGIN EXPIRED", login: "NO [EXPIRED] password expired", want: ErrAuthFailed},
		{name: "LOGIN PRIVACYREQUIRED", login: "NO [PRIVACYREQUIRED] use TLS", want: ErrAuthFailed},
		{name: "LOGIN INUSE", login: "NO [INUSE] busy", want: ErrInUse},
		{name: "SELECT INUSE", selectR: "NO [INUSE] locked", want: ErrInUse, inSelect: true},
		{name: "SELECT NONEXISTENT", selectR: "NO [NONEXISTENT] no such", want: ErrNoMailbox, inSelect: true},
		{name: "SELECT plain NO", selectR: "NO no mailbox", want: ErrNoMailbox, inSelect: true},
		{name: "SELECT BYE", selectR: "BYE", want: ErrUnavailable, inSelect: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := newFake(t, func(fc *fakeConn) {
				if tc.greeting != "" {
					fc.send(tc.greeting)
					return
				}
				fc.send(fakeGreeting)
				fc.serve(func(tag, cmd, line string) bool {
					switch {
					case cmd == "LOGIN" && tc.login != "":
						fc.send(tag + " " + tc.login + "\r\n")
						return true
					case cmd == "SELECT" && tc.selectR == "BYE":
						fc.send("* BYE shutting down\r\n")
						fc.Close()
						return true
					case cmd == "SELECT" && tc.selectR != "":
						fc.send(tag + " " + tc.selectR + "\r\n")
						return true
					}
					return false
				})
			})
			d := fakeDialer(t, addr, 5*time.Second)
			c, err := d.Login(context.Background(), Credentials{Username: "u", Password: "p"})
			if tc.inSelect {
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				_, err = c.Select(context.Background())
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var imapErr *imap.Error
			if tc.login != "" && !errors.As(err, &imapErr) {
				t.Fatalf("server answer not in the chain: %v", err)
			}
		})
	}
}

func TestLoginDisabledUsesAuthenticatePlain(t *testing.T) {
	var sawAuth, sawLogin bool
	var mu sync.Mutex
	addr := newFake(t, func(fc *fakeConn) {
		fc.send("* OK [CAPABILITY IMAP4rev1 SASL-IR LOGINDISABLED AUTH=PLAIN] fake\r\n")
		fc.serve(func(tag, cmd, line string) bool {
			mu.Lock()
			defer mu.Unlock()
			switch cmd {
			case "LOGIN":
				sawLogin = true
				fc.send(tag + " NO LOGIN disabled\r\n")
				return true
			case "AUTHENTICATE":
				sawAuth = strings.HasPrefix(line, tag+" AUTHENTICATE PLAIN ")
			}
			return false
		})
	})
	c := fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	c.Close()
	mu.Lock()
	defer mu.Unlock()
	if !sawAuth || sawLogin {
		t.Fatalf("AUTHENTICATE PLAIN %v, LOGIN %v", sawAuth, sawLogin)
	}
}

func TestPreauthRefused(t *testing.T) {
	addr := newFake(t, func(fc *fakeConn) {
		fc.send("* PREAUTH [CAPABILITY IMAP4rev1] welcome\r\n")
		fc.serve(nil)
	})
	_, err := fakeDialer(t, addr, time.Second).Login(context.Background(), Credentials{Username: "u", Password: "p"})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
}
