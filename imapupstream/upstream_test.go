package imapupstream

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
)

func TestUpstreamRestart(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	uid := e.append(t, msg("survives", "x"))
	c, _ := e.open(t, e.config(), nil)
	e.srv.Stop(t)
	start := time.Now()
	if _, err := c.Snapshot(context.Background()); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Snapshot with the upstream down: %v", err)
	}
	if _, err := c.Fetch(context.Background(), e.meta(uid)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Fetch after: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Fatalf("failing took %v", took)
	}
	// Down: a new login fails fast.
	if _, err := e.dialer(t, e.config(), nil).Login(context.Background(),
		Credentials{Username: e.user, Password: e.srv.Password}); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Login while down: %v", err)
	}
	e.srv.Restart(t)
	c2, _ := e.open(t, e.config(), nil)
	if data, err := e.fetchAll(t, c2, uid); err != nil || string(data) != msg("survives", "x") {
		t.Fatalf("after restart: %q %v", data, err)
	}
}

func TestUIDValidityChangeDovecot(t *testing.T) {
	t.Parallel()
	// Dovecot ends a session whose mailbox's UIDVALIDITY changes (BYE).
	e := newEnv(t)
	e.append(t, msg("a", "x"))
	c, mb := e.open(t, e.config(), nil)
	e.srv.Doveadm(t, "mailbox", "update", "-u", e.user, "--uid-validity", fmt.Sprint(mb.UIDValidity+1000), "INBOX")
	_, err := c.Snapshot(context.Background())
	if err == nil {
		// Dovecot noticed only now; the next command fails.
		_, err = c.Snapshot(context.Background())
	}
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("err = %v", err)
	}
	// A new session sees the new UIDVALIDITY.
	_, mb2 := e.open(t, e.config(), nil)
	if mb2.UIDValidity != mb.UIDValidity+1000 {
		t.Fatalf("UIDVALIDITY %d, want %d", mb2.UIDValidity, mb.UIDValidity+1000)
	}
}

func TestReselectUIDValidityChanged(t *testing.T) {
	n := 0
	addr := newFake(t, func(fc *fakeConn) {
		fc.send(fakeGreeting)
		fc.serve(func(tag, cmd, line string) bool {
			if cmd != "SELECT" {
				return false
			}
			n++
			fc.send(fmt.Sprintf("* 0 EXISTS\r\n* OK [UIDVALIDITY %d] ok\r\n%s OK [READ-WRITE] done\r\n", 100+n, tag))
			return true
		})
	})
	c := fakeLogin(t, fakeDialer(t, addr, 5*time.Second))
	mb, err := c.Select(context.Background())
	if err != nil || mb.UIDValidity != 101 {
		t.Fatalf("%v %+v", err, mb)
	}
	mb, err = c.Select(context.Background())
	if !errors.Is(err, ErrMailboxChanged) || mb == nil || mb.UIDValidity != 102 {
		t.Fatalf("reselect: %v %+v", err, mb)
	}
}

func TestWithoutCapabilitiesKeepsSTARTTLS(t *testing.T) {
	t.Parallel()
	// The harness' capability override must not hide STARTTLS or break TLS.
	e := newEnv(t, dovecot.WithTLS(), dovecot.WithoutCapabilities("UIDPLUS", "MOVE"))
	cfg := e.config()
	cfg.TLS, cfg.CAFile = TLSStartTLS, e.srv.CAFile
	c, _ := e.open(t, cfg, nil)
	if caps := c.Caps(); caps.UIDPlus || caps.Move {
		t.Fatalf("caps %+v", caps)
	}
}
