package imapupstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"github.com/emersion/go-sasl"
	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream/internal/lean"
	"github.com/popbridge/popbridge/imapupstream/internal/prelogin"
)

// Dialer opens logged-in upstream connections. It is safe for concurrent use.
type Dialer struct {
	cfg Config
	tls *tls.Config // nil for TLSNone
	log *zap.Logger

	// Test hooks. trace receives the raw protocol both ways, credentials
	// included; wrapConn wraps the connection under go-imap (above implicit
	// TLS).
	trace    io.Writer
	wrapConn func(net.Conn) net.Conn

	rcvbuf int // the sockets' receive buffer (sockbuf.go); 0: the kernel's own sizing
}

// NewDialer validates cfg, fills in defaults and loads CAFile (once).
// A nil log discards logging.
func NewDialer(cfg Config, log *zap.Logger) (*Dialer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = zap.NewNop()
	}
	d := &Dialer{cfg: cfg, log: log, rcvbuf: receiveBufferSize()}
	if cfg.MasterUser != "" {
		log.Warn("upstream master user configured: the upstream will not check users' own passwords or tokens; popbridge must authenticate users itself",
			zap.String("master_user", cfg.MasterUser))
	}
	if cfg.TLS != TLSNone {
		if d.tls, err = cfg.tlsConfig(); err != nil {
			return nil, err
		}
	}
	return d, nil
}

// Config returns the effective configuration (defaults filled in).
func (d *Dialer) Config() Config { return d.cfg }

// Login dials the upstream, secures the connection per Config.TLS (the
// certificate is verified against the name in Address unless
// InsecureSkipVerify), waits for the greeting and authenticates, all within
// ConnectTimeout (and ctx). It makes exactly one upstream connection.
//
// Where the server is known to take it, Login sends the SELECT of the
// configured mailbox right behind a password LOGIN, before the LOGIN's
// answer, and the Conn's first Select takes that SELECT's answer: one round
// trip fewer for a session. Known is Dovecot, by the name in its answer to
// the ID that Login sends when the greeting advertises ID and cred has a
// client address. Courier, for one, never answers a SELECT sent so (its
// login process hands the connection over to another one, and what the
// client sent after the LOGIN is lost); an AUTHENTICATE is never followed
// so either. A failed login is reported as it would be without: the
// SELECT's answer is not looked at.
//
// LOGIN and SELECT then leave in one write (when the server has LITERAL+).
// When the greeting itself names Dovecot (idAhead), the server is taken at
// its word and the ID does not wait for its answer either: ID, LOGIN and
// SELECT leave together, and the session's setup costs one round trip
// after the greeting instead of two.
//
// Errors wrap ErrAuthFailed, ErrInUse, ErrUnavailable or ErrConfig.
func (d *Dialer) Login(ctx context.Context, cred Credentials) (*Conn, error) {
	return d.login(ctx, cred, d.cfg.MasterUser != "", true)
}

// selectAhead is a SELECT sent right behind the login (Login), until the
// first Select takes its answer.
type selectAhead struct {
	cmd     *imapclient.SelectCommand
	sent    time.Time
	settled bool // its answer came: data, err
	data    *imap.SelectData
	err     error
}

// settleSelect waits for the answer to a SELECT sent behind the login, if
// one is pending: nothing that reads the connection below go-imap (a lean
// command, Fetch) may start while a command of go-imap's is in flight.
func (c *Conn) settleSelect(ctx context.Context) {
	sel := c.selecting
	if sel == nil || sel.settled {
		return
	}
	g := c.guard(ctx, c.cfg.CommandTimeout)
	sel.data, sel.err = sel.cmd.Wait()
	g.Stop()
	sel.settled = true
}

// takeSelect is Select's answer from the SELECT sent behind the login.
func (c *Conn) takeSelect(ctx context.Context) (_ *Mailbox, err error) {
	sel := c.selecting
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "select", sel.sent, &err)
	}
	c.settleSelect(ctx)
	c.selecting = nil
	if err := c.usable("SELECT"); err != nil {
		return nil, err
	}
	return c.selected(sel.data, sel.err)
}

