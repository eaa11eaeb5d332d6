package imapupstream

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapupstream/internal/prelogin"
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
