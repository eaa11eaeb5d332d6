package pop3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// ErrServerClosed is returned by Serve and ServeListener after Shutdown or
// Close.
var ErrServerClosed = errors.New("pop3: server closed")

// Defaults for the zero values of the Server fields.
const (
	DefaultMaxLineLength      = 2048 // octets including CRLF, as Dovecot
	DefaultAuthTimeout        = 3 * time.Minute
	DefaultIdleTimeout        = 10 * time.Minute // RFC 1939 section 3: at least 10 minutes
	DefaultWriteTimeout       = time.Minute
	DefaultMaxBadCommandsAuth = 3 // before login, as Dovecot
	DefaultMaxBadCommands     = 20
	DefaultGreeting           = "POP3 server ready"
	DefaultLoginTimeout       = 3 * time.Minute // from connect to login, as Dovecot
)

// MaxAuthLineLength is the longest line accepted, CRLF included, for the
// lines of a SASL exchange: an AUTH command with its initial response and
// the client's answers to "+ " continuations. OAuth bearer tokens are often
// a few kilobytes, base64 makes them a third longer, so these lines may be
// longer than Server.MaxLineLength (never shorter). Every other line, and
// every line after login, is held to MaxLineLength.
const MaxAuthLineLength = 16 << 10

// minLineLength keeps MaxLineLength from going below what RFC 2449 section 4
// allows a client to send (255 octets), so no valid command is refused.
const minLineLength = 256

// TLSMode says how a listener uses TLS.
type TLSMode int

const (
	// TLSNone serves plaintext POP3 and offers no STLS. A client that sends
	// STLS anyway gets a clear -ERR.
	TLSNone TLSMode = iota
	// TLSStartTLS serves plaintext POP3 and offers STLS (RFC 2595) before
	// login, with Server.TLSConfig. Whatever the client sent after the STLS
	// line before the handshake is discarded, never executed, and the
	// session starts again in AUTHORIZATION over TLS (no new greeting).
	TLSStartTLS
	// TLSImplicit starts TLS at connect, before the greeting (port 995,
	// RFC 8314), with Server.TLSConfig.
	TLSImplicit
)

func (m TLSMode) String() string {
	switch m {
	case TLSNone:
		return "none"
	case TLSStartTLS:
		return "starttls"
	case TLSImplicit:
		return "implicit"
	}
	return fmt.Sprintf("TLSMode(%d)", int(m))
}

// ListenerConfig holds what differs between the listeners of one Server.
type ListenerConfig struct {
	TLS TLSMode
	// Name identifies the listener in ConnInfo.Listener, in logs and for
	// the Observer, e.g. its configured address. Empty means the address
	// the listener is bound to.
	Name string
	// TLSConfig, when not nil, is used on this listener instead of
	// Server.TLSConfig: for example one whose GetConfigForClient accepts
	// older TLS versions from some client networks only.
	TLSConfig *tls.Config
	// ProxyProtocol, when not nil, makes every connection start with a
	// PROXY header from a trusted load balancer, whose client address is
	// the connection's from then on (see ProxyProtocol).
	ProxyProtocol *ProxyProtocol
}

