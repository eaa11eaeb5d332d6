package courier

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/testenv"
)

// User creates a new user with an empty INBOX and the password s.Password,
// and returns its login name: unique to this call, derived from the test's name.
func (s *Server) User(t testing.TB) string {
	t.Helper()
	name := testenv.UserName(t) // lower case, as userdb keys must be
	if err := s.addUser(name); err != nil {
		t.Fatalf("courier: add user %s: %v", name, err)
	}
	return name
}

// addUser makes the user's maildir, adds the user to the userdb file and
// rebuilds userdb.dat, which authdaemond reopens when its mtime or inode
// changes.
func (s *Server) addUser(name string) error {
	home := filepath.Join(s.Dir, "home", name)
	if err := testenv.MakeMaildir(home); err != nil {
		return err
	}
	sum := sha256.Sum256([]byte(s.Password))
	line := fmt.Sprintf("%s\tuid=%d|gid=%d|home=%s|systempw={SHA256}%s\n",
		name, testenv.MailUID, testenv.MailGID, home, base64.StdEncoding.EncodeToString(sum[:]))

	s.mu.Lock()
	defer s.mu.Unlock()
	userdb := filepath.Join(s.Dir, "etc", "userdb")
	f, err := os.OpenFile(userdb, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(line)
	if err := errors.Join(werr, f.Close()); err != nil {
		return err
	}
	if out, err := exec.Command(makeuserdbBin, "-f", userdb).CombinedOutput(); err != nil {
		return fmt.Errorf("makeuserdb: %w: %s", err, out)
	}
	// A new userdb.dat may get a freed inode back within the same second:
	// give every rebuild its own mtime so authdaemond sees the change.
	s.dbMtime = s.dbMtime.Add(time.Second)
	if now := time.Now().Truncate(time.Second); now.After(s.dbMtime) {
		s.dbMtime = now
	}
	return os.Chtimes(userdb+".dat", s.dbMtime, s.dbMtime)
}

// Client returns a plaintext IMAP client logged in as user (not selected),
// closed when the test ends.
func (s *Server) Client(t testing.TB, user string) *imapclient.Client {
	t.Helper()
	c, err := s.dial(user)
	if err != nil {
		t.Fatalf("courier: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (s *Server) dial(user string) (*imapclient.Client, error) {
	return testenv.DialIMAP(s.IMAPAddr, user, s.Password)
}

// Append appends msg to the user's mailbox, which must exist (INBOX always
// does), and returns its UID from APPENDUID.
func (s *Server) Append(t testing.TB, user, mailbox string, msg []byte) uint32 {
	t.Helper()
	uid, err := s.appendMsg(user, mailbox, msg)
	if err != nil {
		t.Fatalf("courier: append to %s/%s: %v", user, mailbox, err)
	}
	return uid
}

func (s *Server) appendMsg(user, mailbox string, msg []byte) (uint32, error) {
	c, err := s.dial(user)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	return testenv.AppendUID(c, mailbox, msg, nil)
}

// Capabilities returns the capabilities Courier lists after login, sorted.
func (s *Server) Capabilities(t testing.TB) []string {
	t.Helper()
	c, err := s.dial(s.User(t))
	if err != nil {
		t.Fatalf("courier: %v", err)
	}
	defer c.Close()
	names, err := testenv.Capabilities(c)
	if err != nil {
		t.Fatalf("courier: CAPABILITY: %v", err)
	}
	return names
}
