package testenv

import (
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestServerDir(t *testing.T) {
	dir, err := ServerDir("tenv", "run", "home")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if len(dir) > 40 {
		t.Errorf("%s: too long for socket paths", dir)
	}
	for _, d := range []string{dir, filepath.Join(dir, "run"), filepath.Join(dir, "home")} {
		fi, err := os.Stat(d)
		if err != nil || fi.Mode().Perm() != 0o755 {
			t.Errorf("%s: %v %v", d, fi, err)
		}
	}
	// PrepareDir again: what exists is fine.
	if err := PrepareDir(dir, "run", "state"); err != nil {
		t.Fatal(err)
	}
}

func TestFreeAddrAndGreets(t *testing.T) {
	addr, err := FreeAddr("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if Greets(addr, "* OK") {
		t.Fatal("greeting from a free port")
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("the free port %s: %v", addr, err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("* OK ready\r\n"))
			c.Close()
		}
	}()
	if !Greets(addr, "* OK") || Greets(addr, "+OK") {
		t.Fatal("Greets")
	}
}

func TestUserName(t *testing.T) {
	a, b := UserName(t), UserName(t)
	if a == b || !regexp.MustCompile(`^[a-z0-9-]+$`).MatchString(a) || !strings.HasPrefix(a, "testusername-") {
		t.Fatalf("%q, %q", a, b)
	}
}