// Server is a POP3 server. Set its fields before the first call to Serve and
// do not change them afterwards: the first connection (or Reconfigure)
// resolves them into the configuration that connections use, which only
// Reconfigure replaces. A zero field means its default. One Server may
// serve several listeners at once.
type Server struct {
	// Backend authenticates clients and opens their maildrops. Required.
	Backend Backend

	// Logger receives the server's logs; each connection logs through a
	// child carrying "session" and "remote" fields (and "proxy" on
	// ProxyProtocol listeners). nil means no logs.
	Logger *zap.Logger

	// Implementation is announced as CAPA IMPLEMENTATION when not empty.
	Implementation string

	// Greeting is the text of the +OK greeting (DefaultGreeting if empty).
	Greeting string

	// TLSConfig is used by TLSImplicit listeners and by STLS on
	// TLSStartTLS listeners. Use GetCertificate to reload certificates
	// without a restart.
	TLSConfig *tls.Config

	// Mechanisms are the SASL mechanisms (RFC 5034 AUTH) offered, in the
	// order CAPA lists them; names are case-insensitive. nil means PLAIN and
	// LOGIN; an empty non-nil slice offers no SASL at all (USER/PASS only).
	// SupportedMechanisms lists the names known: PLAIN, LOGIN, OAUTHBEARER,
	// XOAUTH2. ServeListener refuses an unknown name. All four send a
	// reusable secret (a password or a bearer token) and so follow
	// AllowPlaintext exactly like USER/PASS.
	Mechanisms []string

	// FailureDelay is how long a failed login waits before its
	// -ERR [AUTH] answer, to slow down password guessing. Only credential
	// failures are delayed; [IN-USE], [SYS/TEMP] and the like are answered
	// at once. Zero means no delay.
	FailureDelay time.Duration

	// LoginDelay, when positive, is announced in CAPA as LOGIN-DELAY
	// (RFC 2449: the least time between two logins, in whole seconds).
	// The Backend enforces it, answering a login that comes too soon with
	// an Error of code CodeLoginDelay.
	LoginDelay time.Duration

	// Expire, when not "", is announced in CAPA as EXPIRE (RFC 2449: the
	// least time the server keeps messages, "NEVER" or a number of days).
	// It is a promise about the Backend's policy: announce only what it
	// keeps.
	Expire string

	// MaxLineLength is the longest command line accepted, in octets
	// including CRLF (DefaultMaxLineLength if zero; at least 256). Longer
	// lines are answered with -ERR and skipped.
	MaxLineLength int

	// AuthTimeout bounds how long the server waits for a command line
	// before login, IdleTimeout after login, WriteTimeout for each write to
	// the client (a client that stops reading). Zero means the default, a
	// negative value no limit.
	AuthTimeout  time.Duration
	IdleTimeout  time.Duration
	WriteTimeout time.Duration

	// MaxBadCommandsAuth and MaxBadCommands are how many bad commands
	// (unknown, malformed, not valid in the state, over-long lines, failed
	// logins) a connection may send before and after login; the one that
	// reaches the limit gets its -ERR, then "-ERR too many bad commands"
	// and the connection is closed. Errors that are the backend's doing
	// (such as [SYS/TEMP]) do not count. The count starts again at login.
	// Zero means the default, a negative value no limit.
	MaxBadCommandsAuth int
	MaxBadCommands     int

	// AllowPlaintext reports whether a secret (a password, or the token
	// of a bearer mechanism) may be sent in the clear on conn; it is never
	// asked on TLS. nil allows it everywhere. Where it says no, CAPA lists
	// neither USER nor SASL, and USER, PASS and AUTH are answered
	// "-ERR [AUTH] Plaintext authentication disallowed on non-secure
	// connections" (with "; use STLS first" where STLS is offered). A
	// typical policy: return cfg.AllowPlaintext || conn.FromLoopback().
	AllowPlaintext func(conn *ConnInfo) bool

	// LoginTimeout bounds the AUTHORIZATION state from connect (TLS
	// handshakes included) to a successful login (DefaultLoginTimeout if
	// zero, no limit if negative); then the client gets "-ERR login
	// timeout" and is disconnected. A Backend.Login under way is not cut
	// short.
	LoginTimeout time.Duration

	// MaxConnections caps the connections served at once, and
	// MaxConnectionsPerIP those from one IP address (ConnInfo.RemoteAddr;
	// connections without one, such as Unix sockets, are not counted per
	// IP). Zero or negative means no limit. A connection over a limit gets
	// "-ERR [SYS/TEMP] too many connections..." instead of the greeting
	// (nothing on TLSImplicit listeners) and is closed.
	MaxConnections      int
	MaxConnectionsPerIP int

	// LoginLimiter, when not nil, is asked before every login attempt
	// (PASS, or the end of an AUTH exchange) is passed to the backend, and
	// told of every attempt the backend refused for bad credentials. See
	// LoginLimiter.
	LoginLimiter LoginLimiter

	// OutlookNoNULs sends every NUL byte of a RETR or TOP body as 0x80, like
	// Dovecot's pop3_client_workarounds = outlook-no-nuls: Outlook hangs on
	// a NUL in a message. The message keeps its size (one octet for one),
	// so LIST and RETR still agree. It costs a scan of the body and no
	// allocation. Off by default: it changes message bytes.
	OutlookNoNULs bool

	// Observer, when not nil, is told of connections, refusals, logins,
	// commands, octets sent and session ends, for metrics.
	Observer Observer

	// RefuseDuringShutdown keeps the listeners open during Shutdown's
	// grace period, answering new connections "-ERR [SYS/TEMP] server
	// shutting down" (after the handshake on TLSImplicit listeners), so
	// that clients and load balancers learn why; without it Shutdown
	// closes them at once. Logins then get that answer either way.
	RefuseDuringShutdown bool

	cfg         atomic.Pointer[config] // what new connections use: see config
	mu          sync.Mutex
	phase       phase
	listeners   map[*net.Listener]struct{}
	conns       map[*conn]struct{}
	wg          sync.WaitGroup // one per tracked connection
	ctx         context.Context
	cancel      context.CancelFunc // cancels ctx, on Close
	bodyWriters sync.Pool          // *bufio.Writer of bodyWriterSize, for RETR/TOP (stream.go)
	readBufs    sync.Pool          // *[]byte of bodyReadSize, for RETR/TOP
	lineReaders sync.Pool          // *bufio.Reader of lineBufSize, for connections between commands (idle.go)
	lineWriters sync.Pool          // *bufio.Writer of lineBufSize, likewise
	active      int                // admitted connections, for MaxConnections
	perIP       map[string]int     // admitted connections per IP, for MaxConnectionsPerIP
	busy        int                // connections logging in or logged in, which Shutdown waits for
	drained     chan struct{}      // made by Shutdown, closed once busy is 0
}

