package pop3client

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// DefaultMaxLineLength is the line limit when Options.MaxLineLength is
// zero, in octets with the line end: a longer status or listing line is cut
// there.
const DefaultMaxLineLength = 8 << 10

// DefaultTimeout is DialContext's Options.Timeout when that is zero.
const DefaultTimeout = time.Minute

const (
	defaultReadBufferSize = 16 << 10
	dialTimeout           = 10 * time.Second // Dial and DialTLS
)

// TLSMode says how DialContext secures a connection.
type TLSMode int

const (
	// TLSNone is plain TCP.
	TLSNone TLSMode = iota
	// TLSStartTLS is plain TCP, then STLS (RFC 2595) right after the
	// greeting.
	TLSStartTLS
	// TLSImplicit is TLS from the first octet (RFC 8314, port 995).
	TLSImplicit
)

// Options are DialContext's settings. The zero value is plain TCP, strict
// lines and a one-minute timeout.
type Options struct {
	// TLS is how the connection is secured.
	TLS TLSMode
	// TLSConfig is for TLSStartTLS and TLSImplicit. When it names no
	// ServerName (and does not skip verification), the host of the address
	// is used; nil means a default configuration.
	TLSConfig *tls.Config
	// Timeout bounds connecting, the TLS handshake and, once connected,
	// every read and write on the connection: none waits longer. Zero
	// means DefaultTimeout.
	Timeout time.Duration
	// Dialer connects; nil means a net.Dialer with Timeout.
	Dialer *net.Dialer
	// ReadBufferSize is the size of the client's read buffer (16 KiB if
	// zero); bigger means fewer reads for big messages.
	ReadBufferSize int
	// MaxLineLength is the line limit for status and listing lines, in
	// octets with the line end; zero means DefaultMaxLineLength.
	MaxLineLength int
	// AllowBareLF accepts a bare LF as the end of a line, as sloppy servers
	// send them. Without it, a line not ended by CRLF is an error.
	AllowBareLF bool
}

// Client is one POP3 connection.
type Client struct {
	conn      net.Conn // the connection, TLS once secured
	r         *bufio.Reader
	w         *bufio.Writer
	addr      string // as dialled, for errors
	greeting  string
	timeout   time.Duration
	maxLine   int
	bareLF    bool
	caps      Capabilities // the last CAPA answer; nil without one
	capaAsked bool         // Capa was called: Login asks again after login
	stop      func() bool  // ends DialContext's watch of its context
	last      string       // the name of the last command sent, for errors
	buf       []byte       // command lines, and lines longer than the buffer
	dot       DotReader
}

// ErrResponse is a -ERR answer.
type ErrResponse struct {
	// Command is what was answered, without its arguments (they may be
	// secret): "RETR", "AUTH PLAIN", or "greeting".
	Command string
	// Line is the -ERR line without its line end.
	Line string
}

// Error says which command the server refused, and how.
func (e *ErrResponse) Error() string {
	return fmt.Sprintf("%s: the server answered %q", e.Command, e.Line)
}

// Code returns the RFC 2449 response code of the -ERR line, e.g. "AUTH" or
// "IN-USE", or "" when it has none.
func (e *ErrResponse) Code() string {
	rest, ok := strings.CutPrefix(e.Line, "-ERR [")
	if !ok {
		return ""
	}
	code, _, _ := strings.Cut(rest, "]")
	return code
}

// ErrNoTerminator is returned when the connection ends inside a multi-line
// response: the data before it must be treated as truncated.
var ErrNoTerminator = errors.New("pop3client: connection ended before the terminating dot")

// ErrNoSTLS is in the error of StartTLS (and DialContext with TLSStartTLS)
// when the STLS command itself failed: the server refused it, or the
// connection ended at it. A failed TLS handshake is another error.
var ErrNoSTLS = errors.New("pop3client: STLS failed")

var errBareLF = errors.New("pop3client: bare LF in multi-line response")