// pipelinesSelect reports whether a server that gave name in its ID answer
// is known to answer a SELECT sent behind a LOGIN before its answer.
func pipelinesSelect(name string) bool { return strings.EqualFold(name, "Dovecot") }

// idAhead reports whether a server that greeted with text and caps is
// known to take the ID, the login and the SELECT behind it in one write:
// the server pipelinesSelect knows, named by its greeting's first word
// (Dovecot's, unless its login_greeting was changed; then the ID's answer
// still tells, a round trip later). LITERAL+ is required too, because the
// ID goes ahead only where LOGIN and SELECT then leave with it in one
// write, which authenticate does only with LITERAL+.
func idAhead(text string, caps []string) bool {
	name, _, _ := strings.Cut(text, " ")
	return pipelinesSelect(strings.TrimRight(name, ".")) && prelogin.HasCap(caps, "LITERAL+")
}

// Verify checks cred with the upstream itself: it logs in as the user with
// the user's own password or token, even when Config has a master user,
// and logs out. It returns what Login would for the same credentials
// without a master user. A caller that then logs in through the master
// user knows the user's own credentials are right.
func (d *Dialer) Verify(ctx context.Context, cred Credentials) error {
	c, err := d.login(ctx, cred, false, false)
	if err != nil {
		return err
	}
	c.Close() // LOGOUT; how it ends changes nothing of the answer
	return nil
}

// WithAddress returns a Dialer that connects to address instead, with
// everything else of d's configuration. TLS still verifies the name of
// d's own address: the new address is often an IP address that a routing
// service chose among servers that share one certificate.
func (d *Dialer) WithAddress(address string) *Dialer {
	nd := *d
	nd.cfg.Address = address
	return &nd
}

// WithMailbox returns a Dialer whose connections SELECT mailbox instead,
// with everything else of d's configuration: one of several folders served
// as one maildrop.
func (d *Dialer) WithMailbox(mailbox string) *Dialer {
	nd := *d
	nd.cfg.Mailbox = mailbox
	return &nd
}

// login is Login; with pipeline, a SELECT goes out right behind a LOGIN to
// a server known to take it.
func (d *Dialer) login(ctx context.Context, cred Credentials, asMaster, pipeline bool) (_ *Conn, err error) {
	start := time.Now()
	if o := d.cfg.Observer; o != nil {
		defer func() { o.LoginDone(time.Since(start), err) }()
	}
	// Lazy: the fields are encoded only if a line is written (an idle
	// session's memory, see pop3's idle.go).
	log := d.log.WithLazy(zap.String("upstream", d.cfg.Address), zap.String("user", cred.Username))
	if cred.Username == "" {
		return nil, fmt.Errorf("%w: empty user name", ErrAuthFailed)
	}

	cctx, cancel := context.WithTimeoutCause(ctx, d.cfg.ConnectTimeout,
		fmt.Errorf("connect timeout (%v): %w", d.cfg.ConnectTimeout, context.DeadlineExceeded))
	defer cancel()

	var nd net.Dialer
	raw, err := nd.DialContext(cctx, "tcp", d.cfg.Address)
	if err != nil {
		if cause := context.Cause(cctx); cause != nil {
			err = fmt.Errorf("%w (%w)", cause, err)
		}
		log.Debug("upstream connect failed", zap.Error(err)) // reported by the caller
		return nil, fmt.Errorf("%w: connect %s: %w", ErrUnavailable, d.cfg.Address, err)
	}

	d.sizeBuffer(raw)
	c := &Conn{log: log, cfg: d.cfg, raw: raw}
	// TLS, the greeting and the pre-login steps are bounded by cctx: when
	// it ends, the socket is closed and whatever blocks returns. The login
	// itself is a command, bounded by CommandTimeout: some servers (Courier)
	// hold a refusal back for seconds, and a refusal must reach the client
	// as one, not as an unreachable upstream.
	g := c.guard(cctx, d.cfg.ConnectTimeout+time.Second)
	serverName, idAhead, err := d.connect(cctx, c, cred)
	g.Stop()
	var sel *selectAhead
	if pipeline && (idAhead || pipelinesSelect(serverName)) {
		sel = &selectAhead{}
	}
	cancel()
	var mech string
	if err == nil {
		lctx, lcancel := context.WithTimeoutCause(ctx, d.cfg.CommandTimeout,
			fmt.Errorf("login timeout (%v): %w", d.cfg.CommandTimeout, context.DeadlineExceeded))
		g = c.guard(lctx, d.cfg.CommandTimeout+time.Second)
		mech, err = d.authenticate(c, cred, asMaster, sel)
		g.Stop()
		lcancel()
	}
	if err != nil {
		if c.client != nil {
			c.kill(errConnClosed)
			c.client.Close()
		} else {
			raw.Close()
		}
		// Debug only: the caller reports the failure, with this error in
		// its chain (the POP3 server logs one line per failed login).
		msg := "upstream login failed"
		if errors.Is(err, ErrAuthFailed) {
			msg = "upstream login refused"
		}
		log.Debug(msg, zap.String("upstream_mechanism", mech), zap.Error(err))
		return nil, err
	}
	log.Debug("upstream login ok", zap.String("upstream_mechanism", mech), zap.String("tls", string(d.cfg.TLS)),
		zap.Duration("took", time.Since(start)))
	if sel != nil && sel.cmd != nil {
		c.selecting = sel
	}
	return c, nil
}

