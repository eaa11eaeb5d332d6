package proxy_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap/zaptest/observer"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/courier"
	"github.com/popbridge/popbridge/internal/testenv/cyrus"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

// bridge is popbridge in-process: a pop3.Server with the proxy backend in
// front of a real IMAP server, Dovecot, Courier or Cyrus.
type bridge struct {
	Addr     string
	Up       upstream
	DV       *dovecot.Server // Up when it is Dovecot, else nil
	Password string          // every upstream user's password
	Store    uidmap.Store
	Logs     *observer.ObservedLogs
	srv      *pop3.Server
}

// upstream is the IMAP server behind a bridge, as the end-to-end tests use
// it. A *dovecot.Server is one as it is; courierServer and cyrusServer
// make a Courier and a Cyrus one. Tests that need more of Dovecot (doveadm,
// the fault relay, master users, ...) take the *dovecot.Server itself.
type upstream interface {
	// Client returns an IMAP client logged in as user, not selected.
	Client(t testing.TB, user string) *imapclient.Client
	// Append appends msg with flags to the user's mailbox and returns its UID.
	Append(t testing.TB, user, mailbox string, msg []byte, flags ...imap.Flag) uint32
}

// courierServer is a Courier as an upstream.
type courierServer struct{ *courier.Server }

func startCourier(t testing.TB) courierServer { return courierServer{courier.Start(t)} }

// Append sets the flags with UID STORE after the APPEND: courier.Server's
// Append takes none.
func (s courierServer) Append(t testing.TB, user, mailbox string, msg []byte, flags ...imap.Flag) uint32 {
	t.Helper()
	uid := s.Server.Append(t, user, mailbox, msg)
	if len(flags) > 0 {
		c := s.Client(t, user)
		defer c.Close()
		if _, err := c.Select(mailbox, nil).Wait(); err != nil {
			t.Fatalf("select %s: %v", mailbox, err)
		}
		store := &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: flags, Silent: true}
		if err := c.Store(imap.UIDSetNum(imap.UID(uid)), store, nil).Close(); err != nil {
			t.Fatalf("store %v on UID %d: %v", flags, uid, err)
		}
	}
	return uid
}

// cyrusServer is a Cyrus as an upstream (cyrus.Server's Append takes
// flags already).
type cyrusServer struct{ *cyrus.Server }

func startCyrus(t testing.TB) cyrusServer { return cyrusServer{cyrus.Start(t)} }

// endpoint returns the upstream's IMAP address and its users' password.
func endpoint(up upstream) (addr, password string) {
	switch up := up.(type) {
	case *dovecot.Server:
		return up.IMAPAddr, up.Password
	case courierServer:
		return up.IMAPAddr, up.Password
	case cyrusServer:
		return up.IMAPAddr, up.Password
	}
	panic(fmt.Sprintf("endpoint: unknown upstream %T", up))
}

// newUser returns a new user of the upstream, with an empty INBOX.
func newUser(t testing.TB, up upstream) string {
	t.Helper()
	switch s := up.(type) {
	case courierServer:
		return s.User(t)
	case cyrusServer:
		return s.User(t)
	}
	return dovecot.User(t) // Dovecot takes any name
}

type bridgeOption func(*proxy.Options, *imapupstream.Config, *pop3.Server)

func withPolicy(p proxy.Policy) bridgeOption {
	return func(o *proxy.Options, _ *imapupstream.Config, _ *pop3.Server) { o.Policy = p }
}

func defaultPolicy() proxy.Policy {
	return proxy.Policy{OnDele: proxy.OnDeleExpunge, TrashMailbox: "Trash", MarkSeen: true, Exclusive: true}
}

func startBridge(t testing.TB, up upstream, opts ...bridgeOption) *bridge {
	t.Helper()
	return startBridgeWith(t, up, func(b pop3.Backend) pop3.Backend { return b }, opts...)
}

// login opens a POP3 session as user.
func (b *bridge) login(t *testing.T, user string) *pop3client.Client {
	t.Helper()
	c, err := pop3client.Dial(b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, b.Password); err != nil {
		t.Fatalf("login %s: %v", user, err)
	}
	return c
}

// imapMessage is what the IMAP server holds for one message.
type imapMessage struct {
	UID   uint32
	Size  int64
	Body  []byte
	Flags []imap.Flag
}

// imapState reads the mailbox over a separate IMAP connection: the
// reference every POP3 answer is compared with.
func imapState(t *testing.T, up upstream, user, mailbox string) (uidValidity uint32, msgs []imapMessage) {
	t.Helper()
	c := up.Client(t, user)
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		t.Fatalf("select %s: %v", mailbox, err)
	}
	defer func() { c.Unselect().Wait() }()
	if sel.NumMessages == 0 {
		return sel.UIDValidity, nil
	}
	var all imap.UIDSet
	all.AddRange(1, 0)
	bufs, err := c.Fetch(all, &imap.FetchOptions{
		UID: true, RFC822Size: true, Flags: true,
		BodySection: []*imap.FetchItemBodySection{{Peek: true}},
	}).Collect()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bufs {
		var body []byte
		for _, s := range b.BodySection {
			body = s.Bytes
		}
		msgs = append(msgs, imapMessage{UID: uint32(b.UID), Size: b.RFC822Size, Body: body, Flags: b.Flags})
	}
	sort.Slice(msgs, func(i, j int) bool { return msgs[i].UID < msgs[j].UID })
	return sel.UIDValidity, msgs
}

func hasFlag(m imapMessage, f imap.Flag) bool {
	for _, g := range m.Flags {
		if strings.EqualFold(string(g), string(f)) {
			return true
		}
	}
	return false
}

// message builds an RFC 5322 message with CRLF line ends.
func message(subject, body string) []byte {
	s := fmt.Sprintf("From: sender@example.org\nTo: rcpt@example.org\nSubject: %s\nMessage-ID: <%s@test>\n\n%s", subject, strings.ReplaceAll(subject, " ", "."), body)
	return []byte(strings.ReplaceAll(s, "\n", "\r\n"))
}

// wantRETR is what RETR must deliver for an IMAP message body: the same
// octets, plus a CRLF where the message does not end with one.
func wantRETR(body []byte) []byte {
	if bytes.HasSuffix(body, []byte("\r\n")) {
		return body
	}
	return append(append([]byte(nil), body...), '\r', '\n')
}

func errCode(err error) string {
	var e *pop3client.ErrResponse
	if errors.As(err, &e) {
		return e.Code()
	}
	return ""
}

// loginEventually logs in, retrying briefly while the previous session of
// the same user is still being torn down by the server.
func (b *bridge) loginEventually(t *testing.T, user string) *pop3client.Client {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := pop3client.Dial(b.Addr)
		if err != nil {
			t.Fatal(err)
		}
		err = c.Login(user, b.Password)
		if err == nil {
			t.Cleanup(func() { c.Close() })
			return c
		}
		c.Close()
		if errCode(err) != "IN-USE" || time.Now().After(deadline) {
			t.Fatalf("login %s: %v", user, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stop shuts the bridge down now (it is also stopped at cleanup).
func (b *bridge) stop(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := b.srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}
