package main

// A small POP3 client for import-uidl: just what reading an old server's
// UIDLs takes (STLS or implicit TLS, USER/PASS or AUTH PLAIN, UIDL, LIST,
// TOP n 0, QUIT). It never sends DELE, RETR or anything else that changes
// the old maildrop.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// pop3Options say how to reach the old server.
type pop3Options struct {
	Addr    string      // host:port
	TLS     string      // none | starttls | implicit
	TLSConf *tls.Config // for starttls and implicit
	Timeout time.Duration
}

// pop3Client is one connection to the old POP3 server.
type pop3Client struct {
	conn    net.Conn
	r       *bufio.Reader
	w       *bufio.Writer
	timeout time.Duration
	caps    map[string]string // CAPA: name (upper case) → arguments; nil if CAPA failed
	stop    func() bool       // ends the context watch
}

// errPOP3 is a -ERR answer.
type errPOP3 struct {
	cmd  string // the command, without arguments (they may be secret)
	line string
}

func (e *errPOP3) Error() string { return fmt.Sprintf("%s: the server answered %q", e.cmd, e.line) }

// dialPOP3 connects, secures the connection as asked and reads the
// greeting. Cancelling ctx closes the connection.
func dialPOP3(ctx context.Context, o pop3Options) (*pop3Client, error) {
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	d := net.Dialer{Timeout: o.Timeout}
	raw, err := d.DialContext(ctx, "tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("connect %s: %w", o.Addr, err)
	}
	conn := raw
	if o.TLS == "implicit" {
		tc := tls.Client(raw, o.TLSConf)
		hctx, cancel := context.WithTimeout(ctx, o.Timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			raw.Close()
			return nil, fmt.Errorf("TLS with %s: %w", o.Addr, err)
		}
		conn = tc
	}
	c := &pop3Client{timeout: o.Timeout}
	c.setConn(conn)
	c.stop = context.AfterFunc(ctx, func() { raw.Close() })
	fail := func(err error) (*pop3Client, error) {
		c.Close()
		return nil, err
	}
	if _, err := c.status("greeting"); err != nil {
		return fail(err)
	}
	if o.TLS == "starttls" {
		if _, err := c.cmd("STLS", "STLS"); err != nil {
			return fail(fmt.Errorf("%w (the server offers no STLS: use -pop3-tls implicit, or none on a trusted network)", err))
		}
		tc := tls.Client(conn, o.TLSConf)
		hctx, cancel := context.WithTimeout(ctx, o.Timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			return fail(fmt.Errorf("TLS with %s: %w", o.Addr, err))
		}
		c.setConn(tc)
	}
	c.caps = c.capa()
	return c, nil
}

func (c *pop3Client) setConn(conn net.Conn) {
	c.conn = conn
	c.r = bufio.NewReaderSize(conn, 16<<10)
	c.w = bufio.NewWriter(conn)
}

// Close ends the connection without QUIT.
func (c *pop3Client) Close() error {
	if c.stop != nil {
		c.stop()
	}
	return c.conn.Close()
}

// Quit sends QUIT (nothing was marked for deletion, so the server's UPDATE
// changes nothing) and closes.
func (c *pop3Client) Quit() error {
	_, err := c.cmd("QUIT", "QUIT")
	c.Close()
	return err
}

const maxPOP3Line = 8 << 10

