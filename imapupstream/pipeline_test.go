package imapupstream

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapupstream/internal/prelogin"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

var clientAddr = &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}

// loginSelect is Login, then the first Select, which takes the answer to
// the SELECT that Login sent behind the LOGIN, if it did.
func loginSelect(d *Dialer, cred Credentials) (*Conn, *Mailbox, error) {
	c, err := d.Login(context.Background(), cred)
	if err != nil {
		return nil, nil, err
	}
	mb, err := c.Select(context.Background())
	return c, mb, err
}

// TestLoginSelectPipelined: Dovecot names itself in its ID answer, and
// Login's SELECT goes out before the LOGIN's answer is read; the first
// Select's Mailbox is its answer.
func TestLoginSelectPipelined(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.append(t, msg("one", "x"))
	trace := &wire{}
	c, mb, err := loginSelect(e.dialer(t, e.config(), trace),
		Credentials{Username: e.user, Password: e.srv.Password, ClientAddr: clientAddr})
	if err != nil {
		t.Fatalf("Login and Select: %v", err)
	}
	defer c.Close()
	if mb.Name != "INBOX" || mb.UIDValidity == 0 || mb.NumMessages != 1 || mb.UIDNext != 2 || c.Mailbox() != mb {
		t.Fatalf("mailbox %+v", mb)
	}
	if !c.Caps().UIDPlus {
		t.Fatalf("caps after login %+v", c.Caps())
	}
	both := trace.String()
	sel := strings.Index(both, "SELECT INBOX\r\n")
	loggedIn := strings.Index(both, "Logged in")
	if sel < 0 || loggedIn < 0 || sel > loggedIn {
		t.Fatalf("SELECT not sent before the LOGIN's answer was read:\n%s", both)
	}
	if n := trace.countCommands("SELECT"); n != 1 {
		t.Fatalf("SELECT sent %d times: %q", n, trace.commands())
	}
	// Select again: the same UIDVALIDITY, no error.
	if mb2, err := c.Select(context.Background()); err != nil || mb2.UIDValidity != mb.UIDValidity {
		t.Fatalf("Select again: %+v %v", mb2, err)
	}
}

// TestLoginSelectWrongPassword: the failed login is reported as by Login,
// and the answer to the SELECT behind it is swallowed.
func TestLoginSelectWrongPassword(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	trace := &wire{}
	c, mb, err := loginSelect(e.dialer(t, e.config(), trace),
		Credentials{Username: e.user, Password: "Wr0ng-Pa55", ClientAddr: clientAddr})
	if c != nil || mb != nil || !errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoMailbox) {
		t.Fatalf("Login and Select = %v, %v, %v; want ErrAuthFailed", c, mb, err)
	}
	var imapErr *imap.Error
	if !errors.As(err, &imapErr) || imapErr.Code != imap.ResponseCodeAuthenticationFailed {
		t.Fatalf("server's answer not kept: %v", err)
	}
	if trace.countCommands("SELECT") != 1 {
		t.Fatalf("no SELECT pipelined: %q", trace.commands())
	}
	assertNoSecretLogged(t, e, "Wr0ng-Pa55")
}

// TestLoginSelectNoMailbox: a missing mailbox is Select's ErrNoMailbox,
// with the Conn logged in.
func TestLoginSelectNoMailbox(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cfg := e.config()
	cfg.Mailbox = "Nonexistent"
	trace := &wire{}
	c, mb, err := loginSelect(e.dialer(t, cfg, trace),
		Credentials{Username: e.user, Password: e.srv.Password, ClientAddr: clientAddr})
	if c == nil || mb != nil || !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("Login and Select = %v, %v, %v; want a Conn and ErrNoMailbox", c, mb, err)
	}
	c.Close()
	if trace.countCommands("SELECT") != 1 {
		t.Fatalf("SELECT sent %d times", trace.countCommands("SELECT"))
	}
}

