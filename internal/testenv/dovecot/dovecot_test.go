package dovecot_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/goleak"

	"github.com/popbridge/popbridge/internal/testenv"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func TestStartLoginAppend(t *testing.T) {
	t0 := time.Now()
	srv := dovecot.Start(t)
	t.Logf("Dovecot started in %v", time.Since(t0))

	user := dovecot.User(t)
	uid1 := srv.Append(t, user, "INBOX", []byte("Subject: one\r\n\r\nbody\r\n"))
	uid2 := srv.Append(t, user, "INBOX", []byte("Subject: two\r\n\r\nbody\r\n"), imap.FlagSeen)
	if uid1 == 0 || uid2 != uid1+1 {
		t.Fatalf("UIDs %d, %d", uid1, uid2)
	}
	// Another mailbox is created on demand.
	if uid := srv.Append(t, user, "Other", []byte("Subject: x\r\n\r\n")); uid != 1 {
		t.Fatalf("UID in new mailbox = %d", uid)
	}

	c := srv.Client(t, user)
	if _, err := c.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(imap.UIDSetNum(imap.UID(uid2)), &imap.FetchOptions{Flags: true}).Collect()
	if err != nil || len(msgs) != 1 || !slices.Contains(msgs[0].Flags, imap.FlagSeen) {
		t.Fatalf("fetch flags: %v %+v", err, msgs)
	}

	// A wrong password fails; any user name works.
	bad, err := imapclient.DialInsecure(srv.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Login(user, "wrong").Wait(); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}

	if out := srv.Doveadm(t, "mailbox", "list", "-u", user); !strings.Contains(out, "Other") {
		t.Fatalf("doveadm mailbox list: %q", out)
	}
}

func TestStopRestart(t *testing.T) {
	srv := dovecot.Start(t)
	user := dovecot.User(t)
	srv.Append(t, user, "INBOX", []byte("Subject: keep\r\n\r\n"))
	srv.Stop(t)
	if c, err := net.DialTimeout("tcp", srv.IMAPAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("still listening after Stop")
	}
	t0 := time.Now()
	srv.Restart(t)
	t.Logf("restarted in %v", time.Since(t0))
	if uid := srv.Append(t, user, "INBOX", []byte("Subject: two\r\n\r\n")); uid != 2 {
		t.Fatalf("UID after restart = %d, want 2 (mail kept)", uid)
	}
	srv.Restart(t) // while running
	srv.Client(t, user)
}

