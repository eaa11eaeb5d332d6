package dovecot

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2/imapclient"

	"github.com/popbridge/popbridge/internal/testenv"
)

// Paths of the Debian binaries.
const (
	DovecotBin = "/usr/sbin/dovecot"
	DoveadmBin = "/usr/bin/doveadm"
)

// DefaultPassword is the password every user has unless WithPassword says otherwise.
const DefaultPassword = "dovecottest-secret"

const (
	startTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
	stopGrace    = 250 * time.Millisecond // Stop and Restart: let Dovecot say BYE
	cleanupGrace = 30 * time.Millisecond  // the end of the test: everything goes
)

// Option changes how Start and Launch configure Dovecot.
type Option func(*options)

type options struct {
	tls            bool
	pop3           bool
	withoutCaps    []string
	extra          []string
	password       string
	masterUser     string
	masterPassword string
	oauth2         bool
	introspection  *introspection                    // WithOAuth2Introspection
	dir            string                            // WithDir
	raw            func(dir string, port int) string // WithRawConfig
	rawProtocol    string                            // WithRawConfig: "imap" or "pop3"
	logf           func(format string, args ...any)  // Start: the test's log
}

// WithTLS generates a throw-away CA and a server certificate for 127.0.0.1,
// ::1 and localhost, sets ssl = yes, offers STARTTLS on the IMAP port and
// listens for implicit TLS on Server.IMAPSAddr (and Server.POP3SAddr with
// WithPOP3). Server.CACertPEM and Server.CAFile hold the CA certificate.
func WithTLS() Option { return func(o *options) { o.tls = true } }

// WithPOP3 also runs Dovecot's own POP3 server on Server.POP3Addr, serving the
// same mailboxes (to compare popbridge with it).
func WithPOP3() Option { return func(o *options) { o.pop3 = true } }

// WithoutCapabilities removes capabilities (e.g. "UIDPLUS", "MOVE") from what
// Dovecot advertises after login, through an explicit imap_capability list.
// Dovecot still accepts the commands: only the advertisement changes, which is
// what a client has to go by.
func WithoutCapabilities(caps ...string) Option {
	return func(o *options) { o.withoutCaps = append(o.withoutCaps, caps...) }
}

// WithConfig appends raw lines to the generated dovecot.conf.
func WithConfig(extra string) Option { return func(o *options) { o.extra = append(o.extra, extra) } }

// WithPassword sets the password that every user has (default DefaultPassword).
func WithPassword(password string) Option { return func(o *options) { o.password = password } }

// WithMasterUser adds a master user: it may log in as any user with SASL PLAIN
// (authzid = the user, authcid = master) or LOGIN "user*master".
func WithMasterUser(user, password string) Option {
	return func(o *options) { o.masterUser, o.masterPassword = user, password }
}

// WithDir puts the server's files in dir (made if missing; kept by Close)
// instead of a new directory under /tmp that Close removes.
func WithDir(dir string) Option { return func(o *options) { o.dir = dir } }

// WithRawConfig replaces the generated dovecot.conf by render's text, for
// one listener of protocol "imap" (Server.IMAPAddr, greeting "* OK") or
// "pop3" (Server.POP3Addr, "+OK"): render gets the server's directory and
// the free loopback port to listen on. The configuration must keep its
// base_dir, state_dir and homes in the directory, log to dovecot.log there
// (Server.Log) and have users' mail owned by the user mail; WithPassword
// only sets Server.Password. It cannot be combined with the options that
// change the generated configuration.
func WithRawConfig(protocol string, render func(dir string, port int) string) Option {
	return func(o *options) { o.rawProtocol, o.raw = protocol, render }
}