// phase is how far a Server has gone in shutting down.
type phase int

const (
	running  phase = iota
	draining       // Shutdown with RefuseDuringShutdown: connections are accepted to be refused; no logins
	stopped        // no listeners, no new connections, no logins: Close, or Shutdown without RefuseDuringShutdown
)

// Settings are the Server fields that may change while it runs, for a
// configuration reload: see Reconfigure. Their meaning is the fields'.
type Settings struct {
	FailureDelay        time.Duration
	IdleTimeout         time.Duration
	Mechanisms          []string
	MaxConnections      int
	MaxConnectionsPerIP int
	OutlookNoNULs       bool
	LoginDelay          time.Duration
	Expire              string
}

// Reconfigure makes st the settings of the connections accepted from now on,
// in place of the Server fields of the same names (which keep their values);
// connections already open keep theirs, and lowering a limit closes none.
// It refuses an unknown mechanism name, changing nothing. It is safe to call
// at any time from any goroutine. (Settings and Reconfigure stay the reload
// API, rather than a new Server value, so that callers keep one Server, its
// listeners and its connection counts across reloads.)
func (s *Server) Reconfigure(st Settings) error {
	cfg, err := s.newConfig(st)
	if err != nil {
		return err
	}
	s.cfg.Store(cfg)
	return nil
}

// LoginLimiter slows down password guessing from one client address, for
// example with a golang.org/x/time/rate limiter per address that Failed
// spends and Allow checks. Both methods are called from many connection
// goroutines at once. remote is ConnInfo.RemoteAddr (after PROXY protocol).
type LoginLimiter interface {
	// Allow is called before each login attempt goes to the backend. When
	// it returns false, the backend is not called, the client gets
	// "-ERR [LOGIN-DELAY] too many failed logins..." (with retryAfter
	// rounded up to seconds, if positive) and the connection is closed.
	Allow(remote net.Addr) (ok bool, retryAfter time.Duration)
	// Failed is called when the backend refused an attempt for bad
	// credentials ([AUTH]), before Server.FailureDelay. Failures of
	// another kind ([SYS/TEMP], [IN-USE]...) are not the client's doing
	// and are not reported.
	Failed(remote net.Addr)
}

