package dovecot

import (
	"bufio"
	"bytes"
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
)

// Paths of the Debian binaries.
const (
	DovecotBin = "/usr/sbin/dovecot"
	DoveadmBin = "/usr/bin/doveadm"
)

// DefaultPassword is the password every user has unless WithPassword says otherwise.
const DefaultPassword = "dovecottest-secret"

// mailUID and mailGID are Debian's system user and group "mail": Dovecot refuses
// to run mail processes as root.
const (
	mailUID = 8
	mailGID = 8
)

const (
	startTimeout = 15 * time.Second
	stopTimeout  = 10 * time.Second
	stopGrace    = 250 * time.Millisecond // Stop and Restart: let Dovecot say BYE
	cleanupGrace = 30 * time.Millisecond  // the end of the test: everything goes
)

// Option changes how Start configures Dovecot.
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
	tokenInfo *tokenInfo // WithOAuth2

	mu      sync.Mutex
	proc    *exec.Cmd
	exited  chan struct{}
	clients map[string]*imapclient.Client // for Append, per user
}

// Start runs a new Dovecot for the test and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	requireDovecot(t)

	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.password == "" {
		o.password = DefaultPassword
	}
	if strings.ContainsAny(o.password, " \t\r\n\"'") {
		t.Fatalf("dovecot: password %q must not contain spaces or quotes", o.password)
	}

	dir := makeServerDir(t)
	s := &Server{
		Password:   o.password,
		Dir:        dir,
		ConfigFile: filepath.Join(dir, "dovecot.conf"),
		LogFile:    filepath.Join(dir, "dovecot.log"),
		clients:    make(map[string]*imapclient.Client),
	}
	s.params = configParams{
		dir:            dir,
		password:       o.password,
		tls:            o.tls,
		extra:          strings.Join(o.extra, "\n"),
		uid:            mailUID,
		gid:            mailGID,
		instanceSuffix: filepath.Base(dir),
	}
	if o.tls {
		pki, err := newTestPKI()
		if err != nil {
			t.Fatalf("dovecot: %v", err)
		}
		s.CACertPEM = pki.caPEM
		s.CAFile = filepath.Join(dir, "ca.pem")
		mustWrite(t, s.CAFile, pki.caPEM, 0o644)
		mustWrite(t, filepath.Join(dir, "server.pem"), pki.serverPEM, 0o644)
		mustWrite(t, filepath.Join(dir, "server.key"), pki.serverKeyP, 0o600)
	}
	if o.masterUser != "" {
		if strings.ContainsAny(o.masterUser+o.masterPassword, ":\n") {
			t.Fatalf("dovecot: master user name and password must not contain ':' or newlines")
		}
		s.MasterUser, s.MasterPassword = o.masterUser, o.masterPassword
		s.params.masterUser = o.masterUser
		mustWrite(t, filepath.Join(dir, "master-users"),
			[]byte(o.masterUser+":{PLAIN}"+o.masterPassword+"\n"), 0o644)
	}

	if o.oauth2 {
		s.tokenInfo = newTokenInfo()
		t.Cleanup(s.tokenInfo.srv.Close) // after Dovecot has stopped
		s.params.oauth2 = true
		mustWrite(t, filepath.Join(dir, "oauth2.conf"), []byte(s.tokenInfo.config()), 0o644)
	}

	// Stop Dovecot when the test ends (registered after the directory's
	// removal, so it runs before it), and print its log first if the test failed.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dovecot: Dovecot log (%s):\n%s", s.LogFile, s.Log())
		}
		s.stop(t, cleanupGrace)
	})

	for attempt := 1; ; attempt++ {
		s.allocatePorts(t, o)
		if len(o.withoutCaps) > 0 && attempt == 1 {
			s.writeConfig(t)
			s.Capabilities = s.capabilitiesWithout(t, o.withoutCaps)
			s.params.capability = strings.Join(s.Capabilities, " ")
		}
		s.writeConfig(t)
		err := s.launch(t)
		if err == nil {
			return s
		}
		if attempt < 5 && strings.Contains(err.Error(), "in use") {
			t.Logf("dovecot: %v; retrying with other ports", err)
			continue
		}
		t.Fatalf("dovecot: start: %v\nlog:\n%s", err, s.Log())
	}
}

// requireDovecot skips the test when Dovecot is not installed, or fails it
// when running in CI.
func requireDovecot(t testing.TB) {
	t.Helper()
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	if _, err := os.Stat(DovecotBin); err != nil {
		fail("dovecot: %s not found (%v): install Dovecot with `apt-get install dovecot-imapd dovecot-pop3d`", DovecotBin, err)
	}
	if os.Geteuid() != 0 {
		fail("dovecot: running Dovecot for tests needs root (mail is stored as the user mail, uid 8)")
	}
}