// errPreauth refuses a PREAUTH greeting: the server decided who we are;
// that need not be this user.
var errPreauth = fmt.Errorf("%w: %w", ErrUnavailable, prelogin.ErrPreauth)

// step reports a failed step of the connection's setup: the cause that
// ended the connection (a timeout, say) if there is one, else err.
func (c *Conn) step(what string, err error) error {
	if cause := c.deadCause(); cause != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, cause)
	}
	return fmt.Errorf("%w: %s: %w", ErrUnavailable, what, err)
}

// connect runs TLS, the greeting and the pre-login steps (ID with cred's
// client address) on c.raw, up to the point where the server waits for the
// login. It returns the name the server gave in its ID answer, if any, and
// whether the ID goes out with the login instead, its answer not yet read.
func (d *Dialer) connect(ctx context.Context, c *Conn, cred Credentials) (string, bool, error) {
	opts := &imapclient.Options{DebugWriter: d.trace}
	step := c.step

	conn := d.wrap(c.raw)
	if d.cfg.TLS == TLSImplicit {
		tc := d.tls.Clone()
		tc.NextProtos = []string{"imap"}
		tlsConn := tls.Client(c.raw, tc)
		if err := tlsConn.HandshakeContext(ctx); err != nil {
			return "", false, step("TLS handshake", err)
		}
		conn = d.wrap(tlsConn)
	}
	// The greeting, STARTTLS and the ID command with the client's address
	// (internal/prelogin); then go-imap takes over.
	pre := prelogin.Options{ID: prelogin.IDArguments(cred.ClientAddr, cred.ConnectedAddr), Trace: d.trace, Ahead: idAhead}
	if d.cfg.TLS == TLSStartTLS {
		pre.StartTLS = d.tls
	}
	res, err := prelogin.Run(ctx, conn, pre, step)
	if errors.Is(err, prelogin.ErrPreauth) {
		return "", false, errPreauth
	}
	if err != nil {
		return "", false, err
	}
	c.lean = lean.New(res.Conn)
	c.client = imapclient.New(c.lean, opts)

	if err := c.client.WaitGreeting(); err != nil {
		return "", false, step("greeting", err)
	}
	switch c.client.State() {
	case imap.ConnStateNotAuthenticated:
	case imap.ConnStateAuthenticated:
		return "", false, errPreauth
	default:
		return "", false, step("greeting", errors.New("unexpected state after greeting"))
	}
	if c.client.Caps() == nil {
		return "", false, step("CAPABILITY", errors.New("no capabilities"))
	}
	return res.Name, res.IDAhead, nil
}

