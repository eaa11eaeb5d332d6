package testenv

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"
)

// MailUID and MailGID are Debian's system user and group "mail": mail is
// stored and served as that user, not as root (Dovecot refuses to run mail
// processes as root).
const (
	MailUID = 8
	MailGID = 8
)

// Unavailable reports that something the test needs is missing (a server
// not installed, no root): the test is skipped with the message, or fails
// when the environment variable CI is set, so that CI never silently skips
// it.
func Unavailable(t testing.TB, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// ServerDir makes a new private directory for a server's files, named
// prefix and a random suffix, with the given subdirectories. It is short,
// right under /tmp (os.TempDir() if there is none): Unix socket paths are
// limited to about 100 bytes, which t.TempDir's long names can break.
func ServerDir(prefix string, subdirs ...string) (string, error) {
	parent := "/tmp"
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, prefix)
	if err != nil {
		return "", err
	}
	if err := PrepareDir(dir, subdirs...); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// PrepareDir makes dir and its subdirectories (those that do not exist
// yet), all with mode 0755: a server's unprivileged processes traverse
// them.
func PrepareDir(dir string, subdirs ...string) error {
	for _, sub := range append([]string{""}, subdirs...) {
		d := filepath.Join(dir, sub)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
		if err := os.Chmod(d, 0o755); err != nil {
			return err
		}
	}
	return nil
}

// MakeMaildir makes home and a maildir INBOX in home/Maildir (cur, new,
// tmp), owned by the user mail; what exists already is kept.
func MakeMaildir(home string) error {
	md := filepath.Join(home, "Maildir")
	for _, d := range []string{home, md, filepath.Join(md, "cur"), filepath.Join(md, "new"), filepath.Join(md, "tmp")} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		if err := os.Chown(d, MailUID, MailGID); err != nil {
			return err
		}
	}
	return nil
}

// Ports handed out for servers that bind them later come from below Linux's
// ephemeral range (32768-60999 by default). A port freed by a listen on
// ":0" is in that range, and there any outgoing connection of a busy test
// run may take it as its source port before the server binds it.
const (
	portLow  = 12000
	portHigh = 32000
)

// FreeAddr returns host:port for a port that nothing listens on right now,
// for a server that must bind a known address.
func FreeAddr(host string) (string, error) {
	for range 200 {
		p := portLow + mrand.IntN(portHigh-portLow)
		addr := net.JoinHostPort(host, strconv.Itoa(p))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr, nil
	}
	return "", fmt.Errorf("no free port on %s", host)
}

// Greets reports whether a server on addr sends a greeting line starting
// with prefix ("* OK", "+OK"). Servers accept connections before they are
// ready (Dovecot before its auth process is) and greet only then.
func Greets(addr, prefix string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, prefix)
}

// UserName returns a new lower-case user name, unique to this call: the end
// of the test's name and a random suffix, so that tests sharing a server
// stay apart.
func UserName(t testing.TB) string {
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

// DialIMAP returns a plaintext IMAP client on addr logged in as user (not
// selected).
func DialIMAP(addr, user, password string) (*imapclient.Client, error) {
	c, err := imapclient.DialInsecure(addr, nil)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	if err := c.Login(user, password).Wait(); err != nil {
		c.Close()
		return nil, fmt.Errorf("login %s: %w", user, err)
	}
	return c, nil
}
