package dovecot_test

import (
	"bufio"
	"crypto/tls"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/goleak"

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
	r := bufio.NewReader(pc)
	line := func(cmd string) string {
		t.Helper()
		if cmd != "" {
			pc.Write([]byte(cmd + "\r\n"))
		}
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
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
