package cyrus

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv"
)

// DefaultDir is where the harness looks for the extracted cyrus-imapd and
// cyrus-common packages unless the environment variable DirEnv names
// another directory.
const (
	DefaultDir = "/opt/popbridge-test/cyrus"
	DirEnv     = "POPBRIDGE_CYRUS_DIR"
)

// DefaultPassword is every user's password unless WithPassword says otherwise.
const DefaultPassword = "cyrustest-secret"

// AdminUser is the Cyrus admin (imapd.conf's admins) that creates and
// deletes the users' mailboxes.
const AdminUser = "cyrusadmin"

// saslpasswd2Bin is from the installed Debian package sasl2-bin.
const saslpasswd2Bin = "/usr/sbin/saslpasswd2"

// Paths inside the extracted packages.
const (
	masterPath = "usr/lib/cyrus/bin/master"
	imapdPath  = "usr/lib/cyrus/bin/imapd"
	pop3dPath  = "usr/lib/cyrus/bin/pop3d" // from cyrus-pop3d, for WithPOP3
	libPath    = "usr/lib/x86_64-linux-gnu"
)

const (
	startTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
)

// Option changes how Start configures Cyrus.
type Option func(*options)

type options struct {
	password string
	settings [][2]string
	pop3     bool
}

// WithPassword sets the password that every user has (default DefaultPassword).
func WithPassword(password string) Option { return func(o *options) { o.password = password } }

// WithSetting adds an imapd.conf option or replaces the harness's value,
// e.g. WithSetting("suppress_capabilities", "MOVE") or
// WithSetting("altnamespace", "no") (Debian's default).
func WithSetting(name, value string) Option {
	return func(o *options) { o.settings = append(o.settings, [2]string{name, value}) }
}

// WithPOP3 also starts Cyrus's own pop3d (Debian's cyrus-pop3d, unpacked
// next to cyrus-imapd) on a loopback port, POP3Addr, serving the same
// mailboxes: what a site moving from Cyrus's POP3 to popbridge compares
// with. Its UIDLs follow imapd.conf's uidl_format (WithSetting).
func WithPOP3() Option { return func(o *options) { o.pop3 = true } }

// Server is one running Cyrus IMAP server. Its methods may be called from
// several goroutines.
type Server struct {
	IMAPAddr string // host:port, plain IMAP
	POP3Addr string // host:port, plain POP3 (USER/PASS); "" without WithPOP3
	Password string // every user's password
	Dir      string // private directory: imapd.conf, cyrus.conf, conf, spool, run, sasldb2
	LogFile  string // master's standard output and error

	adminPassword string
	bin           string // the extracted packages
	proc          *testenv.Isolated

	mu sync.Mutex // serialises sasldb writes
}

// Start runs a new Cyrus for the test and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{password: DefaultPassword}
	for _, opt := range opts {
		opt(&o)
	}
	bin := requireCyrus(t, o.pop3)
	dir, err := testenv.ServerDir("cyrus", "conf", "spool", "run")
	if err != nil {
		t.Fatalf("cyrus: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("cyrus: remove %s: %v", dir, err)
		}
	})
	var rnd [12]byte
	rand.Read(rnd[:])
	s := &Server{
		Password:      o.password,
		Dir:           dir,
		LogFile:       filepath.Join(dir, "cyrus.log"),
		adminPassword: hex.EncodeToString(rnd[:]),
		bin:           bin,
	}
	if err := s.setPassword(AdminUser, s.adminPassword); err != nil {
		t.Fatalf("cyrus: %v", err)
	}
	// Registered after the directory's removal, so it runs before it.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("cyrus: log (%s):\n%s", s.LogFile, s.Log())
		}
		if err := s.stop(); err != nil {
			t.Errorf("cyrus: %v", err)
		}
	})
	for attempt := 1; ; attempt++ {
		addr, err := testenv.FreeAddr("127.0.0.1")
		if err != nil {
			t.Fatalf("cyrus: %v", err)
		}
		s.IMAPAddr = addr
		if o.pop3 {
			if s.POP3Addr, err = testenv.FreeAddr("127.0.0.1"); err != nil {
				t.Fatalf("cyrus: %v", err)
			}
		}
		if err := s.writeConfig(o.settings); err != nil {
			t.Fatalf("cyrus: %v", err)
		}
		logStart := s.logSize()
		err = s.launch()
		if err == nil {
			return s
		}
		if attempt < 5 && strings.Contains(s.logSince(logStart), "in use") {
			t.Logf("cyrus: %v; retrying with another port", err)
			continue
		}
		t.Fatalf("cyrus: start: %v\nlog:\n%s", err, s.Log())
	}
}

