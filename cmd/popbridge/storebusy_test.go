package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/uidmap/boltstore"
)

// holdLocked makes another process (flock(1)) hold an exclusive lock on
// path, as a second popbridge serving the same bolt file would, until the
// test ends.
func holdLocked(t *testing.T, path string) {
	t.Helper()
	if _, err := exec.LookPath("flock"); err != nil {
		if os.Getenv("CI") != "" { // util-linux is essential on Debian
			t.Fatal("flock(1) (util-linux) is not installed")
		}
		t.Skip("flock(1) (util-linux) is not installed")
	}
	cmd := exec.Command("flock", "-x", path, "sh", "-c", "echo locked; read x")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Closing stdin ends "read", so the shell and flock exit by themselves.
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("flock: %q, %v", line, err)
	}
}

// TestServeStateFileBusy: another process holds the bolt state file.
// boltstore.Open gives up after its one-second timeout with ErrBusy,
// and `popbridge serve` exits 1 with a message naming the file and the
// reason, without listening: two processes never share a bolt file.
func TestServeStateFileBusy(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	holdLocked(t, path)

	start := time.Now()
	if s, err := boltstore.Open(path); !errors.Is(err, boltstore.ErrBusy) {
		if err == nil {
			s.Close()
		}
		t.Fatalf("boltstore.Open of a file another process holds: %v, want ErrBusy", err)
	}
	t.Logf("boltstore.Open: ErrBusy after %v", time.Since(start).Round(time.Millisecond))

	addr := freeAddr(t)
	cfgPath := filepath.Join(dir, "config.yaml")
	cfg := fmt.Sprintf("listeners:\n  - address: %q\nupstream:\n  address: \"127.0.0.1:1\"\n  tls: none\nstate:\n  path: %q\n", addr, path)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	start = time.Now()
	code := run(ctx, []string{"serve", "-config", cfgPath}, &stdout, &stderr)
	msg := strings.TrimSpace(stderr.String())
	if code != 1 || !strings.Contains(msg, "in use by another process") || !strings.Contains(msg, path) {
		t.Fatalf("popbridge serve with the state file held elsewhere: exit %d, %q", code, msg)
	}
	if ctx.Err() != nil {
		t.Fatal("serve ran until the test's deadline")
	}
	t.Logf("popbridge serve: exit %d after %v: %s", code, time.Since(start).Round(time.Millisecond), msg)
	if c, err := net.Dial("tcp", addr); err == nil {
		c.Close()
		t.Fatal("serve left a listener open")
	}
}