// readLine reads one line without its line end (CRLF, or a bare LF from a
// sloppy server). A line longer than max is cut to max; the rest is read
// and dropped.
func (c *pop3Client) readLine(max int) ([]byte, error) {
	var line []byte
	for {
		frag, err := c.r.ReadSlice('\n')
		if len(line) < max {
			line = append(line, frag[:min(len(frag), max-len(line))]...)
		}
		if err == nil {
			break
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	return bytes.TrimSuffix(line, []byte("\r")), nil
}

// send writes command lines (pipelined when several) in one flush.
func (c *pop3Client) send(lines ...string) error {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	for _, l := range lines {
		c.w.WriteString(l)
		c.w.WriteString("\r\n")
	}
	return c.w.Flush()
}

// status reads a status line: +OK (returned without "+OK") or -ERR.
func (c *pop3Client) status(what string) (string, error) {
	c.conn.SetDeadline(time.Now().Add(c.timeout))
	b, err := c.readLine(maxPOP3Line)
	if err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	line := string(b)
	switch {
	case strings.HasPrefix(line, "+OK"):
		return strings.TrimSpace(line[3:]), nil
	case strings.HasPrefix(line, "-ERR"):
		return "", &errPOP3{cmd: what, line: line}
	}
	return "", fmt.Errorf("%s: not a POP3 answer: %q", what, line)
}

// cmd sends line and reads the status; what names it in errors (line may
// hold a password).
func (c *pop3Client) cmd(what, line string) (string, error) {
	if err := c.send(line); err != nil {
		return "", fmt.Errorf("%s: %w", what, err)
	}
	return c.status(what)
}

// multiLine reads a multi-line answer's lines, dot-stuffing undone, each
// handed to fn with its CRLF (which fn may keep). Lines are cut at maxLine.
func (c *pop3Client) multiLine(what string, maxLine int, fn func(line []byte)) error {
	for {
		c.conn.SetDeadline(time.Now().Add(c.timeout))
		line, err := c.readLine(maxLine)
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
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

// capa asks for the capabilities; nil when the server has no CAPA.
func (c *pop3Client) capa() map[string]string {
	if _, err := c.cmd("CAPA", "CAPA"); err != nil {
		return nil
	}
	caps := make(map[string]string)
	err := c.multiLine("CAPA", maxPOP3Line, func(line []byte) {
		name, args, _ := strings.Cut(string(line), " ")
		caps[strings.ToUpper(name)] = args
	})
	if err != nil {
		return nil
	}
	return caps
}

// Login authenticates: USER/PASS, or AUTH PLAIN where the server offers
// SASL PLAIN and not USER.
func (c *pop3Client) Login(user, password string) error {
	if strings.ContainsAny(user+password, "\r\n") {
		return errors.New("login: user name or password holds a line break")
	}
	_, hasUser := c.caps["USER"]
	if c.caps != nil && !hasUser && hasWord(c.caps["SASL"], "PLAIN") {
		ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
		if _, err := c.cmd("AUTH PLAIN", "AUTH PLAIN "+ir); err != nil {
			return err
		}
	} else {
		if _, err := c.cmd("USER", "USER "+user); err != nil {
			return err
		}
		if _, err := c.cmd("PASS", "PASS "+password); err != nil {
			return err
		}
	}
	// Capabilities may differ after login (PIPELINING in particular).
	if caps := c.capa(); caps != nil {
		c.caps = caps
	}
	return nil
}

func hasWord(list, word string) bool {
	for _, w := range strings.Fields(list) {
		if strings.EqualFold(w, word) {
			return true
		}
	}
	return false
}

// pop3Entry is a line of a UIDL or LIST listing.
type pop3Entry struct {
	N     int
	Value string
}

// Listing runs UIDL or LIST and returns its entries in the server's order.
func (c *pop3Client) Listing(cmd string) ([]pop3Entry, error) {
	if _, err := c.cmd(cmd, cmd); err != nil {
		return nil, err
	}
	var out []pop3Entry
	var bad error
	err := c.multiLine(cmd, maxPOP3Line, func(line []byte) {
		f := strings.Fields(string(line))
		if len(f) < 2 {
			bad = firstErr(bad, fmt.Errorf("%s: bad line %q", cmd, line))
			return
		}
		n, err := strconv.Atoi(f[0])
		if err != nil || n < 1 {
			bad = firstErr(bad, fmt.Errorf("%s: bad message number in %q", cmd, line))
			return
		}
		out = append(out, pop3Entry{N: n, Value: f[1]})
	})
	if err != nil {
		return nil, err
	}
	return out, bad
}

// firstErr keeps the first error.
func firstErr(first, next error) error {
	if first != nil {
		return first
	}
	return next
}

// pop3TopBatch is how many TOP commands are pipelined at once.
const pop3TopBatch = 64

// Headers runs TOP n 0 for each message number and hands each header (with
// CRLFs, dot-stuffing undone, cut at maxHeader octets) to fn. A message the
// server refuses (-ERR) is left out. Commands are pipelined when the server
// offers PIPELINING.
func (c *pop3Client) Headers(ns []int, maxHeader int, fn func(n int, header []byte)) error {
	batch := 1
	if _, ok := c.caps["PIPELINING"]; ok {
		batch = pop3TopBatch
	}
	var hdr bytes.Buffer
	for len(ns) > 0 {
		k := min(batch, len(ns))
		lines := make([]string, k)
		for i, n := range ns[:k] {
			lines[i] = fmt.Sprintf("TOP %d 0", n)
		}
		if err := c.send(lines...); err != nil {
			return fmt.Errorf("TOP: %w", err)
		}
		for _, n := range ns[:k] {
			if _, err := c.status("TOP"); err != nil {
				var e *errPOP3
				if errors.As(err, &e) {
					continue // gone, or no TOP for this one: no header
				}
				return err
			}
			hdr.Reset()
			err := c.multiLine("TOP", maxHeader, func(line []byte) {
				if hdr.Len()+len(line)+2 <= maxHeader {
					hdr.Write(line)
					hdr.WriteString("\r\n")
				}
			})
			if err != nil {
				return err
			}
			fn(n, hdr.Bytes())
		}
		ns = ns[k:]
	}
	return nil
}
