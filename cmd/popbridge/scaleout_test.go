package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/pop3/pop3client"
)

// scaleInstance is one `popbridge serve` process of a scale-out test: a
// real process, so that a test can SIGKILL it.
type scaleInstance struct {
	Addr   string
	cmd    *exec.Cmd
	stderr *syncBuffer // its log (JSON lines)
}

// scaleOptions are the config keys the scale-out tests vary.
type scaleOptions struct {
	onDele    string        // policy.on_dele; expunge if empty
	lock      string        // policy.lock; exclusive if empty
	lockLease time.Duration // state.lock_lease; 2s if 0
}

// startInstances runs n `popbridge serve` processes in front of dv, all with
// the same config on one fresh PostgreSQL database (state.driver: postgres),
// as behind a load balancer, and stops them when the test ends.
func startInstances(t *testing.T, dv *dovecot.Server, n int, o scaleOptions) []*scaleInstance {
	t.Helper()
	if o.onDele == "" {
		o.onDele = "expunge"
	}
	if o.lock == "" {
		o.lock = "exclusive"
	}
	if o.lockLease == 0 {
		o.lockLease = 2 * time.Second
	}
	dsn := postgres.DSN(t)
	bin := buildBinary(t)
	out := make([]*scaleInstance, n)
	for i := range out {
		inst := &scaleInstance{Addr: freeAddr(t), stderr: &syncBuffer{}}
		cfgPath := filepath.Join(t.TempDir(), "config.yaml")
		cfg := fmt.Sprintf("listeners:\n  - address: %q\nupstream:\n  address: %q\n  tls: none\n"+
			"policy:\n  on_dele: %s\n  lock: %s\nstate:\n  driver: postgres\n  dsn: %q\n  lock_lease: %s\n"+
			"shutdown_grace: 1s\n",
			inst.Addr, dv.IMAPAddr, o.onDele, o.lock, dsn, o.lockLease)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		inst.cmd = exec.Command(bin, "serve", "-config", cfgPath)
		inst.cmd.Stderr = inst.stderr
		if err := inst.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			inst.cmd.Process.Kill()
			inst.cmd.Wait()
		})
		waitListening(t, inst.Addr, inst.stderr)
		out[i] = inst
	}
	return out
}

// kill ends the process with SIGKILL: no session is ended, no lock
// released.
func (s *scaleInstance) kill(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	s.cmd.Wait()
}

// login opens a POP3 session for user on the instance.
func (s *scaleInstance) login(t *testing.T, user, password string) (*pop3client.Client, error) {
	t.Helper()
	c, err := pop3client.Dial(s.Addr)
	if err != nil {
		t.Fatalf("connect to %s: %v", s.Addr, err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := c.Login(user, password); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// logged counts the log lines of the instance that contain msg.
func (s *scaleInstance) logged(msg string) int {
	return strings.Count(s.stderr.String(), msg)
}

// uidlsOf lists the UIDLs of an open session, in message order.
func uidlsOf(c *pop3client.Client) ([]string, error) {
	entries, err := c.Listing("UIDL")
	if err != nil {
		return nil, err
	}
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Value)
	}
	return out, nil
}

// isInUse tells whether err is a -ERR [IN-USE] answer.
func isInUse(err error) bool {
	var resp *pop3client.ErrResponse
	return errors.As(err, &resp) && resp.Code() == "IN-USE"
}

// TestTwoInstancesShareState runs two `popbridge serve` processes on one
// Dovecot and one PostgreSQL (state.driver: postgres), as behind a load
// balancer: both serve the same UIDLs, a session on one keeps the user's
// maildrop from a second session on the other (-ERR [IN-USE]), and a
// message hidden through one (policy.on_dele: hide) is gone on the other.
func TestTwoInstancesShareState(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	for i := range 3 {
		dv.Append(t, user, "INBOX", fmt.Appendf(nil, "Subject: %d\r\nMessage-ID: <%d@scale.example>\r\n\r\nbody %d\r\n", i, i, i))
	}
	inst := startInstances(t, dv, 2, scaleOptions{onDele: "hide"})
	uidls := func(c *pop3client.Client) []string {
		t.Helper()
		u, err := uidlsOf(c)
		if err != nil {
			t.Fatal(err)
		}
		return u
	}

	first, err := inst[0].login(t, user, dv.Password)
	if err != nil {
		t.Fatal(err)
	}
	seen := uidls(first)
	if len(seen) != 3 {
		t.Fatalf("instance 1 lists %v, want 3 UIDLs", seen)
	}
	if _, err := inst[1].login(t, user, dv.Password); !isInUse(err) {
		t.Fatalf("a second session on instance 2 while instance 1 serves the user: %v, want -ERR [IN-USE]", err)
	}
	if err := first.Quit(); err != nil {
		t.Fatal(err)
	}

	second, err := inst[1].login(t, user, dv.Password)
	if err != nil {
		t.Fatalf("instance 2 after instance 1's session ended: %v", err)
	}
	if got := uidls(second); !reflect.DeepEqual(got, seen) {
		t.Fatalf("instance 2 serves UIDLs %v, instance 1 served %v", got, seen)
	}
	if _, err := second.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if err := second.Quit(); err != nil {
		t.Fatal(err)
	}

	third, err := inst[0].login(t, user, dv.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer third.Quit()
	if got := uidls(third); !reflect.DeepEqual(got, seen[1:]) {
		t.Fatalf("instance 1 after instance 2 hid message 1: %v, want %v", got, seen[1:])
	}
}
