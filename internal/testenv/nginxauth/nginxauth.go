package nginxauth

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/popbridge/popbridge/internal/testenv"
)

//go:embed service.py
var script []byte

// Key is the shared secret the service expects in X-Auth-Key (nginx's
// auth_http_header); a request without it is answered with an error.
const Key = "s3cret-hook-key"

// User is one user of the service's table. Pass is the password it
// accepts; the other fields say how it answers.
type User struct {
	Pass         string `json:"pass,omitempty"`
	Server       string `json:"server,omitempty"`        // Auth-Server
	Port         int    `json:"port,omitempty"`          // Auth-Port
	User         string `json:"user,omitempty"`          // Auth-User: the login rewritten
	PassUpstream string `json:"pass_upstream,omitempty"` // Auth-Pass: the password rewritten
	Refuse       string `json:"refuse,omitempty"`        // Auth-Status: this text
	Wait         int    `json:"wait,omitempty"`          // Auth-Wait with Refuse
	Sleep        int    `json:"sleep,omitempty"`         // seconds before answering
	Garbage      bool   `json:"garbage,omitempty"`       // a 500 without Auth-Status
	WaitFirst    int    `json:"wait_first,omitempty"`    // first answer: Auth-Status: WAIT
}

// Service is a running service.
type Service struct {
	URL   string // http://127.0.0.1:port/mail-auth
	table string
	log   string
}

// Start runs a service for users until the test ends. Users not in the
// table are refused with "Invalid login or password" and Auth-Wait: 1,
// and so is a wrong password.
func Start(t testing.TB, users map[string]User) *Service {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		testenv.Unavailable(t, "nginxauth: python3 is needed: %v", err)
	}
	dir := t.TempDir()
	s := &Service{table: filepath.Join(dir, "table.json"), log: filepath.Join(dir, "requests.jsonl")}
	path := filepath.Join(dir, "service.py")
	if err := os.WriteFile(path, script, 0o600); err != nil {
		t.Fatal(err)
	}
	s.SetUsers(t, users)
	cmd := exec.Command(python, path, s.table, s.log)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	port, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("nginxauth: the service did not start: %v", err)
	}
	s.URL = "http://127.0.0.1:" + strings.TrimSpace(port) + "/mail-auth"
	return s
}

// SetUsers replaces the table; the next request reads it.
func (s *Service) SetUsers(t testing.TB, users map[string]User) {
	t.Helper()
	b, err := json.Marshal(map[string]any{"key": Key, "users": users})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.table+".new", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(s.table+".new", s.table); err != nil {
		t.Fatal(err)
	}
}

// Requests returns the headers of every request so far, in order, as
// the service received them.
func (s *Service) Requests(t testing.TB) []map[string]string {
	t.Helper()
	b, err := os.ReadFile(s.log)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []map[string]string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		m := map[string]string{}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("nginxauth: %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}
