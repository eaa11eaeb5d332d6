package cyrus

import (
	"fmt"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/testenv"
)

// User creates a new user with the password s.Password and an empty INBOX
// (the admin's CREATE user.NAME), and returns its login name: unique to
// this call, derived from the test's name.
func (s *Server) User(t testing.TB) string {
	t.Helper()
	name := testenv.UserName(t)
	if err := s.setPassword(name, s.Password); err != nil {
		t.Fatalf("cyrus: add user %s: %v", name, err)
	}
	if err := s.createInbox(name); err != nil {
		t.Fatalf("cyrus: %v", err)
	}
	return name
}

func (s *Server) createInbox(user string) error {
	c, err := testenv.DialIMAP(s.IMAPAddr, AdminUser, s.adminPassword)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Create("user."+user, nil).Wait(); err != nil {
		return fmt.Errorf("CREATE user.%s: %w", user, err)
	}
	return nil
}

// RecreateInbox deletes the user's INBOX (with every other mailbox of the
// user: Cyrus deletes a user's whole hierarchy with user.NAME), creates it
// again, empty, and returns its UIDVALIDITY, which differs from the old
// one. The user must have no session with the INBOX selected.
func (s *Server) RecreateInbox(t testing.TB, user string) uint32 {
	t.Helper()
	old := s.uidValidity(t, user)
	c, err := testenv.DialIMAP(s.IMAPAddr, AdminUser, s.adminPassword)
	if err != nil {
		t.Fatalf("cyrus: %v", err)
	}
	defer c.Close()
	mbox := "user." + user
	// Admins may administer every mailbox but delete only with the right x.
	if err := c.SetACL(mbox, imap.RightsIdentifier(AdminUser), imap.RightModificationAdd, imap.RightSet("x")).Wait(); err != nil {
		t.Fatalf("cyrus: SETACL %s %s +x: %v", mbox, AdminUser, err)
	}
	if err := c.Delete(mbox).Wait(); err != nil {
		t.Fatalf("cyrus: DELETE %s: %v", mbox, err)
	}
	if err := c.Create(mbox, nil).Wait(); err != nil {
		t.Fatalf("cyrus: CREATE %s: %v", mbox, err)
	}
	v := s.uidValidity(t, user)
	if v == old {
		t.Fatalf("cyrus: the re-created INBOX of %s has the old UIDVALIDITY %d", user, v)
	}
	return v
}

// uidValidity returns the UIDVALIDITY of the user's INBOX.
func (s *Server) uidValidity(t testing.TB, user string) uint32 {
	t.Helper()
	c, err := s.dial(user)
	if err != nil {
		t.Fatalf("cyrus: %v", err)
	}
	defer c.Close()
	st, err := c.Status("INBOX", &imap.StatusOptions{UIDValidity: true}).Wait()
	if err != nil {
		t.Fatalf("cyrus: STATUS INBOX of %s: %v", user, err)
	}
	return st.UIDValidity
}

// Client returns a plaintext IMAP client logged in as user (not selected),
// closed when the test ends.
func (s *Server) Client(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	c, err := s.dial(user)
	if err != nil {
		t.Fatalf("cyrus: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *Server) dial(user string) (*imapclient.Client, error) {
	return testenv.DialIMAP(s.IMAPAddr, user, s.Password)
}

// Append appends msg with flags to the user's mailbox, which must exist
// (INBOX always does), and returns its UID from APPENDUID.
func (s *Server) Append(t testing.TB, user, mailbox string, msg []byte, flags ...imap.Flag) uint32 {
	t.Helper()
	uid, err := s.appendMsg(user, mailbox, msg, flags)
	if err != nil {
		t.Fatalf("cyrus: append to %s/%s: %v", user, mailbox, err)
	}
	return uid
}

func (s *Server) appendMsg(user, mailbox string, msg []byte, flags []imap.Flag) (uint32, error) {
	c, err := s.dial(user)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return testenv.AppendUID(c, mailbox, msg, flags)
}

// Capabilities returns the capabilities Cyrus lists after login, sorted.
func (s *Server) Capabilities(t testing.TB) []string {
	t.Helper()
	c, err := s.dial(s.User(t))
	if err != nil {
		t.Fatalf("cyrus: %v", err)
	}
	defer c.Close()
	names, err := testenv.Capabilities(c)
	if err != nil {
		t.Fatalf("cyrus: CAPABILITY: %v", err)
	}
	return names
}