// stlsError is an STLS failure: its own message, and ErrNoSTLS.
type stlsError struct{ err error }

func (e stlsError) Error() string   { return e.err.Error() }
func (e stlsError) Unwrap() []error { return []error{e.err, ErrNoSTLS} }

// Dial connects over TCP and reads the greeting, as NewClient. It sets no
// deadlines: see SetDeadline.
func Dial(addr string) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, dialTimeout)
	if err != nil {
		return nil, err
	}
	return NewClient(conn)
}

// DialTLS connects with implicit TLS and reads the greeting, as NewClient.
func DialTLS(addr string, cfg *tls.Config) (*Client, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: dialTimeout}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return NewClient(conn)
}

// NewClient reads the greeting on an established connection, with the
// defaults of Options (strict lines, no timeout). A -ERR greeting (a server
// at its connection limits, or shutting down) is no error here: it is in
// Greeting for the caller to judge. NewClient closes conn when it fails.
func NewClient(conn net.Conn) (*Client, error) {
	c := newClient(conn, &Options{}, 0)
	line, err := c.readLine(c.maxLine)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	c.greeting = string(line)
	return c, nil
}

// DialContext connects to addr, secures the connection as o says (nil
// means the zero Options) and reads the greeting, which must be +OK (a
// -ERR greeting is an *ErrResponse). Cancelling ctx closes the connection,
// also after DialContext has returned.
func DialContext(ctx context.Context, addr string, o *Options) (*Client, error) {
	if o == nil {
		o = &Options{}
	}
	if o.TLS < TLSNone || o.TLS > TLSImplicit {
		return nil, fmt.Errorf("pop3client: unknown TLS mode %d", o.TLS)
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	d := net.Dialer{Timeout: timeout}
	if o.Dialer != nil {
		d = *o.Dialer
	}
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", addr, err)
	}
	conn := raw
	if o.TLS == TLSImplicit {
		tc, err := handshake(ctx, raw, tlsConfig(o.TLSConfig, addr), timeout)
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS with %s: %w", addr, err)
		}
		conn = tc
	}
	c := newClient(conn, o, timeout)
	c.addr = addr
	c.stop = context.AfterFunc(ctx, func() { raw.Close() })
	fail := func(err error) (*Client, error) {
		c.Close()
		return nil, err
	}
	line, err := c.status("greeting")
	if err != nil {
		return fail(err)
	}
	c.greeting = string(line)
	if o.TLS == TLSStartTLS {
		if err := c.StartTLS(ctx, o.TLSConfig); err != nil {
			return fail(err)
		}
	}
	return c, nil
}

func newClient(conn net.Conn, o *Options, timeout time.Duration) *Client {
	c := &Client{timeout: timeout, maxLine: o.MaxLineLength, bareLF: o.AllowBareLF, last: "greeting"}
	if c.maxLine <= 0 {
		c.maxLine = DefaultMaxLineLength
	}
	size := o.ReadBufferSize
	if size <= 0 {
		size = defaultReadBufferSize
	}
	c.r = bufio.NewReaderSize(nil, size)
	c.w = bufio.NewWriter(nil)
	c.setConn(conn)
	return c
}

// setConn makes conn the connection; anything buffered from the old one is
// dropped (after STLS, nothing sent before the handshake may count).
func (c *Client) setConn(conn net.Conn) {
	c.conn = conn
	var rw io.ReadWriter = conn
	if c.timeout > 0 {
		rw = timeoutConn{conn, c.timeout}
	}
	c.r.Reset(rw)
	c.w.Reset(rw)
}

// timeoutConn gives every read and write a deadline.
type timeoutConn struct {
	net.Conn
	d time.Duration
}

func (t timeoutConn) Read(p []byte) (int, error) {
	t.Conn.SetReadDeadline(time.Now().Add(t.d))
	return t.Conn.Read(p)
}

func (t timeoutConn) Write(p []byte) (int, error) {
	t.Conn.SetWriteDeadline(time.Now().Add(t.d))
	return t.Conn.Write(p)
}

