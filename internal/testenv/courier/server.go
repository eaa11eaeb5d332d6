package courier

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv"
)

// DefaultDir is where the harness looks for the extracted courier-imap
// package unless the environment variable DirEnv names another directory.
const (
	DefaultDir = "/opt/popbridge-test/courier-imap"
	DirEnv     = "POPBRIDGE_COURIER_DIR"
)

// DefaultPassword is every user's password unless WithPassword says otherwise.
const DefaultPassword = "couriertest-secret"

// Programs of the installed Debian packages courier-base, courier-authdaemon,
// courier-authlib-userdb.
const (
	authdaemondBin = "/usr/lib/courier/courier-authlib/authdaemond"
	couriertcpdBin = "/usr/sbin/couriertcpd"
	makeuserdbBin  = "/usr/sbin/makeuserdb"
	authuserdbLib  = "/usr/lib/courier-authlib/libauthuserdb.so.0"
)

// Programs inside the extracted courier-imap package.
const (
	imaploginPath = "usr/lib/courier/courier/imaplogin"
	imapdPath     = "usr/bin/imapd"
	imapdConfPath = "etc/courier/imapd"
)

// Programs inside the extracted courier-pop package, for WithPOP3.
const (
	pop3loginPath = "usr/lib/courier/courier/courierpop3login"
	pop3dPath     = "usr/lib/courier/courier/courierpop3d"
	pop3dConfPath = "etc/courier/pop3d"
)

const (
	startTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
)

// launchScript runs as PID 1 of private mount and PID namespaces. Courier's
// socket (/run/courier/authdaemon/socket) and configuration (/etc/courier:
// authdaemonrc, userdb.dat) are compiled-in paths, so the server's own
// directories are bind-mounted over them. It then starts authdaemond, with
// a POP3 port also couriertcpd for Courier's pop3d (reading Debian's pop3d
// settings like its init script does), reads Debian's imapd settings, and
// becomes couriertcpd for imapd.
// Arguments: $1 server directory, $2 courier-imap tree, $3 port, $4 POP3
// port or "".
const launchScript = `set -e
mkdir -p /run/courier/authdaemon
mount --bind "$1/etc" /etc/courier
mount --bind "$1/run" /run/courier/authdaemon
` + authdaemondBin + ` &
if [ -n "$4" ]; then
	(set -a
	. "$2/` + pop3dConfPath + `"
	. "$1/imapd.local"
	exec ` + couriertcpdBin + ` -address=127.0.0.1 -maxprocs="$MAXDAEMONS" -maxperip="$MAXPERIP" $TCPDOPTS \
		"$4" "$2/` + pop3loginPath + `" "$2/` + pop3dPath + `" "$MAILDIRPATH") &
fi
set -a
. "$2/` + imapdConfPath + `"
. "$1/imapd.local"
set +a
umask "$IMAP_UMASK"
exec ` + couriertcpdBin + ` -address=127.0.0.1 -maxprocs="$MAXDAEMONS" -maxperip="$MAXPERIP" $TCPDOPTS \
	"$3" "$2/` + imaploginPath + `" "$2/` + imapdPath + `" "$MAILDIRPATH"
`

// Option changes how Start configures Courier.
type Option func(*options)

type options struct {
	password string
	settings [][2]string
	pop3     bool
}

// WithPassword sets the password that every user has (default DefaultPassword).
func WithPassword(password string) Option { return func(o *options) { o.password = password } }

// WithSetting overrides a variable of Courier's imapd configuration file
// (e.g. "IMAP_CAPABILITY", "MAXPERIP"), after Debian's defaults are read;
// with WithPOP3, of its pop3d configuration file too.
func WithSetting(name, value string) Option {
	return func(o *options) { o.settings = append(o.settings, [2]string{name, value}) }
}

// WithPOP3 also starts Courier's own pop3d (Debian's courier-pop, unpacked
// next to courier-imap) on a loopback port, POP3Addr, serving the same
// maildirs: the old server a site moving from Courier's POP3 imports its
// UIDLs from.
func WithPOP3() Option { return func(o *options) { o.pop3 = true } }

// Server is one running Courier IMAP server with its own authdaemond. Its
// methods may be called from several goroutines.
type Server struct {
	IMAPAddr string // host:port, plain IMAP
	POP3Addr string // host:port, plain POP3 (USER/PASS); "" without WithPOP3
	Password string // every user's password
	Dir      string // private directory: etc (/etc/courier), run (the authdaemond socket), home
	LogFile  string // standard error of authdaemond, couriertcpd, imaplogin and imapd

	bin  string // the extracted courier-imap tree
	proc *testenv.Isolated

	mu      sync.Mutex // serialises userdb rebuilds
	dbMtime time.Time  // mtime given to the last userdb.dat
}