func TestTLS(t *testing.T) {
	srv := dovecot.Start(t, dovecot.WithTLS(), dovecot.WithPOP3())
	if srv.IMAPSAddr == "" || srv.POP3Addr == "" || srv.POP3SAddr == "" || len(srv.CACertPEM) == 0 {
		t.Fatalf("addresses: %+v", srv)
	}
	if _, err := os.Stat(srv.CAFile); err != nil {
		t.Fatal(err)
	}
	user := dovecot.User(t)

	c, err := imapclient.DialTLS(srv.IMAPSAddr, &imapclient.Options{TLSConfig: srv.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, srv.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()

	c, err = imapclient.DialStartTLS(srv.IMAPAddr, &imapclient.Options{TLSConfig: srv.TLSConfig()})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Login(user, srv.Password).Wait(); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// Without the CA the certificate is refused.
	_, err = imapclient.DialTLS(srv.IMAPSAddr, &imapclient.Options{TLSConfig: &tls.Config{ServerName: "localhost"}})
	if err == nil {
		t.Fatal("TLS without the test CA succeeded")
	}

	// Dovecot's own POP3 over TLS serves the same mailbox.
	srv.Append(t, user, "INBOX", []byte("Subject: pop\r\n\r\nhello\r\n"))
	pc, err := tls.Dial("tcp", srv.POP3SAddr, srv.TLSConfig())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	line := pop3Lines(t, pc)
	line("")
	line("USER " + user)
	if l := line("PASS " + srv.Password); !strings.HasPrefix(l, "+OK") {
		t.Fatal(l)
	}
	if l := line("STAT"); !strings.HasPrefix(l, "+OK 1 ") {
		t.Fatal(l)
	}
	line("QUIT")
}

func TestWithoutCapabilities(t *testing.T) {
	srv := dovecot.Start(t, dovecot.WithoutCapabilities("UIDPLUS", "MOVE"))
	c := srv.Client(t, dovecot.User(t))
	caps := c.Caps()
	if caps.Has(imap.CapUIDPlus) || caps.Has(imap.CapMove) {
		t.Fatalf("capabilities still advertised: %v", caps)
	}
	if !caps.Has(imap.CapIMAP4rev1) || !caps.Has(imap.CapIdle) {
		t.Fatalf("other capabilities lost: %v", caps)
	}
}

func TestMasterUserAndConfig(t *testing.T) {
	srv := dovecot.Start(t,
		dovecot.WithMasterUser("admin", "masterpw"),
		dovecot.WithConfig("login_greeting = hello from dovecottest"))
	user := dovecot.User(t)
	srv.Append(t, user, "INBOX", []byte("Subject: m\r\n\r\n"))

	c, err := imapclient.DialInsecure(srv.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(user+"*admin", "masterpw").Wait(); err != nil {
		t.Fatal(err)
	}
	data, err := c.Select("INBOX", nil).Wait()
	if err != nil || data.NumMessages != 1 {
		t.Fatalf("select as master: %v %+v", err, data)
	}
	bad, err := imapclient.DialInsecure(srv.IMAPAddr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if err := bad.Login(user+"*admin", "nope").Wait(); err == nil {
		t.Fatal("master login with a wrong password succeeded")
	}
	var imapErr *imap.Error
	_ = errors.As(err, &imapErr)
}

func TestFillMaildir(t *testing.T) {
	srv := dovecot.Start(t)
	user := dovecot.User(t)
	srv.FillMaildir(t, user, 100, func(i int) []byte {
		return []byte("Subject: filled\r\n\r\n" + strings.Repeat("x", i) + "\r\n")
	})
	c := srv.Client(t, user)
	data, err := c.Select("INBOX", nil).Wait()
	if err != nil || data.NumMessages != 100 {
		t.Fatalf("select: %v %+v", err, data)
	}
}

func TestParallelServers(t *testing.T) {
	for i := range 3 {
		t.Run(string(rune('a'+i)), func(t *testing.T) {
			t.Parallel()
			srv := dovecot.Start(t)
			srv.Append(t, dovecot.User(t), "INBOX", []byte("Subject: p\r\n\r\n"))
		})
	}
}

// TestLaunchRawConfig: Launch outside a test's control, as cmd/popbench
// runs its Dovecots: a directory of the caller's (kept by Close), the
// caller's own configuration with one POP3 listener, PID while running, and
// WriteMaildir with virtual sizes.
func TestLaunchRawConfig(t *testing.T) {
	needDovecot(t)
	// A directory the user mail can traverse (t.TempDir's is root's alone).
	parent, err := testenv.ServerDir("dvtraw")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(parent) })
	dir := filepath.Join(parent, "raw")
	const password = "rawpass"
	render := func(dir string, port int) string {
		return strings.Join([]string{
			"protocols = pop3",
			"listen = 127.0.0.1",
			`base_dir = "` + dir + `/run"`,
			`state_dir = "` + dir + `/state"`,
			`log_path = "` + dir + `/dovecot.log"`,
			`instance_name = "dovecottest-raw-` + filepath.Base(filepath.Dir(dir)) + `"`,
			"disable_plaintext_auth = no",
			"auth_failure_delay = 0",
			"first_valid_uid = 8",
			"ssl = no",
			"mail_location = maildir:~/Maildir",
			"passdb {\n  driver = static\n  args = password=" + password + "\n}",
			"userdb {\n  driver = static\n  args = uid=8 gid=8 home=" + dir + "/home/%u\n}",
			"service pop3-login {\n  inet_listener pop3 {\n    port = " + strconv.Itoa(port) + "\n  }\n  inet_listener pop3s {\n    port = 0\n  }\n}",
		}, "\n") + "\n"
	}
	if _, err := dovecot.Launch(dovecot.WithRawConfig("pop3", render), dovecot.WithTLS()); err == nil {
		t.Fatal("WithRawConfig and WithTLS together were accepted")
	}
	srv, err := dovecot.Launch(dovecot.WithDir(dir), dovecot.WithPassword(password), dovecot.WithRawConfig("pop3", render))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Dovecot log:\n%s", srv.Log())
		}
	})
	if srv.Dir != dir || srv.IMAPAddr != "" || srv.POP3Addr == "" || srv.Password != password || srv.PID() == 0 {
		t.Fatalf("server: %+v, PID %d", srv, srv.PID())
	}
	user := dovecot.User(t)
	msg := func(i int) []byte { return []byte("Subject: raw\r\n\r\n" + strings.Repeat("y", i) + "\r\n") }
	if err := srv.WriteMaildir(user, 3, msg, true); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(srv.Maildir(user), "cur", "*,W=*"))
	if len(names) != 3 {
		t.Fatalf("maildir files with W=: %v", names)
	}

	c, err := net.DialTimeout("tcp", srv.POP3Addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line := pop3Lines(t, c)
	line("")
	line("USER " + user)
	if l := line("PASS " + password); !strings.HasPrefix(l, "+OK") {
		t.Fatal(l)
	}
	want := 0
	for i := range 3 {
		want += len(msg(i))
	}
	if l := line("STAT"); l != fmt.Sprintf("+OK 3 %d\r\n", want) {
		t.Fatalf("STAT: %q, want 3 messages of %d octets", l, want)
	}
	line("QUIT")

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if srv.PID() != 0 {
		t.Fatal("PID after Close")
	}
	if _, err := os.Stat(filepath.Join(dir, "dovecot.conf")); err != nil {
		t.Fatalf("Close removed the caller's directory: %v", err)
	}
}

// TestLaunchClose: Close stops Dovecot and removes the directory Launch made.
func TestLaunchClose(t *testing.T) {
	needDovecot(t)
	srv, err := dovecot.Launch()
	if err != nil {
		t.Fatal(err)
	}
	c, err := imapclient.DialInsecure(srv.IMAPAddr, nil)
	if err != nil {
		srv.Close()
		t.Fatal(err)
	}
	c.Close()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(srv.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s after Close: %v", srv.Dir, err)
	}
}

// needDovecot is Start's check, for tests that call Launch.
func needDovecot(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(dovecot.DovecotBin); err != nil || os.Geteuid() != 0 {
		testenv.Unavailable(t, "dovecot: Launch needs %s and root (%v)", dovecot.DovecotBin, err)
	}
}

// pop3Lines returns a function that sends a POP3 command on c (none for
// "") and returns the next line.
func pop3Lines(t *testing.T, c net.Conn) func(cmd string) string {
	r := bufio.NewReader(c)
	return func(cmd string) string {
		t.Helper()
		if cmd != "" {
			c.Write([]byte(cmd + "\r\n"))
		}
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
}
