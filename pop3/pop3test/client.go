// Package pop3test is a small, strict POP3 client for tests and benchmarks:
// it undoes dot-stuffing exactly and keeps every byte, so tests can compare
// what a client receives with what the IMAP server holds. (The popular Go
// POP3 clients do not, see REFERENCES.md.)
package pop3test

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"
)

// Client is one POP3 connection.
type Client struct {
	Conn net.Conn
	R    *bufio.Reader
	// Greeting is the server's first line.
	Greeting string
}

// Dial connects and reads the greeting.
func Dial(addr string) (*Client, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	return NewClient(conn)
}

// DialTLS connects with implicit TLS.
func DialTLS(addr string, cfg *tls.Config) (*Client, error) {
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	return NewClient(conn)
}

// NewClient reads the greeting on an established connection.
func NewClient(conn net.Conn) (*Client, error) {
	c := &Client{Conn: conn, R: bufio.NewReader(conn)}
	line, err := c.ReadLine()
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.Greeting = line
	return c, nil
}

// Close closes the connection without QUIT (a dropped client).
func (c *Client) Close() error { return c.Conn.Close() }

// ReadLine reads one line without its CRLF.
func (c *Client) ReadLine() (string, error) {
	line, err := c.R.ReadString('\n')
	if err != nil {
		return line, err
	}
	if !strings.HasSuffix(line, "\r\n") {
		return line, fmt.Errorf("pop3test: line not ended by CRLF: %q", line)
	}
	return line[:len(line)-2], nil
}

// Send writes one command line.
func (c *Client) Send(format string, args ...any) error {
	_, err := fmt.Fprintf(c.Conn, format+"\r\n", args...)
	return err
}

// Cmd sends a command and returns the status line. A -ERR answer is an
// *ErrResponse error.
func (c *Client) Cmd(format string, args ...any) (string, error) {
	if err := c.Send(format, args...); err != nil {
		return "", err
	}
	return c.Status()
}

// Status reads a status line.
func (c *Client) Status() (string, error) {
	line, err := c.ReadLine()
	if err != nil {
		return line, err
	}
	switch {
	case strings.HasPrefix(line, "+OK"):
		return line, nil
	case strings.HasPrefix(line, "-ERR"):
		return line, &ErrResponse{Line: line}
	default:
		return line, fmt.Errorf("pop3test: bad status line %q", line)
	}
}

// ErrResponse is a -ERR answer.
type ErrResponse struct{ Line string }

func (e *ErrResponse) Error() string { return e.Line }

// Code returns the RFC 2449 response code of the -ERR line, e.g. "AUTH".
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
var ErrNoTerminator = errors.New("pop3test: connection ended before the terminating dot")

// MultiLine reads the body of a multi-line response and undoes the
// dot-stuffing: the returned bytes are the payload with CRLFs as sent.
func (c *Client) MultiLine() ([]byte, error) {
	var buf bytes.Buffer
	for {
		line, err := c.R.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
				return buf.Bytes(), ErrNoTerminator
			}
			return buf.Bytes(), err
		}
		full := errors.Is(err, bufio.ErrBufferFull)
		if !full && string(line) == ".\r\n" {
			return buf.Bytes(), nil
		}
		if !full && len(line) >= 2 && line[len(line)-2] != '\r' {
			return buf.Bytes(), fmt.Errorf("pop3test: bare LF in multi-line response")
		}
		if line[0] == '.' {
			line = line[1:]
		}
		buf.Write(line)
		for full { // the rest of a line longer than the buffer: no stuffing inside
			line, err = c.R.ReadSlice('\n')
			full = errors.Is(err, bufio.ErrBufferFull)
			if err != nil && !full {
				return buf.Bytes(), ErrNoTerminator
			}
			buf.Write(line)
		}
	}
}

// Login sends USER and PASS.
func (c *Client) Login(user, pass string) error {
	if _, err := c.Cmd("USER %s", user); err != nil {
		return err
	}
	_, err := c.Cmd("PASS %s", pass)
	return err
}

// Retr returns message n as sent (un-stuffed).
func (c *Client) Retr(n int) ([]byte, error) {
	if _, err := c.Cmd("RETR %d", n); err != nil {
		return nil, err
	}
	return c.MultiLine()
}

// Top returns TOP n lines.
func (c *Client) Top(n, lines int) ([]byte, error) {
	if _, err := c.Cmd("TOP %d %d", n, lines); err != nil {
		return nil, err
	}
	return c.MultiLine()
}

// Stat returns the message count and total size.
func (c *Client) Stat() (count int, size int64, err error) {
	line, err := c.Cmd("STAT")
	if err != nil {
		return 0, 0, err
	}
	if _, err := fmt.Sscanf(line, "+OK %d %d", &count, &size); err != nil {
		return 0, 0, fmt.Errorf("pop3test: STAT %q: %w", line, err)
	}
	return count, size, nil
}

// Entry is a line of a LIST or UIDL listing.
type Entry struct {
	N     int
	Value string
}

// Listing runs LIST or UIDL (without argument) and parses the entries.
func (c *Client) Listing(cmd string) ([]Entry, error) {
	if _, err := c.Cmd("%s", cmd); err != nil {
		return nil, err
	}
	body, err := c.MultiLine()
	if err != nil {
		return nil, err
	}
	var out []Entry
	for _, line := range strings.Split(strings.TrimSuffix(string(body), "\r\n"), "\r\n") {
		if line == "" {
			continue
		}
		num, val, ok := strings.Cut(line, " ")
		n, err := strconv.Atoi(num)
		if !ok || err != nil {
			return nil, fmt.Errorf("pop3test: bad %s line %q", cmd, line)
		}
		out = append(out, Entry{N: n, Value: val})
	}
	return out, nil
}

// Quit sends QUIT, reads the answer and closes the connection.
func (c *Client) Quit() error {
	defer c.Conn.Close()
	_, err := c.Cmd("QUIT")
	return err
}
