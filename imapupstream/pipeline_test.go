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

// TestLoginSelectPipelined: Dovecot names itself in its ID answer, and
// LoginSelect's SELECT goes out before the LOGIN's answer is read; the
// Mailbox is Select's.
func TestLoginSelectPipelined(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.append(t, msg("one", "x"))
	trace := &wire{}
	c, mb, err := e.dialer(t, e.config(), trace).LoginSelect(context.Background(),
		Credentials{Username: e.user, Password: e.srv.Password, ClientAddr: clientAddr})
	if err != nil {
		t.Fatalf("LoginSelect: %v", err)
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
	c, mb, err := e.dialer(t, e.config(), trace).LoginSelect(context.Background(),
		Credentials{Username: e.user, Password: "Wr0ng-Pa55", ClientAddr: clientAddr})
	if c != nil || mb != nil || !errors.Is(err, ErrAuthFailed) || errors.Is(err, ErrUnavailable) || errors.Is(err, ErrNoMailbox) {
		t.Fatalf("LoginSelect = %v, %v, %v; want ErrAuthFailed", c, mb, err)
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
	c, mb, err := e.dialer(t, cfg, trace).LoginSelect(context.Background(),
		Credentials{Username: e.user, Password: e.srv.Password, ClientAddr: clientAddr})
	if c == nil || mb != nil || !errors.Is(err, ErrNoMailbox) {
		t.Fatalf("LoginSelect = %v, %v, %v; want a Conn and ErrNoMailbox", c, mb, err)
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
	c, mb, err := e.dialer(t, e.config(), trace).LoginSelect(context.Background(),
		Credentials{Username: e.user, Password: e.srv.Password}) // no client address: no ID
	if err != nil || mb == nil {
		t.Fatalf("LoginSelect: %v", err)
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