// Server is one running Dovecot. Its methods may be called from several
// goroutines.
type Server struct {
	IMAPAddr  string // host:port, plain IMAP (STARTTLS offered with WithTLS)
	IMAPSAddr string // host:port, implicit TLS; "" without WithTLS
	POP3Addr  string // host:port, Dovecot's POP3; "" without WithPOP3
	POP3SAddr string // host:port, Dovecot's POP3 with implicit TLS; "" unless WithPOP3 and WithTLS

	Password string // every user's password
	// MasterUser and MasterPassword are set with WithMasterUser.
	MasterUser, MasterPassword string

	Dir        string // private directory: config, sockets, state, log, homes
	ConfigFile string // dovecot.conf, for `dovecot -c` / `doveadm -c`
	LogFile    string

	CACertPEM []byte // the test CA certificate (WithTLS)
	CAFile    string // path of a file holding CACertPEM (WithTLS)

	// Capabilities is the explicit post-login capability list in force with
	// WithoutCapabilities; nil means Dovecot's default.
	Capabilities []string

	params    configParams
	raw       func(dir string, port int) string // WithRawConfig
	ownDir    bool                              // Dir was made by Launch: Close removes it
	tokenInfo *tokenInfo                        // WithOAuth2

	mu      sync.Mutex
	proc    *exec.Cmd
	exited  chan struct{}
	clients map[string]*imapclient.Client // for Append, per user
}

// Start runs a new Dovecot for the test and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	requireDovecot(t)
	s, err := Launch(append(opts[:len(opts):len(opts)], func(o *options) { o.logf = t.Logf })...)
	if err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	// Stop Dovecot when the test ends, and print its log first if the test
	// failed.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot: Dovecot log (%s):\n%s", s.LogFile, s.Log())
		}
		stopErr, removeErr := s.close(cleanupGrace)
		if stopErr != nil {
			t.Errorf("dovecot: %v", stopErr)
		}
		if removeErr != nil {
			t.Logf("dovecot: %v", removeErr)
		}
	})
	return s
}

// Launch runs a new Dovecot, as Start does but outside a test: it returns
// errors, and Close stops the server. It needs root and DovecotBin.
func Launch(opts ...Option) (*Server, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.password == "" {
		o.password = DefaultPassword
	}
	if strings.ContainsAny(o.password, " \t\r\n\"'") {
		return nil, fmt.Errorf("password %q must not contain spaces or quotes", o.password)
	}
	if o.raw != nil {
		if o.rawProtocol != "imap" && o.rawProtocol != "pop3" {
			return nil, fmt.Errorf("WithRawConfig: protocol %q, want imap or pop3", o.rawProtocol)
		}
		if o.tls || o.pop3 || len(o.withoutCaps) > 0 || len(o.extra) > 0 || o.masterUser != "" || o.oauth2 {
			return nil, errors.New("WithRawConfig cannot be combined with WithTLS, WithPOP3, WithoutCapabilities, WithConfig, WithMasterUser or WithOAuth2")
		}
	}

	dir, err := serverDir(o.dir)
	if err != nil {
		return nil, err
	}
	// From here on, a failure stops what was started and removes what
	// was made (close).
	s := &Server{
		Password:   o.password,
		Dir:        dir,
		ConfigFile: filepath.Join(dir, "dovecot.conf"),
		LogFile:    filepath.Join(dir, "dovecot.log"),
		raw:        o.raw,
		ownDir:     o.dir == "",
		clients:    make(map[string]*imapclient.Client),
	}
	if err := s.setUp(o); err != nil {
		s.close(stopGrace)
		return nil, err
	}
	return s, nil
}