func tlsConfig(cfg *tls.Config, addr string) *tls.Config {
	if cfg != nil && (cfg.ServerName != "" || cfg.InsecureSkipVerify) {
		return cfg
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if cfg == nil {
		return &tls.Config{ServerName: host}
	}
	cfg = cfg.Clone()
	cfg.ServerName = host
	return cfg
}

func handshake(ctx context.Context, conn net.Conn, cfg *tls.Config, timeout time.Duration) (*tls.Conn, error) {
	tc := tls.Client(conn, cfg)
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return tc, tc.HandshakeContext(ctx)
}

// StartTLS sends STLS and makes the connection TLS with cfg (see
// Options.TLSConfig). Capabilities read before are forgotten: they must be
// asked again over TLS. When the STLS command fails, the error wraps
// ErrNoSTLS; a failed handshake leaves the connection unusable.
func (c *Client) StartTLS(ctx context.Context, cfg *tls.Config) error {
	if _, err := c.cmdLine("STLS", "STLS"); err != nil {
		return stlsError{err}
	}
	addr := c.addr
	if addr == "" {
		addr = c.conn.RemoteAddr().String()
	}
	tc, err := handshake(ctx, c.conn, tlsConfig(cfg, addr), c.timeout)
	if err != nil {
		return fmt.Errorf("TLS with %s: %w", addr, err)
	}
	c.setConn(tc)
	c.caps = nil
	return nil
}

// Greeting returns the server's first line, without its line end.
func (c *Client) Greeting() string { return c.greeting }

// Conn returns the connection (TLS once secured), for tests that write to
// it raw. Writing to it while a command is under way mixes the two.
func (c *Client) Conn() net.Conn { return c.conn }

// SetDeadline sets the connection's read and write deadline. With
// Options.Timeout, each read and write sets its own instead.
func (c *Client) SetDeadline(t time.Time) error { return c.conn.SetDeadline(t) }

// Close closes the connection without QUIT: for the server, a dropped
// client, whose deletions are not made.
func (c *Client) Close() error {
	if c.stop != nil {
		c.stop()
	}
	return c.conn.Close()
}

// Quit sends QUIT (the server then deletes the messages marked with DELE),
// reads the answer and closes the connection.
func (c *Client) Quit() error {
	_, err := c.cmdLine("QUIT", "QUIT")
	c.Close()
	return err
}

// readLine reads one line and returns it without its line end; the slice
// is valid until the next read. A line longer than max octets (with its
// line end) is cut there, the rest read and dropped. A strict client fails
// on a line not ended by CRLF, returning the line as it came.
func (c *Client) readLine(max int) ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	end := lastTwo(line, [2]byte{})
	if errors.Is(err, bufio.ErrBufferFull) {
		c.buf = append(c.buf[:0], line[:min(len(line), max)]...)
		for errors.Is(err, bufio.ErrBufferFull) {
			line, err = c.r.ReadSlice('\n')
			end = lastTwo(line, end)
			c.buf = append(c.buf, line[:min(len(line), max-len(c.buf))]...)
		}
		line = c.buf
	} else if len(line) > max {
		line = line[:max]
	}
	if err != nil {
		return line, err
	}
	if c.bareLF {
		line = bytes.TrimSuffix(line, []byte("\n"))
		return bytes.TrimSuffix(line, []byte("\r")), nil
	}
	if end != [2]byte{'\r', '\n'} {
		return line, fmt.Errorf("pop3client: line not ended by CRLF: %q", line)
	}
	return bytes.TrimSuffix(line, []byte("\r\n")), nil
}

// lastTwo returns the last two octets of what was read, given those before
// frag.
func lastTwo(frag []byte, before [2]byte) [2]byte {
	switch len(frag) {
	case 0:
		return before
	case 1:
		return [2]byte{before[1], frag[0]}
	}
	return [2]byte{frag[len(frag)-2], frag[len(frag)-1]}
}

