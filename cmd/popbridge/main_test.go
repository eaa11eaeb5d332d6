package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/demo"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/e2e"
)

// requireCommand finds a real client program: missing, it fails the test in
// CI (which installs it) and skips it elsewhere.
func requireCommand(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is not installed; .ci/run installs it", name)
		}
		t.Skipf("%s is not installed (apt-get install %s)", name, name)
	}
	return path
}

func curl(t *testing.T, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(requireCommand(t, "curl"), append([]string{"-sS", "--max-time", "30"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("curl %v: %v: %s", args, err, stderr.String())
	}
	return out
}

// startRun runs the command line in the background until the test ends and
// returns what it prints as it prints it.
func startRun(t *testing.T, args ...string) (lines <-chan string, stderr *syncBuffer) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	stderr = &syncBuffer{}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, args, pw, stderr)
		pw.Close()
	}()
	ch := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			ch <- sc.Text()
		}
		close(ch)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("popbridge %v exited %d: %s", args, code, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("popbridge %v did not stop after its context ended", args)
		}
	})
	return ch, stderr
}

func TestDemoServesSampleMessages(t *testing.T) {
	lines, stderr := startRun(t, "demo", "-listen", "127.0.0.1:0")
	addrRE := regexp.MustCompile(`POP3:\s+(\S+)`)
	var addr string
	timeout := time.After(20 * time.Second)
	for addr == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatalf("demo ended before printing its address: %s", stderr.String())
			}
			if m := addrRE.FindStringSubmatch(line); m != nil {
				addr = m[1]
			}
		case <-timeout:
			t.Fatal("demo printed no POP3 address")
		}
	}
	msgs := demo.Messages()
	if len(msgs) < 5 {
		t.Fatalf("the demo has %d sample messages, want at least 5", len(msgs))
	}
	// The exact command the demo prints: curl -s pop3://demo:demo@ADDR/1
	if got := curl(t, fmt.Sprintf("pop3://demo:demo@%s/1", addr)); !bytes.Equal(got, msgs[0]) {
		t.Fatalf("curl /1 = %q, want the first sample message", got)
	}
	if got := curl(t, fmt.Sprintf("pop3://demo:demo@%s/4", addr)); !bytes.Equal(got, msgs[3]) {
		t.Fatalf("curl /4 (dot-stuffed lines) = %q, want %q", got, msgs[3])
	}
	list := curl(t, fmt.Sprintf("pop3://demo:demo@%s/", addr))
	if n := strings.Count(string(list), "\n"); n != len(msgs) {
		t.Fatalf("curl LIST gave %d lines, want %d: %q", n, len(msgs), list)
	}
}

// The log buffer and polling are e2e's, shared with internal/daemon's tests.
type syncBuffer = e2e.SyncBuffer

var waitFor = e2e.WaitFor

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	return dovecot.FreeAddr(t, "127.0.0.1")
}

func waitListening(t *testing.T, addr string, stderr *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("popbridge never listened on %s: %s", addr, stderr.String())
}

// TestServeWithCurl runs `popbridge serve` from a config file in front of a
// real Dovecot and reads the mailbox with curl, a real POP3 client.
func TestServeWithCurl(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	msgs := [][]byte{
		[]byte("Subject: one\r\n\r\nfirst\r\n"),
		[]byte("Subject: two\r\n\r\n.\r\n..dots\r\n"),
		[]byte("Subject: three\r\n\r\nno final newline"),
	}
	for _, m := range msgs {
		dv.Append(t, user, "INBOX", m)
	}
	addr := freeAddr(t)
	cfgPath := filepath.Join(t.TempDir(), "config.yaml")
	cfg := fmt.Sprintf(`listeners:
  - address: %q
upstream:
  address: %q
  tls: none
state:
  path: %q
log:
  level: debug
shutdown_grace: 2s
`, addr, dv.IMAPAddr, filepath.Join(t.TempDir(), "state.db"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	_, stderr := startRun(t, "serve", "-config", cfgPath)
	waitListening(t, addr, stderr)

	base := fmt.Sprintf("pop3://%s:%s@%s/", user, dv.Password, addr)
	list := curl(t, base)
	if want := fmt.Sprintf("1 %d\r\n2 %d\r\n3 %d\r\n", len(msgs[0]), len(msgs[1]), len(msgs[2])); string(list) != want {
		t.Fatalf("curl LIST = %q, want %q", list, want)
	}
	for i, m := range msgs {
		got := curl(t, fmt.Sprintf("%s%d", base, i+1))
		want := m
		if !bytes.HasSuffix(m, []byte("\r\n")) {
			want = append(append([]byte(nil), m...), "\r\n"...)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("curl /%d = %q, want %q", i+1, got, want)
		}
	}
	// curl -X DELE /2 deletes message 2 (curl QUITs cleanly afterwards).
	curl(t, "-X", "DELE", "-I", base+"2") // -I: DELE has no multi-line answer
	list = curl(t, base)
	if strings.Count(string(list), "\n") != 2 {
		t.Fatalf("after DELE 2 and QUIT, LIST = %q", list)
	}
	if strings.Contains(stderr.String(), dv.Password) {
		t.Fatal("the password appeared in popbridge's log")
	}
}

func TestCheckConfig(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	os.WriteFile(good, []byte("upstream:\n  address: imap.example.net:993\nstate:\n  path: /tmp/x.db\n  dsn: postgres://popbridge:hunter2@db/popbridge\n"), 0o600)
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"check-config", "-config", good}, &out, &errOut); code != 0 {
		t.Fatalf("good config: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(out.String(), "address: imap.example.net:993") || strings.Contains(out.String(), "hunter2") {
		t.Fatalf("check-config output must show the config with secrets redacted:\n%s", out.String())
	}

	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("upstream:\n  address: imap.example.net:993\npolicy:\n  on_dele: shred\nstate:\n  path: /tmp/x.db\n"), 0o600)
	out.Reset()
	errOut.Reset()
	if code := run(context.Background(), []string{"check-config", "-config", bad}, &out, &errOut); code == 0 {
		t.Fatal("a bad config passed check-config")
	}
	if !strings.Contains(errOut.String(), "policy.on_dele (line 4)") || !strings.Contains(errOut.String(), "shred") {
		t.Fatalf("the error must name key, line and value: %s", errOut.String())
	}
}

func TestVersionAndUsage(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"version"}, &out, &errOut); code != 0 || !strings.HasPrefix(out.String(), "popbridge ") {
		t.Fatalf("version: %d %q", code, out.String())
	}
	if code := run(context.Background(), []string{"frobnicate"}, &out, &errOut); code != 2 {
		t.Fatalf("unknown command: exit %d, want 2", code)
	}
}
