package pop3

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"syscall"
	"time"

	"go.uber.org/zap"
)

// state is a session state of RFC 1939 section 3.
type state int

const (
	stateAuthorization state = iota
	stateTransaction
	stateUpdate
)

func (s state) String() string {
	switch s {
	case stateAuthorization:
		return "AUTHORIZATION"
	case stateTransaction:
		return "TRANSACTION"
	case stateUpdate:
		return "UPDATE"
	}
	return "state(" + strconv.Itoa(int(s)) + ")"
}

// conn is one client connection. All its fields are owned by its goroutine,
// except raw, which Server.Close may close at any time.
type conn struct {
	srv   *Server
	cfg   *config  // the server's configuration when the connection started
	raw   net.Conn // as accepted; closing it ends everything
	plain net.Conn // the client's bytes: raw, or raw after its PROXY header
	nc    net.Conn // plain, or the TLS connection over it
	lc    ListenerConfig
	log   *zap.Logger
	info  ConnInfo

	ctx    context.Context
	cancel context.CancelFunc

	br          *bufio.Reader
	bw          *bufio.Writer
	line        []byte // the current command line, capacity cfg.maxLine
	num         []byte // scratch for formatting numbers
	dw          dotWriter
	rawWait     syscall.RawConn       // raw's, to wait on while idle (idle.go); nil until needed
	idleReadyFn func(fd uintptr) bool // c.idleReady, for rawWait.Read

	state    state
	user     string   // from USER, waiting for PASS; "" for none
	sess     Session  // non-nil from login until closeSession
	drop     maildrop // the snapshot and its deletion marks, in TRANSACTION
	lastRetr int      // the message of the last RETR, 0 before the first

	loginDeadline time.Time // end of LoginTimeout; zero: none
	bad           int       // bad commands in the current state
	closing       bool      // end the connection once the answer is flushed
	streaming     bool      // inside a multi-line body: never write a status line
	werr          error     // first write error; the connection is dead
	cmdOK         bool      // status of the current command's answer, for logs

	// What the connection holds, each given back once by finish: the
	// connection slot (from Server.admit; nil if refused) and Shutdown's
	// wait for a session (from Server.beginSession; nil without one).
	release    func()
	endSession func()

	start time.Time
	sum   SessionSummary // filled in as the session goes, for its last log line and the Observer
}

// newConn makes the connection that trackConn registers. It runs under the
// server's lock, so the rest of the setup waits for the connection's own
// goroutine (setup).
func newConn(s *Server, nc net.Conn, lc ListenerConfig) *conn {
	ctx, cancel := context.WithCancel(s.ctx)
	return &conn{srv: s, raw: nc, plain: nc, nc: nc, lc: lc, ctx: ctx, cancel: cancel}
}

// setup prepares everything else, in the connection's goroutine, where the
// PROXY header (if any) is read: waiting for it never holds up Accept. It
// reports false when the connection must be closed at once.
func (c *conn) setup() bool {
	c.start = time.Now()
	c.cfg = c.srv.config()
	if c.cfg.loginTimeout > 0 {
		c.loginDeadline = c.start.Add(c.cfg.loginTimeout)
	}
	c.info = ConnInfo{
		ID:         newSessionID(),
		RemoteAddr: c.raw.RemoteAddr(),
		LocalAddr:  c.raw.LocalAddr(),
		Listener:   c.lc.Name,
	}
	// WithLazy: the fields are encoded (into a buffer of their own, 1 KiB
	// with zap's encoders) only once a line is written, which an idle
	// session below the log level never does (see idle.go).
	c.log = c.cfg.log.WithLazy(zap.String("session", c.info.ID), addrField("remote", c.info.RemoteAddr))
	if pp := c.lc.ProxyProtocol; pp != nil {
		if !c.readProxyHeader(pp) {
			return false
		}
		// From here on every log line names the client, and the proxy
		// it came through.
		c.log = c.cfg.log.WithLazy(zap.String("session", c.info.ID), addrField("remote", c.info.RemoteAddr),
			addrField("proxy", c.info.ProxyAddr))
	}
	if c.lc.TLS == TLSImplicit {
		c.nc = tls.Server(c.plain, c.tlsConfig())
	}
	return true
}