// Start runs a new Courier for the test and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{password: DefaultPassword}
	for _, opt := range opts {
		opt(&o)
	}
	bin := requireCourier(t, o.pop3)
	dir, err := testenv.ServerDir("courier", "etc", "run", "home")
	if err != nil {
		t.Fatalf("courier: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("courier: remove %s: %v", dir, err)
		}
	})
	s := &Server{
		Password: o.password,
		Dir:      dir,
		LogFile:  filepath.Join(dir, "courier.log"),
		bin:      bin,
	}
	if err := s.writeConfig(o.settings); err != nil {
		t.Fatalf("courier: %v", err)
	}
	// Registered after the directory's removal, so it runs before it.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("courier: log (%s):\n%s", s.LogFile, s.Log())
		}
		if err := s.stop(); err != nil {
			t.Errorf("courier: %v", err)
		}
	})
	for attempt := 1; ; attempt++ {
		addr, err := testenv.FreeAddr("127.0.0.1")
		if err != nil {
			t.Fatalf("courier: %v", err)
		}
		s.IMAPAddr = addr
		if o.pop3 {
			if s.POP3Addr, err = testenv.FreeAddr("127.0.0.1"); err != nil {
				t.Fatalf("courier: %v", err)
			}
		}
		err = s.launch()
		if err == nil {
			return s
		}
		if attempt < 5 && errors.Is(err, errAddrInUse) {
			t.Logf("courier: %v; retrying with another port", err)
			continue
		}
		t.Fatalf("courier: start: %v\nlog:\n%s", err, s.Log())
	}
}

// requireCourier returns the courier-imap tree. It skips the test when
// something is missing, or fails it when the environment variable CI is set.
func requireCourier(t testing.TB, pop3 bool) string {
	t.Helper()
	fail := func(format string, args ...any) { t.Helper(); testenv.Unavailable(t, format, args...) }
	bin := os.Getenv(DirEnv)
	if bin == "" {
		bin = DefaultDir
	}
	for _, p := range []string{filepath.Join(bin, imapdPath), filepath.Join(bin, imaploginPath), filepath.Join(bin, imapdConfPath)} {
		if _, err := os.Stat(p); err != nil {
			fail("courier: %v: unpack courier-imap with `apt-get download courier-imap && dpkg -x courier-imap_*.deb %s` (see the package doc)", err, bin)
		}
	}
	if pop3 {
		for _, p := range []string{filepath.Join(bin, pop3loginPath), filepath.Join(bin, pop3dPath), filepath.Join(bin, pop3dConfPath)} {
			if _, err := os.Stat(p); err != nil {
				fail("courier: %v: unpack courier-pop with `apt-get download courier-pop && dpkg -x courier-pop_*.deb %s` (see the package doc)", err, bin)
			}
		}
	}
	for _, p := range []string{authdaemondBin, couriertcpdBin, makeuserdbBin, authuserdbLib} {
		if _, err := os.Stat(p); err != nil {
			fail("courier: %v: install courier-base courier-authdaemon courier-authlib-userdb (see the package doc)", err)
		}
	}
	if os.Geteuid() != 0 {
		fail("courier: running Courier for tests needs root (private mount and PID namespaces; mail is stored as the user mail)")
	}
	return bin
}

var settingName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// writeConfig writes authdaemonrc and an empty userdb (the private
// /etc/courier) and imapd.local, the overrides of Debian's imapd settings.
func (s *Server) writeConfig(settings [][2]string) error {
	var local strings.Builder
	for _, kv := range settings {
		if !settingName.MatchString(kv[0]) {
			return fmt.Errorf("bad setting name %q", kv[0])
		}
		fmt.Fprintf(&local, "%s='%s'\n", kv[0], strings.ReplaceAll(kv[1], "'", `'\''`))
	}
	files := []struct {
		name string
		data string
		perm os.FileMode
	}{
		{"etc/authdaemonrc", "authmodulelist=\"authuserdb\"\ndaemons=2\n", 0o644},
		{"etc/userdb", "", 0o600}, // makeuserdb refuses group or world permissions
		{"imapd.local", local.String(), 0o644},
	}
	for _, f := range files {
		if err := os.WriteFile(filepath.Join(s.Dir, f.name), []byte(f.data), f.perm); err != nil {
			return err
		}
	}
	return nil
}

var errAddrInUse = errors.New("address in use")

// launch starts Courier in its own namespaces and waits until it greets.
func (s *Server) launch() error {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(s.IMAPAddr)
	pop3Port := ""
	if s.POP3Addr != "" {
		_, pop3Port, _ = net.SplitHostPort(s.POP3Addr)
	}
	cmd := exec.Command("/bin/sh", "-c", launchScript, "courier", s.Dir, s.bin, port, pop3Port)
	cmd.Dir = s.Dir
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		// imapd uses gamin, whose gam_server is shared per user and client
		// id: a private one lives and dies in this server's PID namespace.
		"GAM_CLIENT_ID=" + filepath.Base(s.Dir),
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// PID 1 of its own PID namespace (testenv.StartIsolated): nothing
	// outlives the script, not even daemons; private bind mounts.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS} // Go makes / private first
	socket := filepath.Join(s.Dir, "run", "socket")
	ready := func() bool {
		// authdaemond has made its socket, and Courier greets.
		_, err := os.Stat(socket)
		return err == nil && testenv.Greets(s.IMAPAddr, "* OK") &&
			(s.POP3Addr == "" || testenv.Greets(s.POP3Addr, "+OK"))
	}
	proc, err := testenv.StartIsolated(cmd, ready, startTimeout)
	if err != nil {
		out := s.logSince(logStart)
		if strings.Contains(out, "Address already in use") {
			err = fmt.Errorf("%w: %s", errAddrInUse, out)
		}
		return err
	}
	s.proc = proc
	return nil
}

// stop kills every process of the server and waits for them.
func (s *Server) stop() error {
	if s.proc == nil {
		return nil
	}
	p := s.proc
	s.proc = nil
	return p.Stop(stopTimeout)
}

// Log returns what Courier has logged so far.
func (s *Server) Log() string {
	return s.logSince(0)
}

func (s *Server) logSince(off int64) string {
	data, err := os.ReadFile(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	return string(data[min(off, int64(len(data))):])
}
