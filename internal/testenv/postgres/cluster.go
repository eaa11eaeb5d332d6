package postgres

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

const (
	startTimeout = 30 * time.Second
	stopTimeout  = 10 * time.Second
)

// Cluster is one running PostgreSQL server.
type Cluster struct {
	Addr    string // 127.0.0.1:port
	Dir     string // temporary directory: data, socket, log
	LogFile string
	Version int // major version

	proc   *exec.Cmd
	exited chan struct{}
}

// AdminDSN is the DSN of the cluster's postgres database as its superuser,
// for creating and dropping databases.
func (c *Cluster) AdminDSN() string { return c.dsn("postgres") }

func (c *Cluster) dsn(database string) string {
	return "postgres://postgres@" + c.Addr + "/" + database + "?sslmode=disable"
}

// Log returns what the server logged so far.
func (c *Cluster) Log() string {
	data, _ := os.ReadFile(c.LogFile)
	return string(data)
}

// startCluster runs initdb and then postgres on a free loopback port,
// trying other ports when another process takes the chosen one first.
func startCluster() (*Cluster, error) {
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	who, err := serverUser()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "popbridge-postgres")
	if err != nil {
		return nil, err
	}
	c := &Cluster{Dir: dir, LogFile: filepath.Join(dir, "postgres.log"), Version: bins.version}
	if err := c.initdb(bins, who); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	for attempt := 1; ; attempt++ {
		err := c.launch(bins, who)
		if err == nil {
			return c, nil
		}
		if attempt < 5 && errors.Is(err, errAddrInUse) {
			continue
		}
		os.RemoveAll(dir)
		return nil, err
	}
}

// initdb creates the data directory, owned by the server's user, with
// trust authentication (the server listens on loopback only) and the C
// locale, which exists on every machine.
func (c *Cluster) initdb(bins binaries, who runAs) error {
	// The directory holds the data directory and the Unix socket: it must
	// be the server user's.
	if err := os.Chown(c.Dir, who.uid, who.gid); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	cmd := exec.Command(bins.initdb, "-D", filepath.Join(c.Dir, "data"), "-U", "postgres",
		"--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions")
	cmd.Dir = c.Dir
	cmd.Env = serverEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: who.cred, Pdeathsig: syscall.SIGKILL}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("postgres: %s: %w\n%s", bins.initdb, err, out)
	}
	return nil
}

// serverEnv is a minimal environment for initdb and postgres: none of the
// test's PG* variables, and a locale that always exists.
func serverEnv() []string {
	return []string{"PATH=/usr/bin:/bin", "LANG=C", "LC_ALL=C"}
}

var errAddrInUse = errors.New("address in use")

// launch starts postgres on a free port and waits until it accepts
// connections.
func (c *Cluster) launch(bins binaries, who runAs) error {
	c.Addr = freeAddr()
	_, port, _ := net.SplitHostPort(c.Addr)
	logf, err := os.OpenFile(c.LogFile, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(bins.postgres, "-D", filepath.Join(c.Dir, "data"),
		"-c", "listen_addresses=127.0.0.1",
		"-c", "port="+port,
		"-c", "unix_socket_directories="+c.Dir,
		// Throw-away data: nothing needs to survive a crash.
		"-c", "fsync=off",
		"-c", "synchronous_commit=off",
		"-c", "full_page_writes=off",
		"-c", "shared_buffers=32MB",
		"-c", "max_connections=200",
		"-c", "max_wal_size=1GB", // fewer checkpoints while tests create databases
		"-c", "log_min_messages=warning",
	)
	cmd.Dir = c.Dir
	cmd.Env = serverEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential: who.cred,
		Setpgid:    true,
		// If the test binary dies without stopping it, immediate shutdown.
		Pdeathsig: syscall.SIGQUIT,
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("postgres: run %s: %w", bins.postgres, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	c.proc, c.exited = cmd, exited

	deadline := time.Now().Add(startTimeout)
	for {
		select {
		case <-exited:
			log := c.Log()
			if strings.Contains(log, "could not bind") || strings.Contains(log, "already in use") {
				return fmt.Errorf("postgres: %s: %w", c.Addr, errAddrInUse)
			}
			return fmt.Errorf("postgres: postgres exited during start-up:\n%s", log)
		default:
		}
		if ready(c.AdminDSN()) {
			return nil
		}
		if time.Now().After(deadline) {
			c.stop()
			return fmt.Errorf("postgres: postgres did not accept connections on %s within %v:\n%s", c.Addr, startTimeout, c.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ready reports whether the server accepts a connection and a query
// (during start-up it refuses them: "the database system is starting up").
func ready(dsn string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return false
	}
	defer conn.Close(ctx)
	return conn.Ping(ctx) == nil
}

// stop shuts the server down (fast shutdown: sessions are ended, nothing
// waits for clients) and removes its directory.
func (c *Cluster) stop() error {
	var err error
	if c.proc != nil {
		c.proc.Process.Signal(syscall.SIGINT)
		select {
		case <-c.exited:
		case <-time.After(stopTimeout):
			syscall.Kill(-c.proc.Process.Pid, syscall.SIGKILL)
			<-c.exited
			err = fmt.Errorf("postgres: postgres did not stop within %v: killed", stopTimeout)
		}
	}
	if rmErr := os.RemoveAll(c.Dir); rmErr != nil && err == nil {
		err = rmErr
	}
	return err
}

// Ports come from below Linux's ephemeral range (32768-60999 by default),
// as in internal/testenv/dovecot: a port freed by a listen on ":0" is in that range, and
// any outgoing connection of a busy test run may take it before the server
// binds it.
const (
	portLow  = 12000
	portHigh = 32000
)

func freeAddr() string {
	for range 200 {
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(portLow+rand.IntN(portHigh-portLow)))
		l, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		l.Close()
		return addr
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(portLow+rand.IntN(portHigh-portLow)))
}