// addrField logs addr as a string ("" for none).
func addrField(key string, addr net.Addr) zap.Field {
	if addr == nil {
		return zap.String(key, "")
	}
	return zap.String(key, addr.String())
}

// tlsConfig is the TLS configuration of the connection's listener.
func (c *conn) tlsConfig() *tls.Config {
	if c.lc.TLSConfig != nil {
		return c.lc.TLSConfig
	}
	return c.cfg.tlsConfig
}

// setEnd records how the session ends, unless a reason is already known.
func (c *conn) setEnd(end string) {
	if c.sum.End == "" {
		c.sum.End = end
	}
}

// newSessionID returns 12 random hex digits: short enough to read in logs,
// random enough not to repeat among the sessions one would ever compare.
func newSessionID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // never fails since Go 1.24
	return hex.EncodeToString(b[:])
}

// serve runs the connection until it ends. It never panics: a panic in the
// backend or here closes this connection only.
func (c *conn) serve() {
	defer c.finish()
	if !c.setup() {
		return
	}
	c.log.Debug("connection opened", zap.Stringer("tls", c.lc.TLS))
	if !c.admit() {
		return
	}
	if !c.handshake() {
		return
	}
	c.getLineBufs()
	c.line = make([]byte, 0, lineInitCap)

	c.ok(c.cfg.greeting)
	for !c.closing && c.werr == nil {
		// PIPELINING: answers wait in bw while more commands are already
		// here, so a burst of commands costs one flush.
		if c.br.Buffered() == 0 && !c.flush() {
			break
		}
		limit := c.cfg.maxLine
		if c.state == stateAuthorization {
			limit = c.cfg.authLine // for AUTH with a long initial response
		}
		line, tooLong, err := c.readLine(limit)
		if err != nil {
			c.readFailed(err)
			break
		}
		if !tooLong && len(c.line) > c.cfg.maxLine && !isAUTH(line) {
			tooLong = true
		}
		if tooLong {
			c.cmdOK = false
			c.fail("", "line too long")
			c.log.Debug("command", zap.String("cmd", "?"), zap.Bool("ok", false), zap.String("error", "line too long"))
			if o := c.cfg.observer; o != nil {
				o.Command("too_long", false)
			}
			c.badCommand()
			continue
		}
		c.handle(line)
	}
	c.flush()
}

// isAUTH reports whether line is an AUTH command, the only one that may be
// longer than MaxLineLength.
func isAUTH(line []byte) bool {
	kw, _ := splitCommand(line)
	return commandName(kw) == "AUTH"
}

// admit takes a connection slot. Over a limit the client gets one -ERR
// instead of the greeting (on TLS nothing: no handshake is spent on a
// refused client) and admit reports false; during Shutdown the answer is
// "-ERR [SYS/TEMP] server shutting down", on TLS too, after a handshake
// bounded by refuseWriteTimeout.
func (c *conn) admit() bool {
	release, reason, why := c.srv.admit(c.cfg, ipKey(c.info.RemoteAddr))
	if release != nil {
		c.release = release
		if o := c.cfg.observer; o != nil {
			o.ConnOpened(&c.info, c.lc.TLS)
		}
		return true
	}
	c.log.Info("connection refused", zap.String("reason", why))
	if o := c.cfg.observer; o != nil {
		o.ConnRefused(&c.info, reason)
	}
	var w io.Writer = c.raw
	if tc, isTLS := c.nc.(*tls.Conn); isTLS {
		if reason != RefuseShuttingDown {
			return false
		}
		w = tc // the write runs the handshake first
	}
	_ = c.raw.SetDeadline(time.Now().Add(refuseWriteTimeout))
	_, _ = io.WriteString(w, "-ERR ["+CodeSysTemp+"] "+why+"\r\n")
	return false
}