// authenticate logs in on a connection that connect has set up. It returns
// the mechanism used (for logs). With sel, a LOGIN has the SELECT of the
// configured mailbox sent right behind it (sel.cmd); an AUTHENTICATE has
// not.
func (d *Dialer) authenticate(c *Conn, cred Credentials, asMaster bool, sel *selectAhead) (mech string, err error) {
	step := c.step
	caps := c.client.Caps()

	host, portStr, _ := net.SplitHostPort(d.cfg.Address)
	port, _ := strconv.Atoi(portStr)
	var saslClient sasl.Client
	switch {
	case asMaster && d.cfg.MasterSeparator != "":
		mech = "LOGIN (master user)"
		cred = Credentials{Username: cred.Username + d.cfg.MasterSeparator + d.cfg.MasterUser, Password: d.cfg.MasterPassword}
	case asMaster:
		mech = "PLAIN (master user)"
		saslClient = sasl.NewPlainClient(cred.Username, d.cfg.MasterUser, d.cfg.MasterPassword)
	case strings.EqualFold(cred.Mechanism, sasl.OAuthBearer):
		mech = sasl.OAuthBearer
		saslClient = &oauthBearerClient{Client: sasl.NewOAuthBearerClient(&sasl.OAuthBearerOptions{
			Username: cred.Username, Token: cred.Token, Host: host, Port: port,
		})}
	case strings.EqualFold(cred.Mechanism, Xoauth2):
		mech = Xoauth2
		saslClient = NewXOAUTH2Client(cred.Username, cred.Token)
	case strings.EqualFold(cred.Mechanism, sasl.Plain),
		cred.Mechanism == "" && caps.Has(imap.CapLoginDisabled):
		mech = sasl.Plain
		saslClient = sasl.NewPlainClient("", cred.Username, cred.Password)
	case cred.Mechanism == "":
		mech = "LOGIN"
	default:
		return cred.Mechanism, fmt.Errorf("%w: unsupported mechanism %q", ErrConfig, cred.Mechanism)
	}

	if saslClient == nil {
		if sel != nil && c.client.Caps().Has(imap.CapLiteralPlus) {
			// LOGIN and SELECT in one write (with an ID gone ahead, that
			// too). Without LITERAL+ a user name or password sent as a
			// literal would wait for a continuation while held back.
			c.lean.Hold()
		}
		login := c.client.Login(cred.Username, cred.Password)
		if sel != nil {
			// Behind the LOGIN, before its answer. Should the login fail,
			// the connection is closed: the SELECT's answer (a NO or BAD
			// in the not-authenticated state) is never looked at.
			sel.sent = time.Now()
			sel.cmd = c.client.Select(c.cfg.Mailbox, nil)
		}
		if err := c.lean.Flush(); err != nil {
			c.kill(err) // the login's Wait ends with it
		}
		err = login.Wait()
	} else {
		err = c.client.Authenticate(saslClient)
	}
	if err != nil {
		if cause := c.deadCause(); cause != nil {
			return mech, fmt.Errorf("%w: login: %w", ErrUnavailable, cause)
		}
		var imapErr *imap.Error
		if !errors.As(err, &imapErr) {
			// Not the server's answer: the connection failed, or the SASL
			// exchange broke off midway (the server still waits for us).
			return mech, step("login", err)
		}
		return mech, classifyAuth("login", err)
	}
	// (No check of c.client.State() here: go-imap completes Wait before it
	// updates its state.)
	caps = c.client.Caps() // new ones after login
	if caps == nil {
		return mech, step("CAPABILITY", errors.New("no capabilities"))
	}
	c.caps = capsFrom(caps)
	return mech, nil
}

func (d *Dialer) wrap(conn net.Conn) net.Conn {
	if d.wrapConn == nil {
		return conn
	}
	return d.wrapConn(conn)
}
