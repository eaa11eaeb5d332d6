package postgres

import (
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// BinRoot is where Debian's postgresql-NN packages put their binaries, one
// directory per major version.
const BinRoot = "/usr/lib/postgresql"

// binaries are the programs of the highest PostgreSQL version installed.
type binaries struct {
	version  int
	initdb   string
	postgres string
}

// findBinaries looks for initdb and postgres under BinRoot/VERSION/bin and
// takes the highest version that has both.
func findBinaries() (binaries, error) {
	entries, err := os.ReadDir(BinRoot)
	if err != nil {
		return binaries{}, fmt.Errorf("no PostgreSQL under %s (%w): install it with `apt-get install postgresql`", BinRoot, err)
	}
	best := binaries{}
	for _, e := range entries {
		v, err := strconv.Atoi(e.Name())
		if err != nil || v <= best.version {
			continue
		}
		bin := filepath.Join(BinRoot, e.Name(), "bin")
		b := binaries{version: v, initdb: filepath.Join(bin, "initdb"), postgres: filepath.Join(bin, "postgres")}
		if isExecutable(b.initdb) && isExecutable(b.postgres) {
			best = b
		}
	}
	if best.version == 0 {
		return binaries{}, fmt.Errorf("no initdb and postgres in %s/*/bin: install PostgreSQL with `apt-get install postgresql`", BinRoot)
	}
	return best, nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0
}

// runAs is who initdb and postgres run as: the current user, or the system
// user postgres when the tests run as root, which PostgreSQL refuses.
type runAs struct {
	cred     *syscall.Credential // nil: the current user
	uid, gid int
}

func serverUser() (runAs, error) {
	if os.Geteuid() != 0 {
		return runAs{uid: os.Geteuid(), gid: os.Getegid()}, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return runAs{}, fmt.Errorf("tests run as root, and PostgreSQL refuses to: no system user postgres to run it as (%w); the postgresql package creates it", err)
	}
	uid, err1 := strconv.Atoi(u.Uid)
	gid, err2 := strconv.Atoi(u.Gid)
	if err1 != nil || err2 != nil {
		return runAs{}, fmt.Errorf("user postgres has uid %q, gid %q", u.Uid, u.Gid)
	}
	// No supplementary groups: root's would otherwise be inherited.
	return runAs{cred: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, uid: uid, gid: gid}, nil
}