// refuseWriteTimeout bounds the write of the refusal of a connection over
// the limits: a new connection's send buffer is empty, so it never waits
// unless something is badly wrong.
const refuseWriteTimeout = 5 * time.Second

// authDeadline is when a wait before login must end: AuthTimeout from now,
// and never after the LoginTimeout deadline.
func (c *conn) authDeadline() time.Time {
	var d time.Time
	if c.cfg.authTimeout > 0 {
		d = time.Now().Add(c.cfg.authTimeout)
	}
	if !c.loginDeadline.IsZero() && (d.IsZero() || c.loginDeadline.Before(d)) {
		d = c.loginDeadline
	}
	return d
}

// handshake completes TLS on a TLS connection (before the greeting, or
// after STLS), bounded like a command line before login, and records the
// connection state for the backend.
func (c *conn) handshake() bool {
	tc, ok := c.nc.(*tls.Conn)
	if !ok {
		return true
	}
	_ = tc.SetDeadline(c.authDeadline())
	if err := tc.HandshakeContext(c.ctx); err != nil {
		c.log.Debug("TLS handshake failed", zap.Error(err))
		if o := c.cfg.observer; o != nil {
			o.TLSHandshake(&c.info, err)
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			c.setEnd(EndTimeout)
		}
		return false
	}
	_ = tc.SetDeadline(time.Time{})
	cs := tc.ConnectionState()
	c.info.TLS = &cs
	if o := c.cfg.observer; o != nil {
		o.TLSHandshake(&c.info, nil)
	}
	return true
}

// finish ends the connection: it recovers a panic, closes the session
// (without Update unless QUIT already ran it) and the network connection,
// and gives back what the connection held.
func (c *conn) finish() {
	r := recover()
	if c.log == nil { // setup itself failed
		c.log = zap.NewNop()
	}
	if r != nil {
		stack := zap.Stack("stack")
		if p, ok := r.(*asidePanic); ok {
			r, stack = p.value, zap.ByteString("stack", p.stack)
		}
		c.log.Error("panic in POP3 session; connection closed",
			zap.Any("panic", r), stack, zap.Stringer("state", c.state))
		// A status line in the middle of a message body would be taken
		// for message text; there the client only sees the connection end
		// without the terminating ".".
		if !c.streaming && c.bw != nil && c.werr == nil {
			c.fail(CodeSysTemp, "internal server error")
			c.flush()
		}
		c.setEnd(EndError)
	}
	c.closeSession()
	if c.release != nil {
		c.release()
	}
	if r != nil || c.werr != nil || c.streaming || c.br == nil {
		// Not a clean end: skip the TLS close_notify, which could wait
		// on a client that stopped reading, and which would make a
		// truncated message end like a complete stream. (Without br the
		// connection was refused or its TLS handshake failed: nothing to
		// close cleanly.)
		_ = c.raw.Close()
	} else {
		_ = c.nc.Close()
	}
	c.cancel()
	if c.release != nil { // admitted: a session, which gets its last log line
		c.ended()
	}
	if c.endSession != nil {
		c.endSession()
	}
	// The line buffers serve the next connection: a busy server opens
	// hundreds a second. (Not a body writer left stacked on bw by a
	// stream that failed: its pool is another.)
	if c.br != nil && c.bw != nil && c.bw.Size() == lineBufSize {
		c.putLineBufs()
	}
	c.srv.untrackConn(c)
}

// ended writes the session's last log line and tells the Observer.
func (c *conn) ended() {
	sum := &c.sum
	switch {
	case sum.End != "":
	case c.srv.ctx.Err() != nil:
		sum.End = EndShutdown
	case errors.Is(c.werr, os.ErrDeadlineExceeded):
		sum.End = EndTimeout
	default:
		sum.End = EndDropped
	}
	sum.Info, sum.Duration = &c.info, time.Since(c.start)
	// Never the password, the token or message content: names and counts.
	c.log.Info("session ended", zap.String("user", sum.User), zap.String("listener", c.info.Listener),
		zap.String("tls", TLSVersionName(c.info.TLS)), zap.Int("listed", sum.Listed),
		zap.Int("retrieved", sum.Retrieved), zap.Int("deleted", sum.Deleted),
		zap.Int64("bytes_sent", sum.BytesSent), zap.Duration("duration", sum.Duration), zap.String("end", sum.End))
	if o := c.cfg.observer; o != nil {
		o.SessionEnded(sum)
	}
}

