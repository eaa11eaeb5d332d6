package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3/pop3client"
)

// buildBinary builds popbridge once for tests that need a real process.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "popbridge")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func startProcess(t *testing.T, bin, cfgPath, addr string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	waitListening(t, addr, stderr)
	return cmd
}

// TestLockOfKilledProcessIsFreed: the process serving a session (and so
// holding its maildrop lock) is killed with SIGKILL; a new process on the
// same state file serves the user at once, with the same UIDLs, and its
// lock still keeps a second session out.
func TestLockOfKilledProcessIsFreed(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	dv.Append(t, user, "INBOX", []byte("Subject: a\r\n\r\na\r\n"))
	cfgPath, _, addr := stateEnv(t, dv)
	bin := buildBinary(t)

	p1 := startProcess(t, bin, cfgPath, addr)
	c1, err := pop3client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if err := c1.Login(user, dv.Password); err != nil {
		t.Fatal(err)
	}
	before, err := c1.Listing("UIDL")
	if err != nil {
		t.Fatal(err)
	}
	second, err := pop3client.Dial(addr)
	if err != nil {
		t.Fatal(err)
	}
	var resp *pop3client.ErrResponse
	if err := second.Login(user, dv.Password); !errors.As(err, &resp) || resp.Code() != "IN-USE" {
		t.Fatalf("second session while the first is open: %v, want -ERR [IN-USE]", err)
	}
	second.Close()

	if err := p1.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p1.Wait()

	startProcess(t, bin, cfgPath, addr)
	deadline := time.Now().Add(5 * time.Second)
	for {
		c2, err := pop3client.Dial(addr)
		if err != nil {
			t.Fatal(err)
		}
		err = c2.Login(user, dv.Password)
		if err == nil {
			after, err := c2.Listing("UIDL")
			if err != nil || len(after) != 1 || after[0] != before[0] {
				t.Fatalf("UIDLs after the restart %v (%v), before %v", after, err, before)
			}
			c2.Quit()
			return
		}
		c2.Close()
		if time.Now().After(deadline) {
			t.Fatalf("the killed process's lock was not freed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