// Serve accepts connections on l and serves each in its own goroutine, in
// plaintext (TLSNone). It returns ErrServerClosed after Shutdown or Close,
// or the error that made l.Accept fail for good.
func (s *Server) Serve(l net.Listener) error {
	return s.ServeListener(l, ListenerConfig{})
}

// ServeTLS is Serve with implicit TLS (TLSImplicit), using s.TLSConfig.
func (s *Server) ServeTLS(l net.Listener) error {
	return s.ServeListener(l, ListenerConfig{TLS: TLSImplicit})
}

// ServeListener is Serve with a per-listener configuration; it closes l
// when it returns. A listener that hands out *tls.Conn values itself works
// with TLSNone too: the connections count as TLS. A configuration error
// (TLS without a TLSConfig, no Backend, an unknown mechanism, a
// ProxyProtocol without Trusted) is returned at once.
func (s *Server) ServeListener(l net.Listener, lc ListenerConfig) error {
	switch lc.TLS {
	case TLSNone:
	case TLSImplicit:
		if s.TLSConfig == nil && lc.TLSConfig == nil {
			return errors.New("pop3: implicit TLS needs Server.TLSConfig")
		}
	case TLSStartTLS:
		if s.TLSConfig == nil && lc.TLSConfig == nil {
			return errors.New("pop3: STLS needs Server.TLSConfig")
		}
	default:
		return fmt.Errorf("pop3: unknown TLS mode %v", lc.TLS)
	}
	if s.Backend == nil {
		return errors.New("pop3: Server.Backend is nil")
	}
	if lc.ProxyProtocol != nil && lc.ProxyProtocol.Trusted == nil {
		return errors.New("pop3: ProxyProtocol needs a Trusted function")
	}
	if _, err := resolveMechanisms(s.Mechanisms); err != nil {
		return err
	}
	if lc.Name == "" {
		lc.Name = l.Addr().String()
	}
	if !s.trackListener(&l, true) {
		_ = l.Close()
		return ErrServerClosed
	}
	defer s.trackListener(&l, false)
	defer l.Close()

	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			if s.stopped() {
				return ErrServerClosed
			}
			// Out of file descriptors and the like pass; back off as
			// net/http does instead of spinning or giving up.
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.logger().Warn("accept failed; retrying", zap.Error(err), zap.Duration("delay", backoff))
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("pop3: accept: %w", err)
		}
		backoff = 0
		c := s.trackConn(nc, lc)
		if c == nil {
			_ = nc.Close()
			continue // shutting down: the next Accept fails
		}
		go c.serve()
	}
}

// Shutdown refuses new connections (see RefuseDuringShutdown) and logins,
// waits until ctx is done for the sessions logged in (or logging in) to end
// on their own, then closes whatever is left as Close does, returning
// ctx.Err() if the grace period ran out. A session cut off gets
// Session.Close only, never Update.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.initLocked()
	var lerr error
	if s.RefuseDuringShutdown {
		s.phase = max(s.phase, draining)
	} else {
		s.phase = stopped
		lerr = s.closeListenersLocked()
	}
	if s.drained == nil {
		s.drained = make(chan struct{})
		s.checkDrainedLocked()
	}
	drained := s.drained
	s.mu.Unlock()

	select {
	case <-drained:
		return errors.Join(lerr, s.Close())
	case <-ctx.Done():
		_ = s.Close()
		return ctx.Err()
	}
}

// beginSession counts a login attempt, and the session it may open, for
// Shutdown to wait for, and returns the func that ends the count. It returns
// nil when the server is shutting down.
func (s *Server) beginSession() (end func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != running {
		return nil
	}
	s.busy++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.busy--
		s.checkDrainedLocked()
	}
}