// closeSession calls Session.Close exactly once, if there is a session.
func (c *conn) closeSession() {
	sess := c.sess
	if sess == nil {
		return
	}
	c.sess = nil
	defer func() {
		if r := recover(); r != nil {
			c.log.Error("panic in Session.Close", zap.Any("panic", r), zap.Stack("stack"))
		}
	}()
	if err := sess.Close(); err != nil {
		c.log.Warn("closing session failed", zap.Error(err))
	}
}

// readLine reads one line into c.line and returns it without its line ending
// (CRLF or a bare LF); c.line keeps the ending. A line longer than limit
// octets, its line ending included, is read up to its LF and dropped:
// tooLong is then true.
func (c *conn) readLine(limit int) (line []byte, tooLong bool, err error) {
	var deadline time.Time
	if c.state == stateAuthorization {
		deadline = c.authDeadline()
	} else if c.cfg.idleTimeout > 0 {
		deadline = time.Now().Add(c.cfg.idleTimeout)
	}
	if err := c.nc.SetReadDeadline(deadline); err != nil {
		return nil, false, err
	}

	if err := c.waitIdle(); err != nil {
		return nil, false, err
	}
	c.line = c.line[:0]
	for {
		frag, err := c.br.ReadSlice('\n')
		if !tooLong {
			if len(c.line)+len(frag) > limit {
				tooLong = true
				c.line = c.line[:0]
			} else {
				c.line = append(c.line, frag...)
			}
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			return nil, false, err // a partial last line is dropped
		}
	}
	if tooLong {
		return nil, true, nil
	}
	line = c.line[:len(c.line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, false, nil
}

// readFailed handles the end of the input. It logs at debug level only: the
// session's last line ("session ended") says how it ended.
func (c *conn) readFailed(err error) {
	switch {
	case c.srv.ctx.Err() != nil:
		c.setEnd(EndShutdown)
		c.log.Debug("connection closed by the server's shutdown", zap.Stringer("state", c.state))
	case errors.Is(err, os.ErrDeadlineExceeded) && c.state == stateAuthorization &&
		!c.loginDeadline.IsZero() && !time.Now().Before(c.loginDeadline):
		c.setEnd(EndTimeout)
		c.log.Debug("login timeout; closing")
		c.fail("", "login timeout")
	case errors.Is(err, os.ErrDeadlineExceeded):
		c.setEnd(EndTimeout)
		c.log.Debug("idle timeout; closing", zap.Stringer("state", c.state))
		c.fail("", "disconnected for inactivity")
	case errors.Is(err, io.EOF):
		c.log.Debug("client closed the connection", zap.Stringer("state", c.state))
	default:
		c.log.Debug("read failed", zap.Error(err))
	}
}

// badCommand counts a client error and, at the state's limit, says so and
// ends the connection (logged at debug level, as in readFailed).
func (c *conn) badCommand() {
	c.bad++
	limit := c.cfg.maxBad
	if c.state == stateAuthorization {
		limit = c.cfg.maxBadAuth
	}
	if limit > 0 && c.bad >= limit {
		c.setEnd(EndBadCommands)
		c.log.Debug("too many bad commands; closing", zap.Int("count", c.bad), zap.Stringer("state", c.state))
		c.fail("", "too many bad commands")
		c.closing = true
	}
}

// Writing. Errors are remembered in c.werr; once set, nothing more is
// written and the main loop ends.

func (c *conn) writeString(s string) {
	if c.werr != nil {
		return
	}
	if _, err := c.bw.WriteString(s); err != nil {
		c.werr = err
	}
}

func (c *conn) writeBytes(b []byte) {
	if c.werr != nil {
		return
	}
	if _, err := c.bw.Write(b); err != nil {
		c.werr = err
	}
}

func (c *conn) flush() bool {
	if c.werr != nil {
		return false
	}
	if err := c.bw.Flush(); err != nil {
		c.werr = err
		c.log.Debug("write failed", zap.Error(err))
		return false
	}
	return true
}

// ok writes "+OK text".
func (c *conn) ok(text string) {
	c.cmdOK = true
	if text == "" {
		c.writeString("+OK\r\n")
		return
	}
	c.writeString("+OK ")
	c.writeString(text)
	c.writeString("\r\n")
}

// fail writes "-ERR [code] text". Both are sanitized: they may come from a
// backend, and a CR or LF in them would let it forge protocol lines.
func (c *conn) fail(code, text string) {
	c.cmdOK = false
	c.writeString("-ERR ")
	if code = sanitizeCode(code); code != "" {
		c.writeString("[")
		c.writeString(code)
		c.writeString("] ")
	}
	if text = sanitizeText(text); text == "" {
		text = "failed"
	}
	c.writeString(text)
	c.writeString("\r\n")
}

// failError answers with e and ends the connection if e asks for it.
func (c *conn) failError(e *Error) {
	c.fail(e.Code, e.Message)
	if e.Close {
		c.setEnd(EndError)
		c.closing = true
	}
}

// writeNumLine writes "a b\r\n" for LIST and STAT, without allocating.
func (c *conn) writeNumLine(prefix string, a int64, b int64) {
	c.num = append(c.num[:0], prefix...)
	c.num = strconv.AppendInt(c.num, a, 10)
	c.num = append(c.num, ' ')
	c.num = strconv.AppendInt(c.num, b, 10)
	c.num = append(c.num, '\r', '\n')
	c.writeBytes(c.num)
}

// writeNumStrLine writes "prefix a s\r\n" for UIDL.
func (c *conn) writeNumStrLine(prefix string, a int64, s string) {
	c.num = append(c.num[:0], prefix...)
	c.num = strconv.AppendInt(c.num, a, 10)
	c.num = append(c.num, ' ')
	c.num = append(c.num, s...)
	c.num = append(c.num, '\r', '\n')
	c.writeBytes(c.num)
}

// sanitizeText makes s safe for a status line: control characters (CR and
// LF above all) become spaces.
func sanitizeText(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	b := []byte(s)
	for i, ch := range b {
		if ch < 0x20 || ch == 0x7f {
			b[i] = ' '
		}
	}
	return string(b)
}

// sanitizeCode keeps a response code to printable ASCII without brackets and
// spaces (RFC 2449 section 8); anything else drops the code.
func sanitizeCode(code string) string {
	for i := 0; i < len(code); i++ {
		if ch := code[i]; ch <= 0x20 || ch >= 0x7f || ch == '[' || ch == ']' {
			return ""
		}
	}
	return code
}

// deadlineWriter gives every write to the client its own deadline, so a
// client that stops reading is dropped after WriteTimeout even in the middle
// of a long message (bufio.Writer flushes by itself when full). It also
// counts the octets written.
type deadlineWriter struct {
	nc      net.Conn
	timeout time.Duration
	sent    *int64
	obs     Observer
}

func (c *conn) deadlineWriter() deadlineWriter {
	return deadlineWriter{nc: c.nc, timeout: c.cfg.writeTimeout, sent: &c.sum.BytesSent, obs: c.cfg.observer}
}

func (w deadlineWriter) Write(p []byte) (int, error) {
	if w.timeout > 0 {
		if err := w.nc.SetWriteDeadline(time.Now().Add(w.timeout)); err != nil {
			return 0, err
		}
	}
	n, err := w.nc.Write(p)
	*w.sent += int64(n)
	if w.obs != nil && n > 0 {
		w.obs.BytesSent(n)
	}
	return n, err
}
