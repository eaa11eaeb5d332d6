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
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// User returns a new user name, unique to this call, derived from the test's
// name: any user name logs in, so tests sharing a server stay apart.
func User(t testing.TB) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 40 {
		name = name[len(name)-40:]
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	return strings.TrimLeft(name+"-"+hex.EncodeToString(rnd[:]), "-")
}

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
	c, err := imapclient.DialInsecure(s.IMAPAddr, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", s.IMAPAddr, err)
	}
	if err := c.Login(user, s.Password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("login %s: %w", user, err)
	}
	return c, nil
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
		cmd := c.Append(mailbox, int64(len(msg)), &imap.AppendOptions{Flags: flags})
		_, werr := cmd.Write(msg)
		cerr := cmd.Close()
		data, err := cmd.Wait()
		if err == nil {
			err = errors.Join(werr, cerr)
		}
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
		if data.UID == 0 {
			return 0, errors.New("no APPENDUID in the response")
		}
		return uint32(data.UID), nil
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
	md := s.Maildir(user)
	home := filepath.Dir(md)
	for _, d := range []string{home, md, filepath.Join(md, "cur"), filepath.Join(md, "new"), filepath.Join(md, "tmp")} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			t.Fatalf("dovecot: %v", err)
		}
		if err := os.Chown(d, mailUID, mailGID); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	prefix := fmt.Sprintf("%d.dvt%s", time.Now().Unix(), hex.EncodeToString(rnd[:]))
	for i := range n {
		data := msg(i)
		// Base name sorts in creation order; S= lets Dovecot skip stat-ing sizes.
		name := filepath.Join(md, "cur", fmt.Sprintf("%s%08d.localhost,S=%d:2,", prefix, i, len(data)))
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
		if err := os.Chown(name, mailUID, mailGID); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
	}
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