func (s *Server) checkDrainedLocked() {
	if s.busy != 0 || s.drained == nil {
		return
	}
	select {
	case <-s.drained:
	default:
		close(s.drained)
	}
}

// Draining reports whether Shutdown (or Close) has been called.
func (s *Server) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase != running
}

// Close closes the listeners and every connection at once, cancels the
// context passed to the backend, and returns when every connection
// goroutine has finished, so every Session.Close has returned. It must not
// be called from a Backend or Session method.
func (s *Server) Close() error {
	s.mu.Lock()
	s.initLocked()
	s.phase = stopped
	err := s.closeListenersLocked()
	for c := range s.conns {
		_ = c.raw.Close()
	}
	s.cancel()
	s.mu.Unlock()

	s.wg.Wait()
	return err
}

// initLocked sets up what a zero Server lacks.
func (s *Server) initLocked() {
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithCancel(context.Background())
		s.listeners = make(map[*net.Listener]struct{})
		s.conns = make(map[*conn]struct{})
	}
}

func (s *Server) stopped() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.phase == stopped
}

func (s *Server) trackListener(l *net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	if !add {
		delete(s.listeners, l)
		return true
	}
	if s.phase != running {
		return false
	}
	s.listeners[l] = struct{}{}
	return true
}

func (s *Server) closeListenersLocked() error {
	var errs []error
	for l := range s.listeners {
		if err := (*l).Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
		delete(s.listeners, l)
	}
	return errors.Join(errs...)
}

// trackConn registers a new connection, or returns nil when the server is
// stopped. Registration happens before the goroutine starts so that Close
// and Shutdown never miss a connection.
func (s *Server) trackConn(nc net.Conn, lc ListenerConfig) *conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.initLocked()
	if s.phase == stopped {
		return nil
	}
	c := newConn(s, nc, lc)
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return c
}

// admit takes a connection slot within the limits of cfg for a client at ip
// ("" for an address without one), and returns the func that gives it
// back; or no func, and the reason (a Refuse* constant) and text of the
// refusal.
func (s *Server) admit(cfg *config, ip string) (release func(), reason, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.phase != running {
		return nil, RefuseShuttingDown, "server shutting down"
	}
	if cfg.maxConns > 0 && s.active >= cfg.maxConns {
		return nil, RefuseMaxConnections, "too many connections, try again later"
	}
	counted := cfg.maxPerIP > 0 && ip != ""
	if counted {
		if s.perIP[ip] >= cfg.maxPerIP {
			return nil, RefusePerIP, "too many connections from your address, try again later"
		}
		if s.perIP == nil {
			s.perIP = make(map[string]int)
		}
		s.perIP[ip]++
	}
	s.active++
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.active--
		if counted {
			if s.perIP[ip]--; s.perIP[ip] <= 0 {
				delete(s.perIP, ip)
			}
		}
	}, "", ""
}

func (s *Server) untrackConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// config is everything a connection takes from its Server, resolved once
// (defaults applied, mechanisms looked up) and never changed afterwards:
// the Server holds the current one, which Reconfigure replaces, and each
// connection keeps the one it started with.
type config struct {
	backend        Backend
	log            *zap.Logger // never nil
	tlsConfig      *tls.Config
	allowPlaintext func(*ConnInfo) bool
	limiter        LoginLimiter
	observer       Observer

	greeting       string
	implementation string
	mechs          []*mechanism // SASL mechanisms offered
	maxLine        int
	authLine       int // longest line of a SASL exchange
	authTimeout    time.Duration
	idleTimeout    time.Duration
	writeTimeout   time.Duration
	loginTimeout   time.Duration // 0: none
	maxBadAuth     int           // <= 0: no limit
	maxBad         int
	failureDelay   time.Duration
	noNULs         bool // OutlookNoNULs
	loginDelay     time.Duration
	expire         string
	maxConns       int // MaxConnections, <= 0: no limit
	maxPerIP       int // MaxConnectionsPerIP, <= 0: no limit
}