// setUp writes the server's files and starts it.
func (s *Server) setUp(o options) error {
	dir := s.Dir
	s.params = configParams{
		dir:            dir,
		password:       o.password,
		tls:            o.tls,
		extra:          strings.Join(o.extra, "\n"),
		uid:            testenv.MailUID,
		gid:            testenv.MailGID,
		instanceSuffix: filepath.Base(dir),
	}
	if o.tls {
		pki, err := testenv.NewPKI("dovecot test CA")
		if err != nil {
			return err
		}
		s.CACertPEM = pki.CAPEM
		s.CAFile = filepath.Join(dir, "ca.pem")
		if err := writeFiles(
			file{s.CAFile, pki.CAPEM, 0o644},
			file{filepath.Join(dir, "server.pem"), append(pki.CertPEM, pki.CAPEM...), 0o644},
			file{filepath.Join(dir, "server.key"), pki.KeyPEM, 0o600},
		); err != nil {
			return err
		}
	}
	if o.masterUser != "" {
		if strings.ContainsAny(o.masterUser+o.masterPassword, ":\n") {
			return errors.New("master user name and password must not contain ':' or newlines")
		}
		s.MasterUser, s.MasterPassword = o.masterUser, o.masterPassword
		s.params.masterUser = o.masterUser
		if err := writeFiles(file{filepath.Join(dir, "master-users"),
			[]byte(o.masterUser + ":{PLAIN}" + o.masterPassword + "\n"), 0o644}); err != nil {
			return err
		}
	}
	if o.oauth2 {
		s.params.oauth2 = true
		var conf string
		if o.introspection != nil {
			c, err := o.introspection.config()
			if err != nil {
				return err
			}
			conf = c
		} else {
			s.tokenInfo = newTokenInfo() // closed by close, after Dovecot has stopped
			conf = s.tokenInfo.config()
		}
		if err := writeFiles(file{filepath.Join(dir, "oauth2.conf"), []byte(conf), 0o644}); err != nil {
			return err
		}
	}

	for attempt := 1; ; attempt++ {
		if err := s.allocatePorts(o); err != nil {
			return err
		}
		if len(o.withoutCaps) > 0 && attempt == 1 {
			if err := s.writeConfig(); err != nil {
				return err
			}
			caps, err := s.capabilitiesWithout(o.withoutCaps)
			if err != nil {
				return err
			}
			s.Capabilities = caps
			s.params.capability = strings.Join(s.Capabilities, " ")
		}
		if err := s.writeConfig(); err != nil {
			return err
		}
		err := s.launch()
		if err == nil {
			return nil
		}
		if attempt < 5 && strings.Contains(err.Error(), "in use") {
			if o.logf != nil {
				o.logf("dovecot: %v; retrying with other ports", err)
			}
			continue
		}
		return fmt.Errorf("start: %v\nlog:\n%s", err, s.Log())
	}
}

// requireDovecot skips the test when Dovecot is not installed, or fails it
// when running in CI.
func requireDovecot(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(DovecotBin); err != nil {
		testenv.Unavailable(t, "dovecot: %s not found (%v): install Dovecot with `apt-get install dovecot-imapd dovecot-pop3d`", DovecotBin, err)
	}
	if os.Geteuid() != 0 {
		testenv.Unavailable(t, "dovecot: running Dovecot for tests needs root (mail is stored as the user mail, uid 8)")
	}
}

// serverDir makes the server's directory: dir, or a new short one under
// /tmp (Unix socket paths under base_dir must stay short, which
// t.TempDir's long names can break) when dir is "". Dovecot's unprivileged
// processes can traverse it; the homes in it belong to the user mail.
func serverDir(dir string) (string, error) {
	subdirs := []string{"run", "state", "home"}
	made := dir == ""
	var err error
	if made {
		dir, err = testenv.ServerDir("dvt", subdirs...)
	} else {
		err = testenv.PrepareDir(dir, subdirs...)
	}
	if err != nil {
		return "", err
	}
	if err := os.Chown(filepath.Join(dir, "home"), testenv.MailUID, testenv.MailGID); err != nil {
		if made {
			os.RemoveAll(dir)
		}
		return "", err
	}
	return dir, nil
}

// file is one file for writeFiles.
type file struct {
	path string
	data []byte
	perm os.FileMode
}

func writeFiles(files ...file) error {
	for _, f := range files {
		if err := os.WriteFile(f.path, f.data, f.perm); err != nil {
			return err
		}
	}
	return nil
}

// allocatePorts picks distinct free loopback ports. Another process may take
// one before Dovecot binds it; Launch then retries with new ports.
func (s *Server) allocatePorts(o options) error {
	n := 1
	if o.tls {
		n++
	}
	if o.pop3 {
		n++
		if o.tls {
			n++
		}
	}
	// Distinct ports: a port is only free until something binds it.
	ports := make([]int, 0, n)
	seen := map[int]bool{}
	for len(ports) < n {
		a, err := testenv.FreeAddr("127.0.0.1")
		if err != nil {
			return err
		}
		_, p, _ := net.SplitHostPort(a)
		port, _ := strconv.Atoi(p)
		if !seen[port] {
			seen[port] = true
			ports = append(ports, port)
		}
	}
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	s.params.imapPort, s.params.imapsPort, s.params.pop3Port, s.params.pop3sPort = 0, 0, 0, 0
	s.IMAPAddr, s.IMAPSAddr, s.POP3Addr, s.POP3SAddr = "", "", "", ""
	if s.raw != nil {
		if o.rawProtocol == "pop3" {
			s.params.pop3Port = ports[0]
			s.POP3Addr = addr(ports[0])
		} else {
			s.params.imapPort = ports[0]
			s.IMAPAddr = addr(ports[0])
		}
		return nil
	}
	s.params.imapPort, ports = ports[0], ports[1:]
	s.IMAPAddr = addr(s.params.imapPort)
	if o.tls {
		s.params.imapsPort, ports = ports[0], ports[1:]
		s.IMAPSAddr = addr(s.params.imapsPort)
	}
	if o.pop3 {
		s.params.pop3Port, ports = ports[0], ports[1:]
		s.POP3Addr = addr(s.params.pop3Port)
		if o.tls {
			s.params.pop3sPort = ports[0]
			s.POP3SAddr = addr(s.params.pop3sPort)
		}
	}
	return nil
}