// makeServerDir makes a short private directory (Unix socket paths under
// base_dir must stay short, which t.TempDir's long names can break) that
// Dovecot's unprivileged processes can traverse, removed when the test ends.
func makeServerDir(t testing.TB) string {
	t.Helper()
	parent := "/tmp"
	if fi, err := os.Stat(parent); err != nil || !fi.IsDir() {
		parent = os.TempDir()
	}
	dir, err := os.MkdirTemp(parent, "dvt")
	if err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("dovecot: remove %s: %v", dir, err)
		}
	})
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	for _, sub := range []string{"run", "state", "home"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o755); err != nil {
			t.Fatalf("dovecot: %v", err)
		}
	}
	if err := os.Chown(filepath.Join(dir, "home"), mailUID, mailGID); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	return dir
}

func mustWrite(t testing.TB, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
}

// allocatePorts picks distinct free loopback ports. Another process may take
// one before Dovecot binds it; Start then retries with new ports.
func (s *Server) allocatePorts(t testing.TB, o options) {
	t.Helper()
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
		_, p, _ := net.SplitHostPort(FreeAddr(t, "127.0.0.1"))
		port, _ := strconv.Atoi(p)
		if !seen[port] {
			seen[port] = true
			ports = append(ports, port)
		}
	}
	addr := func(p int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(p)) }
	s.params.imapPort, ports = ports[0], ports[1:]
	s.IMAPAddr = addr(s.params.imapPort)
	s.params.imapsPort, s.params.pop3Port, s.params.pop3sPort = 0, 0, 0
	s.IMAPSAddr, s.POP3Addr, s.POP3SAddr = "", "", ""
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
}

func (s *Server) writeConfig(t testing.TB) {
	t.Helper()
	mustWrite(t, s.ConfigFile, []byte(renderConfig(s.params)), 0o644)
}

// launch starts the Dovecot master in the foreground and waits until it
// serves IMAP (and POP3).
func (s *Server) launch(t testing.TB) error {
	t.Helper()
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
				s.stop(t, stopGrace)
				if strings.Contains(msg, "Address already in use") {
					return fmt.Errorf("dovecot exited: address in use: %s", msg)
				}
				return fmt.Errorf("dovecot exited during start-up: %s", msg)
			default:
			}
			if time.Now().After(deadline) {
				s.stop(t, stopGrace)
				return fmt.Errorf("dovecot did not greet on %s within %v", addr, startTimeout)
			}
			if greets(addr, prefix) {
				return nil
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	if err := ready(s.IMAPAddr, "* OK"); err != nil {
		return err
	}
	if s.POP3Addr != "" {
		if err := ready(s.POP3Addr, "+OK"); err != nil {
			return err
		}
	}
	return nil
}

// greets reports whether a server on addr sends a greeting line starting
// with prefix. Dovecot accepts connections before its auth process is ready
// and greets only then.
func greets(addr, prefix string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return err == nil && strings.HasPrefix(line, prefix)
}

// Stop stops Dovecot and waits until it has exited. Mail and configuration
// stay: Restart starts it again on the same ports.
func (s *Server) Stop(t testing.TB) {
	t.Helper()
	s.stop(t, stopGrace)
}

// Restart stops Dovecot (if running) and starts it again with the same
// configuration, ports and mail.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.stop(t, stopGrace)
	var err error
	for attempt := 1; attempt <= 20; attempt++ {
		if err = s.launch(t); err == nil {
			return
		}
		if !strings.Contains(err.Error(), "in use") {
			break
		}
		time.Sleep(50 * time.Millisecond) // the port may be in TIME_WAIT or briefly taken
	}
	t.Fatalf("dovecot: restart: %v\nlog:\n%s", err, s.Log())
}

func (s *Server) stop(t testing.TB, grace time.Duration) {
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
		return
	}
	// SIGTERM: Dovecot says BYE to its clients and closes its listeners within
	// a few milliseconds, but its log process then idles for about a second
	// before the master exits. Past a short grace period, kill what is left.
	pgid := proc.Process.Pid
	proc.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(grace):
		syscall.Kill(-pgid, syscall.SIGKILL)
		select {
		case <-exited:
		case <-time.After(stopTimeout):
			t.Errorf("dovecot: Dovecot (pid %d) did not exit after SIGKILL", pgid)
		}
	}
	// Whatever the master left behind (it normally takes its children along).
	syscall.Kill(-pgid, syscall.SIGKILL)
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
func (s *Server) capabilitiesWithout(t testing.TB, without []string) []string {
	t.Helper()
	home := filepath.Join(s.Dir, "capprobe")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatalf("dovecot: %v", err)
	}
	os.Chown(home, mailUID, mailGID)
	defer os.RemoveAll(home)

	cmd := exec.Command(DoveadmBin, "-c", s.ConfigFile, "exec", "imap")
	cmd.Env = append(os.Environ(), "USER=capprobe", "HOME="+home)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: mailUID, Gid: mailGID}}
	cmd.Stdin = strings.NewReader("a CAPABILITY\r\nb LOGOUT\r\n")
	out, err := cmd.Output()
	var caps []string
	for _, line := range strings.Split(string(out), "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "* CAPABILITY "); ok {
			caps = strings.Fields(rest)
		}
	}
	if len(caps) == 0 {
		t.Fatalf("dovecot: could not read Dovecot's default capabilities (%v): %s", err, out)
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
	return kept
}