// TestLoginSelectWithoutID: without an ID answer the server is not known,
// and the SELECT waits for the LOGIN's answer.
func TestLoginSelectWithoutID(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	trace := &wire{}
	c, mb, err := loginSelect(e.dialer(t, e.config(), trace),
		Credentials{Username: e.user, Password: e.srv.Password}) // no client address: no ID
	if err != nil || mb == nil {
		t.Fatalf("Login and Select: %v", err)
	}
	defer c.Close()
	both := trace.String()
	if sel, loggedIn := strings.Index(both, "SELECT INBOX\r\n"), strings.Index(both, "Logged in"); sel < loggedIn || loggedIn < 0 {
		t.Fatalf("SELECT pipelined to a server not known to take it:\n%s", both)
	}
}

func TestIDName(t *testing.T) {
	for resp, want := range map[string]string{
		"* ID (\"name\" \"Dovecot\")\r\n":                    "Dovecot",
		"* ID (\"vendor\" NIL \"NAME\" \"Dove\\\"cot\")\r\n": "Dove\"cot",
		"* ID NIL\r\n":                 "",
		"* ID (\"version\" \"1\")\r\n": "",
		"* OK [CAPABILITY IMAP4rev1] \"name\" \"Dovecot\"\r\n": "",
		"* ID (\"name\" {7}\r\nDovecot)\r\n":                   "",
	} {
		if got, _ := prelogin.IDName(resp); got != want {
			t.Errorf("IDName(%q) = %q, want %q", resp, got, want)
		}
	}
}

// TestLoginSelectPendingBeforeFetch: a Fetch (which reads the connection
// below go-imap) right after Login waits for the answer to the SELECT sent
// behind the LOGIN first; the first Select then still returns that answer.
func TestLoginSelectPendingBeforeFetch(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	body := msg("one", "x")
	uid := e.append(t, body)
	trace := &wire{}
	c, err := e.dialer(t, e.config(), trace).Login(context.Background(),
		Credentials{Username: e.user, Password: e.srv.Password, ClientAddr: clientAddr})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if got, err := e.fetchAll(t, c, uid); err != nil || string(got) != body {
		t.Fatalf("Fetch right after Login: %q, %v", got, err)
	}
	mb, err := c.Select(context.Background())
	if err != nil || mb.NumMessages != 1 {
		t.Fatalf("Select: %+v, %v", mb, err)
	}
	if n := trace.countCommands("SELECT"); n != 1 {
		t.Fatalf("SELECT sent %d times: %q", n, trace.commands())
	}
}

// TestLoginIDAhead: Dovecot's greeting names it, and ID, LOGIN and SELECT
// leave in the connection's first write; Dovecot still takes the ID (it
// logs the client's address) and the first Select gets the SELECT's answer.
func TestLoginIDAhead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, trustedNetworks)
	e.append(t, msg("one", "x"))
	trace := &wire{}
	c, mb, err := loginSelect(e.dialer(t, e.config(), trace), e.clientCred(t, "203.0.113.9:40002", "192.0.2.1:110"))
	if err != nil {
		t.Fatalf("Login and Select: %v", err)
	}
	defer c.Close()
	if mb.NumMessages != 1 || mb.UIDValidity == 0 {
		t.Fatalf("mailbox %+v", mb)
	}
	writes := trace.writeList()
	if len(writes) == 0 {
		t.Fatal("nothing written")
	}
	first := writes[0]
	id, login, sel := strings.Index(first, "P1 ID ("), strings.Index(first, " LOGIN "), strings.Index(first, " SELECT INBOX\r\n")
	if id != 0 || login < id || sel < login {
		t.Fatalf("first write %q; want ID, LOGIN and SELECT in it, in that order (writes %q)", first, writes)
	}
	if n := trace.countCommands("ID "); n != 1 {
		t.Fatalf("ID sent %d times: %q", n, trace.commands())
	}
	e.waitLog(t, "Login: user=<"+e.user+">", "rip=203.0.113.9")
}