func (s *Server) writeConfig() error {
	conf := ""
	switch {
	case s.raw == nil:
		conf = renderConfig(s.params)
	case s.POP3Addr != "":
		conf = s.raw(s.Dir, s.params.pop3Port)
	default:
		conf = s.raw(s.Dir, s.params.imapPort)
	}
	return os.WriteFile(s.ConfigFile, []byte(conf), 0o644)
}

// launch starts the Dovecot master in the foreground and waits until it
// serves IMAP and POP3 (those it has addresses for).
func (s *Server) launch() error {
	// A fresh log per launch keeps "address in use" detection about this run;
	// keep the older one for failure reports.
	if data, err := os.ReadFile(s.LogFile); err == nil && len(data) > 0 {
		f, err := os.OpenFile(s.LogFile+".old", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			f.Write(data)
			f.Close()
		}
		os.Remove(s.LogFile)
	}

	// Dovecot's own output (configuration errors before logging is set up)
	// goes to a file: no pipe that a child could keep open.
	stderr, err := os.OpenFile(filepath.Join(s.Dir, "dovecot.stderr"), os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	defer stderr.Close()
	cmd := exec.Command(DovecotBin, "-F", "-c", s.ConfigFile)
	cmd.Dir = s.Dir
	cmd.Stdout = stderr
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Setpgid:   true,            // Stop can kill every Dovecot process of this server
		Pdeathsig: syscall.SIGTERM, // and Dovecot goes away if the test binary dies
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s: %w", DovecotBin, err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()

	s.mu.Lock()
	s.proc, s.exited = cmd, exited
	s.mu.Unlock()

	deadline := time.Now().Add(startTimeout)
	ready := func(addr, prefix string) error {
		for {
			select {
			case <-exited:
				msg := strings.TrimSpace(s.Log())
				s.stop(stopGrace)
				if strings.Contains(msg, "Address already in use") {
					return fmt.Errorf("dovecot exited: address in use: %s", msg)
				}
				return fmt.Errorf("dovecot exited during start-up: %s", msg)
			default:
			}
			if time.Now().After(deadline) {
				s.stop(stopGrace)
				return fmt.Errorf("dovecot did not greet on %s within %v", addr, startTimeout)
			}
			if testenv.Greets(addr, prefix) {
				return nil
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if s.IMAPAddr != "" {
		if err := ready(s.IMAPAddr, "* OK"); err != nil {
			return err
		}
	}
	if s.POP3Addr != "" {
		if err := ready(s.POP3Addr, "+OK"); err != nil {
			return err
		}
	}
	return nil
}

// Stop stops Dovecot and waits until it has exited. Mail and configuration
// stay: Restart starts it again on the same ports.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	if err := s.stop(stopGrace); err != nil {
		t.Errorf("dovecot: %v", err)
	}
}

// Restart stops Dovecot (if running) and starts it again with the same
// configuration, ports and mail.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.restart(); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
}

func (s *Server) restart() error {
	s.stop(stopGrace)
	var err error
	for attempt := 1; attempt <= 20; attempt++ {
		if err = s.launch(); err == nil {
			return nil
		}
		if !strings.Contains(err.Error(), "in use") {
			break
		}
		time.Sleep(50 * time.Millisecond) // the port may be in TIME_WAIT or briefly taken
	}
	return fmt.Errorf("restart: %v\nlog:\n%s", err, s.Log())
}

// Close stops Dovecot, waits until it has exited and removes its directory,
// unless WithDir gave it. The Server is done then.
func (s *Server) Close() error {
	return errors.Join(s.close(stopGrace))
}

// close is Close with the grace period before SIGKILL; it returns why
// stopping and why removing the directory failed.
func (s *Server) close(grace time.Duration) (stopErr, removeErr error) {
	stopErr = s.stop(grace)
	if s.tokenInfo != nil {
		s.tokenInfo.srv.Close()
	}
	if s.ownDir {
		if err := os.RemoveAll(s.Dir); err != nil {
			removeErr = fmt.Errorf("remove %s: %w", s.Dir, err)
		}
	}
	return stopErr, removeErr
}

// PID is the Dovecot master's process ID, which is also the ID of the
// process group of all its processes; 0 while it is not running.
func (s *Server) PID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.Process.Pid
}