// requireCyrus returns the extracted packages' tree. It skips the test when
// something is missing, or fails it when the environment variable CI is set.
func requireCyrus(t testing.TB, pop3 bool) string {
	t.Helper()
	fail := func(format string, args ...any) { t.Helper(); testenv.Unavailable(t, format, args...) }
	bin := os.Getenv(DirEnv)
	if bin == "" {
		bin = DefaultDir
	}
	if pop3 {
		if _, err := os.Stat(filepath.Join(bin, pop3dPath)); err != nil {
			fail("cyrus: %v: unpack cyrus-pop3d with `apt-get download cyrus-pop3d && dpkg -x cyrus-pop3d_*.deb %s` (see the package doc)", err, bin)
		}
	}
	for _, p := range []string{filepath.Join(bin, masterPath), filepath.Join(bin, imapdPath), filepath.Join(bin, libPath, "libcyrus_imap.so.0")} {
		if _, err := os.Stat(p); err != nil {
			fail("cyrus: %v: unpack cyrus-imapd and cyrus-common with `apt-get download cyrus-imapd cyrus-common && dpkg -x` into %s (see the package doc)", err, bin)
		}
	}
	if _, err := os.Stat(saslpasswd2Bin); err != nil {
		fail("cyrus: %v: install sasl2-bin libsasl2-modules libclamav12 libical3 libxapian30 libzephyr4 (see the package doc)", err)
	}
	if os.Geteuid() != 0 {
		fail("cyrus: running Cyrus for tests needs root (a private PID namespace; mail is stored as the user mail)")
	}
	return bin
}

// writeConfig writes imapd.conf and cyrus.conf for s.IMAPAddr (and
// s.POP3Addr when set).
func (s *Server) writeConfig(settings [][2]string) error {
	d := s.Dir
	conf := [][2]string{
		{"configdirectory", d + "/conf"},
		{"partition-default", d + "/spool"},
		{"defaultpartition", "default"},
		{"proc_path", d + "/run/proc"},
		{"mboxname_lockpath", d + "/run/lock"},
		{"lmtpsocket", d + "/run/lmtp"},
		{"idlesocket", d + "/run/idle"},
		{"notifysocket", d + "/run/notify"},
		{"idlemethod", "poll"},
		{"admins", AdminUser},
		{"cyrus_user", "mail"},
		{"cyrus_group", "mail"},
		{"allowplaintext", "yes"},
		{"sasl_pwcheck_method", "auxprop"},
		{"sasl_auxprop_plugin", "sasldb"},
		{"sasl_sasldb_path", d + "/sasldb2"},
		{"sasl_mech_list", "PLAIN LOGIN"},
		{"altnamespace", "yes"},
		{"unixhierarchysep", "no"},
		{"hashimapspool", "true"},
		{"delete_mode", "immediate"},
		{"umask", "077"},
	}
	// Cyrus refuses an option given twice: a setting replaces the default.
	for _, kv := range settings {
		if kv[0] == "" || strings.ContainsAny(kv[0], "\n: ") || strings.Contains(kv[1], "\n") {
			return fmt.Errorf("bad setting %q: %q", kv[0], kv[1])
		}
		i := slices.IndexFunc(conf, func(c [2]string) bool { return c[0] == kv[0] })
		if i < 0 {
			conf = append(conf, kv)
		} else {
			conf[i] = kv
		}
	}
	var b strings.Builder
	for _, kv := range conf {
		fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
	}
	var services strings.Builder
	service := func(name, path, addr string) {
		fmt.Fprintf(&services, "  %s cmd=\"%s -C %s\" listen=\"%s\" prefork=0 maxchild=200\n",
			name, filepath.Join(s.bin, path), filepath.Join(d, "imapd.conf"), addr)
	}
	service("imap", imapdPath, s.IMAPAddr)
	if s.POP3Addr != "" {
		service("pop3", pop3dPath, s.POP3Addr)
	}
	cyrusConf := "SERVICES {\n" + services.String() + "}\n"
	if err := os.WriteFile(filepath.Join(d, "imapd.conf"), []byte(b.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d, "cyrus.conf"), []byte(cyrusConf), 0o644); err != nil {
		return err
	}
	for _, sub := range []string{"conf", "spool", "run"} {
		if err := os.Chown(filepath.Join(d, sub), testenv.MailUID, testenv.MailGID); err != nil {
			return err
		}
	}
	return nil
}

// setPassword adds user to the sasldb, or changes its password.
func (s *Server) setPassword(user, password string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	db := filepath.Join(s.Dir, "sasldb2")
	cmd := exec.Command(saslpasswd2Bin, "-f", db, "-p", "-c", user)
	cmd.Stdin = strings.NewReader(password)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("saslpasswd2 %s: %w: %s", user, err, out)
	}
	return os.Chown(db, testenv.MailUID, testenv.MailGID)
}

// launch starts master in its own PID namespace and waits until Cyrus greets.
func (s *Server) launch() error {
	logf, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(filepath.Join(s.bin, masterPath),
		"-C", filepath.Join(s.Dir, "imapd.conf"),
		"-M", filepath.Join(s.Dir, "cyrus.conf"),
		"-p", filepath.Join(s.Dir, "run", "master.pid"),
		"-D")
	cmd.Dir = s.Dir
	cmd.Env = []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"LD_LIBRARY_PATH=" + filepath.Join(s.bin, libPath),
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// master is PID 1 of its own PID namespace: nothing outlives it.
	ready := func() bool {
		return testenv.Greets(s.IMAPAddr, "* OK") && (s.POP3Addr == "" || testenv.Greets(s.POP3Addr, "+OK"))
	}
	proc, err := testenv.StartIsolated(cmd, ready, startTimeout)
	if err != nil {
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

// Log returns what Cyrus master has written so far (Cyrus logs to syslog;
// see the package doc).
func (s *Server) Log() string {
	return s.logSince(0)
}

func (s *Server) logSize() int64 {
	fi, err := os.Stat(s.LogFile)
	if err != nil {
		return 0
	}
	return fi.Size()
}

func (s *Server) logSince(off int64) string {
	f, err := os.Open(s.LogFile)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	data, _ := io.ReadAll(f)
	return string(data)
}