// ReadLine reads one line without its line end: raw access for tests. Read
// errors are returned as they are (io.EOF when the server closed).
func (c *Client) ReadLine() (string, error) {
	line, err := c.readLine(c.maxLine)
	return string(line), err
}

// Send writes one command line (CRLF is added) and flushes it: raw access
// for tests, and pipelining; read the answers with Status.
func (c *Client) Send(format string, args ...any) error {
	c.buf = fmt.Appendf(c.buf[:0], format, args...)
	return c.send(commandName(string(c.buf)), c.buf)
}

// Status reads a status line and returns it. A -ERR line is returned with
// an *ErrResponse, a line that is neither +OK nor -ERR with an error.
func (c *Client) Status() (string, error) {
	line, err := c.status(c.last)
	return string(line), err
}

// Cmd sends a command and reads its status line, as Send and Status.
func (c *Client) Cmd(format string, args ...any) (string, error) {
	if err := c.Send(format, args...); err != nil {
		return "", err
	}
	return c.Status()
}

// commandName is a command line's name for errors: its first word, for
// AUTH with the mechanism. The arguments may be secret.
func commandName(line string) string {
	name, rest, _ := strings.Cut(line, " ")
	if mech, _, _ := strings.Cut(rest, " "); strings.EqualFold(name, "AUTH") && mech != "" {
		return name + " " + mech
	}
	return name
}

// send writes line, CRLF and flushes; what names the command in errors and
// in the answer's.
func (c *Client) send(what string, line []byte) error {
	c.last = what
	c.w.Write(line)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// status reads a status line; the slice is valid until the next read.
func (c *Client) status(what string) ([]byte, error) {
	line, err := c.readLine(c.maxLine)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return line, fmt.Errorf("%s: %w", what, err)
	}
	switch {
	case bytes.HasPrefix(line, []byte("+OK")):
		return line, nil
	case bytes.HasPrefix(line, []byte("-ERR")):
		return line, &ErrResponse{Command: what, Line: string(line)}
	}
	return line, fmt.Errorf("%s: not a POP3 answer: %q", what, line)
}

// cmd sends line and reads the status.
func (c *Client) cmd(what string, line []byte) ([]byte, error) {
	if err := c.send(what, line); err != nil {
		return nil, err
	}
	return c.status(what)
}

// cmdLine sends the command line made of parts, built without allocating,
// and reads the status.
func (c *Client) cmdLine(what string, parts ...string) ([]byte, error) {
	c.buf = c.buf[:0]
	for _, p := range parts {
		c.buf = append(c.buf, p...)
	}
	return c.cmd(what, c.buf)
}

// cmdNums sends name with the numbers as arguments, built without
// allocating, and reads the status.
func (c *Client) cmdNums(name string, nums ...int) ([]byte, error) {
	c.buf = append(c.buf[:0], name...)
	for _, n := range nums {
		c.buf = append(c.buf, ' ')
		c.buf = strconv.AppendInt(c.buf, int64(n), 10)
	}
	return c.cmd(name, c.buf)
}

// lines reads a multi-line answer line by line: fn gets each line without
// its line end, dot-stuffing undone, cut at max octets; the slice is valid
// until fn returns.
func (c *Client) lines(what string, max int, fn func(line []byte)) error {
	for {
		line, err := c.readLine(max)
		if err != nil {
			return fmt.Errorf("%s: %w", what, ended(err))
		}
		if len(line) == 1 && line[0] == '.' {
			return nil
		}
		if len(line) > 0 && line[0] == '.' {
			line = line[1:]
		}
		fn(line)
	}
}

// ended turns the end of the connection inside a multi-line answer into
// ErrNoTerminator.
func ended(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return ErrNoTerminator
	case errors.Is(err, net.ErrClosed), errors.Is(err, syscall.ECONNRESET):
		return fmt.Errorf("%w: %w", ErrNoTerminator, err)
	}
	return err
}