// config returns the configuration for a new connection: what Reconfigure
// set last, or else the Server fields, resolved on first use.
func (s *Server) config() *config {
	if cfg := s.cfg.Load(); cfg != nil {
		return cfg
	}
	cfg, _ := s.newConfig(s.fieldSettings()) // ServeListener refuses unknown mechanisms; here they are skipped
	s.cfg.CompareAndSwap(nil, cfg)
	return s.cfg.Load()
}

// fieldSettings are the Server fields that Settings may replace.
func (s *Server) fieldSettings() Settings {
	return Settings{
		FailureDelay:        s.FailureDelay,
		IdleTimeout:         s.IdleTimeout,
		Mechanisms:          s.Mechanisms,
		MaxConnections:      s.MaxConnections,
		MaxConnectionsPerIP: s.MaxConnectionsPerIP,
		OutlookNoNULs:       s.OutlookNoNULs,
		LoginDelay:          s.LoginDelay,
		Expire:              s.Expire,
	}
}

// newConfig resolves the Server fields, with st in place of the fields of
// the same names. The error names an unknown mechanism, which the
// configuration leaves out.
func (s *Server) newConfig(st Settings) (*config, error) {
	cfg := &config{
		backend:        s.Backend,
		log:            s.logger(),
		tlsConfig:      s.TLSConfig,
		allowPlaintext: s.AllowPlaintext,
		limiter:        s.LoginLimiter,
		observer:       s.Observer,
		greeting:       sanitizeText(s.Greeting),
		implementation: sanitizeText(s.Implementation),
		maxLine:        s.MaxLineLength,
		authTimeout:    orDefault(s.AuthTimeout, DefaultAuthTimeout),
		idleTimeout:    orDefault(st.IdleTimeout, DefaultIdleTimeout),
		writeTimeout:   orDefault(s.WriteTimeout, DefaultWriteTimeout),
		loginTimeout:   orDefault(s.LoginTimeout, DefaultLoginTimeout),
		maxBadAuth:     orDefault(s.MaxBadCommandsAuth, DefaultMaxBadCommandsAuth),
		maxBad:         orDefault(s.MaxBadCommands, DefaultMaxBadCommands),
		failureDelay:   max(st.FailureDelay, 0),
		noNULs:         st.OutlookNoNULs,
		loginDelay:     max(st.LoginDelay, 0),
		expire:         sanitizeText(st.Expire),
		maxConns:       st.MaxConnections,
		maxPerIP:       st.MaxConnectionsPerIP,
	}
	var err error
	cfg.mechs, err = resolveMechanisms(st.Mechanisms)
	if cfg.maxLine == 0 {
		cfg.maxLine = DefaultMaxLineLength
	}
	cfg.maxLine = max(cfg.maxLine, minLineLength)
	cfg.authLine = max(cfg.maxLine, MaxAuthLineLength)
	if cfg.greeting == "" {
		cfg.greeting = DefaultGreeting
	}
	return cfg, err
}

func (s *Server) logger() *zap.Logger {
	if s.Logger == nil {
		return zap.NewNop()
	}
	return s.Logger
}

// orDefault maps zero to def and negative values to 0 ("no limit").
func orDefault[T int | time.Duration](v, def T) T {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// ipKey returns the IP address of addr as MaxConnectionsPerIP counts it, or
// "" when addr has none.
func ipKey(addr net.Addr) string {
	switch a := addr.(type) {
	case *net.TCPAddr:
		if a.IP == nil {
			return ""
		}
		return a.IP.String()
	case nil:
		return ""
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return ""
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return ""
}

// IsLoopback reports whether addr is a loopback IP address (127.0.0.0/8,
// ::1): a connection that never leaves the machine, which Dovecot treats as
// secure for plaintext login. Anything else, Unix sockets included (they may
// be fed by a proxy), is not.
func IsLoopback(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case nil:
		return false
	}
	host, _, err := net.SplitHostPort(addr.String())
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