func (s *Server) stop(grace time.Duration) error {
	s.mu.Lock()
	proc, exited := s.proc, s.exited
	s.proc, s.exited = nil, nil
	clients := s.clients
	s.clients = make(map[string]*imapclient.Client)
	s.mu.Unlock()

	for _, c := range clients {
		c.Close()
	}
	if proc == nil {
		return nil
	}
	// SIGTERM: Dovecot says BYE to its clients and closes its listeners within
	// a few milliseconds, but its log process then idles for about a second
	// before the master exits. Past a short grace period, kill what is left.
	pgid := proc.Process.Pid
	proc.Process.Signal(syscall.SIGTERM)
	var err error
	select {
	case <-exited:
	case <-time.After(grace):
		syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			err = fmt.Errorf("Dovecot (pid %d) did not exit after SIGKILL", pgid)
		}
	}
	// Whatever the master left behind (it normally takes its children along).
	syscall.Kill(-pgid, syscall.SIGKILL)
	return err
}

// Log returns Dovecot's log so far (including earlier runs of this server).
func (s *Server) Log() string {
	var b strings.Builder
	if old, err := os.ReadFile(s.LogFile + ".old"); err == nil {
		b.Write(old)
	}
	if cur, err := os.ReadFile(s.LogFile); err == nil {
		b.Write(cur)
	}
	if out, err := os.ReadFile(filepath.Join(s.Dir, "dovecot.stderr")); err == nil && len(out) > 0 {
		b.WriteString("[dovecot standard output and error]\n")
		b.Write(out)
	}
	return b.String()
}

// Doveadm runs `doveadm -c CONFIG args...` and returns its standard output;
// the test fails if doveadm does.
func (s *Server) Doveadm(t testing.TB, args ...string) string {
	t.Helper()
	out, err := s.DoveadmErr(args...)
	if err != nil {
		t.Fatalf("dovecot: doveadm %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// DoveadmErr is Doveadm that returns the error (including doveadm's standard
// error output) instead of failing the test.
func (s *Server) DoveadmErr(args ...string) (string, error) {
	var stdout, stderr bytes.Buffer
	cmd := exec.Command(DoveadmBin, append([]string{"-c", s.ConfigFile}, args...)...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// capabilitiesWithout asks this configuration's imap binary for its default
// post-login capabilities and returns them without the given ones.
func (s *Server) capabilitiesWithout(without []string) ([]string, error) {
	home := filepath.Join(s.Dir, "capprobe")
	if err := os.Mkdir(home, 0o700); err != nil {
		return nil, err
	}
	os.Chown(home, testenv.MailUID, testenv.MailGID)
	defer os.RemoveAll(home)

	cmd := exec.Command(DoveadmBin, "-c", s.ConfigFile, "exec", "imap")
	cmd.Env = append(os.Environ(), "USER=capprobe", "HOME="+home)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: testenv.MailUID, Gid: testenv.MailGID}}
	cmd.Stdin = strings.NewReader("a CAPABILITY\r\nb LOGOUT\r\n")
	out, err := cmd.Output()
	var caps []string
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "* CAPABILITY "); ok {
			caps = strings.Fields(rest)
		}
	}
	if len(caps) == 0 {
		return nil, fmt.Errorf("could not read Dovecot's default capabilities (%v): %s", err, out)
	}
	drop := make(map[string]bool, len(without))
	for _, c := range without {
		drop[strings.ToUpper(c)] = true
	}
	kept := caps[:0]
	for _, c := range caps {
		if !drop[strings.ToUpper(c)] {
			kept = append(kept, c)
		}
	}
	return kept, nil
}