// TestLoginIDAheadOtherGreeting: a Dovecot whose greeting does not name it
// gets the ID in a round trip of its own; its answer still names it, so
// LOGIN and SELECT go out together after it.
func TestLoginIDAheadOtherGreeting(t *testing.T) {
	t.Parallel()
	e := newEnv(t, dovecot.WithConfig("login_greeting = mail service ready"))
	trace := &wire{}
	c, _, err := loginSelect(e.dialer(t, e.config(), trace), Credentials{Username: e.user, Password: e.srv.Password, ClientAddr: clientAddr})
	if err != nil {
		t.Fatalf("Login and Select: %v", err)
	}
	defer c.Close()
	writes := trace.writeList()
	if len(writes) < 2 || !strings.HasPrefix(writes[0], "P1 ID (") || strings.Contains(writes[0], "LOGIN") ||
		!strings.Contains(writes[1], " LOGIN ") || !strings.Contains(writes[1], " SELECT INBOX\r\n") {
		t.Fatalf("writes %q; want the ID alone, then LOGIN with SELECT", writes)
	}
}

func TestIDAheadRule(t *testing.T) {
	lit := []string{"IMAP4rev1", "ID", "LITERAL+"}
	for _, tc := range []struct {
		text string
		caps []string
		want bool
	}{
		{"Dovecot ready.", lit, true},
		{"Dovecot (Debian) ready.", lit, true},
		{"dovecot ready", lit, true},
		{"Dovecot ready.", []string{"IMAP4rev1", "ID"}, false}, // a literal would wait for a continuation
		{"Dovecotish ready.", lit, false},
		{"mail service ready", lit, false},
		{"Courier-IMAP ready.", lit, false},
	} {
		if got := idAhead(tc.text, tc.caps); got != tc.want {
			t.Errorf("idAhead(%q, %q) = %v, want %v", tc.text, tc.caps, got, tc.want)
		}
	}
}

// fakeDovecotGreeting makes the fake server greet as Dovecot does.
const fakeDovecotGreeting = "* OK [CAPABILITY IMAP4rev1 ID LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n"

// TestLoginIDAheadAnswerReadOff: the ID's answer (here with a literal) is
// taken off the connection before go-imap reads on; other responses that
// came with it reach go-imap in order.
func TestLoginIDAheadAnswerReadOff(t *testing.T) {
	t.Parallel()
	got := make(chan []string, 1)
	addr := newFake(t, func(fc *fakeConn) {
		fc.send(fakeDovecotGreeting)
		var lines []string
		for range 3 {
			_, _, line, _ := fc.next()
			lines = append(lines, line)
		}
		got <- lines
		fc.send("* ID (\"name\" {7}\r\nDovecot)\r\n* OK [ALERT] maintenance tonight\r\nP1 OK ID completed.\r\n" +
			"T1 OK [CAPABILITY IMAP4rev1 UIDPLUS MOVE] logged in\r\n" +
			"* 3 EXISTS\r\n* OK [UIDVALIDITY 42] ok\r\n* OK [UIDNEXT 4] ok\r\nT2 OK [READ-WRITE] done\r\n")
		fc.serve(nil)
	})
	c, mb, err := loginSelect(fakeDialer(t, addr, 5*time.Second), Credentials{Username: "u", Password: "p", ClientAddr: clientAddr})
	if err != nil {
		t.Fatalf("Login and Select: %v", err)
	}
	defer c.Close()
	if mb.NumMessages != 3 || mb.UIDValidity != 42 || mb.UIDNext != 4 || !c.Caps().UIDPlus {
		t.Fatalf("mailbox %+v, caps %+v", mb, c.Caps())
	}
	lines := <-got
	if !strings.HasPrefix(lines[0], "P1 ID (") || !strings.HasPrefix(lines[1], "T1 LOGIN ") || lines[2] != "T2 SELECT INBOX" {
		t.Fatalf("server read %q", lines)
	}
}

// TestLoginIDAheadServerHangsUp: a server that ends the connection instead
// of answering the ID makes the login fail as unavailable, with its BYE.
func TestLoginIDAheadServerHangsUp(t *testing.T) {
	t.Parallel()
	addr := newFake(t, func(fc *fakeConn) {
		fc.send(fakeDovecotGreeting)
		fc.next()
		fc.send("* BYE go away\r\n")
		fc.Close()
	})
	_, err := fakeDialer(t, addr, 5*time.Second).Login(context.Background(), Credentials{Username: "u", Password: "p", ClientAddr: clientAddr})
	if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrAuthFailed) {
		t.Fatalf("err = %v, want ErrUnavailable", err)
	}
}
