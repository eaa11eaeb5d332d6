package dovecot

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/testenv"
)

// User returns a new user name, unique to this call, derived from the test's
// name: any user name logs in, so tests sharing a server stay apart.
func User(t testing.TB) string { return testenv.UserName(t) }

// Client returns a plaintext IMAP client logged in as user (not selected),
// closed when the test ends.
func (s *Server) Client(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	c, err := s.dial(user)
	if err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *Server) dial(user string) (*imapclient.Client, error) {
	return testenv.DialIMAP(s.IMAPAddr, user, s.Password)
}

// Append appends msg to the user's mailbox (created if missing) with the
// given flags and returns its UID (from APPENDUID).
func (s *Server) Append(t testing.TB, user, mailbox string, msg []byte, flags ...imap.Flag) uint32 {
	t.Helper()
	uid, err := s.appendMsg(user, mailbox, msg, flags)
	if err != nil {
		t.Fatalf("dovecot: append to %s/%s: %v", user, mailbox, err)
	}
	return uid
}

func (s *Server) appendMsg(user, mailbox string, msg []byte, flags []imap.Flag) (uint32, error) {
	// One connection per user, reused: appending many messages stays fast.
	// The lock also keeps appends of one server in order.
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.clients[user]
	if c == nil {
		var err error
		if c, err = s.dial(user); err != nil {
			return 0, err
		}
		s.clients[user] = c
	}
	for try := 0; ; try++ {
		uid, err := testenv.AppendUID(c, mailbox, msg, flags)
		var imapErr *imap.Error
		if err != nil && try == 0 && errors.As(err, &imapErr) && imapErr.Code == imap.ResponseCodeTryCreate {
			if err := c.Create(mailbox, nil).Wait(); err != nil {
				return 0, fmt.Errorf("create: %w", err)
			}
			continue
		}
		if err != nil {
			// The connection may be unusable: start afresh next time.
			c.Close()
			delete(s.clients, user)
			return 0, err
		}
		return uid, nil
	}
}

// Maildir returns the directory of the user's INBOX.
func (s *Server) Maildir(user string) string {
	return filepath.Join(s.Dir, "home", user, "Maildir")
}

// FillMaildir writes n messages, msg(0) … msg(n-1), straight into the user's
// maildir INBOX, much faster than APPEND for big mailboxes. Dovecot gives them
// UIDs when a session next looks at the mailbox, in an order of its choosing.
// The messages should use CRLF line ends, like those Dovecot stores itself.
func (s *Server) FillMaildir(t testing.TB, user string, n int, msg func(i int) []byte) {
	t.Helper()
	if err := s.WriteMaildir(user, n, msg, false); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
}

// WriteMaildir is FillMaildir outside a test. With crlf set, the caller
// promises CRLF line ends: the file names then carry the virtual size (W=,
// the file size) as well as the size (S=), and Dovecot never reads a file
// to learn its RFC822.SIZE.
func (s *Server) WriteMaildir(user string, n int, msg func(i int) []byte, crlf bool) error {
	md := s.Maildir(user)
	if err := testenv.MakeMaildir(filepath.Dir(md)); err != nil {
		return err
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	prefix := fmt.Sprintf("%d.dvt%s", time.Now().Unix(), hex.EncodeToString(rnd[:]))
	for i := range n {
		data := msg(i)
		// Base name sorts in creation order; S= lets Dovecot skip stat-ing sizes.
		name := fmt.Sprintf("%s%08d.localhost,S=%d", prefix, i, len(data))
		if crlf {
			name += fmt.Sprintf(",W=%d", len(data))
		}
		path := filepath.Join(md, "cur", name+":2,")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return err
		}
		if err := os.Chown(path, testenv.MailUID, testenv.MailGID); err != nil {
			return err
		}
	}
	return nil
}

// TLSConfig returns a client TLS configuration that trusts the test CA
// (WithTLS) and expects the name "localhost".
func (s *Server) TLSConfig() *tls.Config {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(s.CACertPEM)
	return &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS12}
}

// EmptyWithNewUIDValidity expunges every message of the user's mailbox and
// gives it a new UIDVALIDITY (with doveadm), as re-creating the mailbox
// would: Dovecot refuses to delete or rename INBOX itself. It returns the
// new UIDVALIDITY.
func (s *Server) EmptyWithNewUIDValidity(t testing.TB, user, mailbox string) uint32 {
	t.Helper()
	c, err := s.dial(user)
	if err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	defer c.Close()
	sel, err := c.Select(mailbox, nil).Wait()
	if err != nil {
		t.Fatalf("dovecot: select %s: %v", mailbox, err)
	}
	if sel.NumMessages > 0 {
		var all imap.UIDSet
		all.AddRange(1, 0)
		if err := c.Store(all, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Flags: []imap.Flag{imap.FlagDeleted}, Silent: true}, nil).Close(); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
		if err := c.Expunge().Close(); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
	}
	if err := c.Unselect().Wait(); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	next := sel.UIDValidity + 1000
	s.Doveadm(t, "mailbox", "update", "-u", user, "--uid-validity", strconv.FormatUint(uint64(next), 10), mailbox)
	return next
}
