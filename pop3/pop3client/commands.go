package pop3client

import (
	"bytes"
	"cmp"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Capabilities are a CAPA answer (RFC 2449): capability name, in upper
// case, to its arguments (the rest of the line, maybe "").
type Capabilities map[string]string

// Has reports whether the capability name is offered.
func (c Capabilities) Has(name string) bool {
	_, ok := c[strings.ToUpper(name)]
	return ok
}

// HasArg reports whether the capability name is offered with arg among its
// arguments (case-insensitive), e.g. HasArg("SASL", "PLAIN").
func (c Capabilities) HasArg(name, arg string) bool {
	for _, w := range strings.Fields(c[strings.ToUpper(name)]) {
		if strings.EqualFold(w, arg) {
			return true
		}
	}
	return false
}

// Capa asks for the capabilities. The answer is kept for Login, Headers and
// Caps; a failure leaves what was kept before.
func (c *Client) Capa() (Capabilities, error) {
	c.capaAsked = true
	if _, err := c.cmdLine("CAPA", "CAPA"); err != nil {
		return nil, err
	}
	caps := make(Capabilities)
	err := c.lines("CAPA", c.maxLine, func(line []byte) {
		name, args, _ := strings.Cut(string(line), " ")
		caps[strings.ToUpper(name)] = args
	})
	if err != nil {
		return nil, err
	}
	c.caps = caps
	return caps, nil
}

// Caps returns the capabilities the last successful Capa read, nil before.
func (c *Client) Caps() Capabilities { return c.caps }

// Login authenticates with USER and PASS, or with AUTH PLAIN where the
// capabilities read by Capa offer SASL PLAIN and not USER. When Capa was
// called before, Login asks again afterwards: capabilities may differ once
// logged in (PIPELINING in particular).
func (c *Client) Login(user, password string) error {
	if strings.ContainsAny(user+password, "\r\n") {
		return errors.New("login: user name or password holds a line break")
	}
	if c.caps != nil && !c.caps.Has("USER") && c.caps.HasArg("SASL", "PLAIN") {
		if err := c.AuthPlain(user, password); err != nil {
			return err
		}
	} else {
		if _, err := c.cmdLine("USER", "USER ", user); err != nil {
			return err
		}
		if _, err := c.cmdLine("PASS", "PASS ", password); err != nil {
			return err
		}
	}
	if c.capaAsked {
		c.Capa() // on failure, the capabilities from before login stay
	}
	return nil
}

// AuthPlain authenticates with AUTH PLAIN (RFC 4616) and the credentials
// as the initial response (RFC 5034).
func (c *Client) AuthPlain(user, password string) error {
	ir := base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + password))
	_, err := c.cmdLine("AUTH PLAIN", "AUTH PLAIN ", ir)
	return err
}

// Stat returns the number of messages and their total size in octets.
func (c *Client) Stat() (count int, size int64, err error) {
	line, err := c.cmdLine("STAT", "STAT")
	if err != nil {
		return 0, 0, err
	}
	_, rest := field(line) // +OK
	num, rest := field(rest)
	octets, _ := field(rest)
	count, err1 := strconv.Atoi(string(num))
	size, err2 := strconv.ParseInt(string(octets), 10, 64)
	if err1 != nil || err2 != nil || count < 0 || size < 0 {
		return 0, 0, fmt.Errorf("STAT: bad answer %q", line)
	}
	return count, size, nil
}

// Entry is a line of a LIST or UIDL listing: the message number and the
// size or unique-id.
type Entry struct {
	N     int    // the message number, from 1
	Value string // the second field of the line: LIST's size, UIDL's unique-id
}

// Listing runs cmd, LIST or UIDL without argument, and returns its entries
// in the server's order.
func (c *Client) Listing(cmd string) ([]Entry, error) {
	return c.AppendListing(nil, cmd)
}

// AppendListing is Listing appending to dst: with room for the entries,
// the only allocations are the Value strings. A line that is no entry (no
// second field, or a message number that is not one) is an error, returned
// once the whole listing is read, with the entries of the other lines.
func (c *Client) AppendListing(dst []Entry, cmd string) ([]Entry, error) {
	what := commandName(cmd)
	if _, err := c.cmdLine(what, cmd); err != nil {
		return dst, err
	}
	var bad error
	err := c.lines(what, c.maxLine, func(line []byte) {
		num, rest := field(line)
		value, _ := field(rest)
		if len(value) == 0 {
			bad = cmp.Or(bad, fmt.Errorf("%s: bad line %q", what, line))
			return
		}
		n, err := strconv.Atoi(string(num))
		if err != nil || n < 1 {
			bad = cmp.Or(bad, fmt.Errorf("%s: bad message number in %q", what, line))
			return
		}
		dst = append(dst, Entry{N: n, Value: string(value)})
	})
	return dst, cmp.Or(err, bad)
}

// field returns the first field of s (fields are separated by ASCII white
// space) and what follows it.
func field(s []byte) (f, rest []byte) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	j := i
	for j < len(s) && !isSpace(s[j]) {
		j++
	}
	return s[i:j], s[j:]
}

func isSpace(b byte) bool {
	return b == ' ' || b == '\t' || b == '\r' || b == '\n' || b == '\v' || b == '\f'
}

// RetrReader sends RETR n and returns a reader for the message, which
// streams it (see DotReader).
func (c *Client) RetrReader(n int) (*DotReader, error) {
	if _, err := c.cmdNums("RETR", n); err != nil {
		return nil, err
	}
	return c.DotReader(), nil
}

// Retr returns message n as it was sent, dot-stuffing undone.
func (c *Client) Retr(n int) ([]byte, error) {
	d, err := c.RetrReader(n)
	if err != nil {
		return nil, err
	}
	return readAll(d)
}

// TopReader sends TOP n lines and returns a reader for the answer: the
// header and the first lines of the body.
func (c *Client) TopReader(n, lines int) (*DotReader, error) {
	if _, err := c.cmdNums("TOP", n, lines); err != nil {
		return nil, err
	}
	return c.DotReader(), nil
}

// Top returns what TOP n lines sends, dot-stuffing undone.
func (c *Client) Top(n, lines int) ([]byte, error) {
	d, err := c.TopReader(n, lines)
	if err != nil {
		return nil, err
	}
	return readAll(d)
}

// topBatch is how many TOP commands Headers pipelines at once.
const topBatch = 64

// Headers runs TOP n 0 for each message number and hands each header to
// fn: its lines with CRLFs, dot-stuffing undone, and only the lines that
// fit in maxSize octets with those before. The slice is valid until fn
// returns. A message the server refuses (-ERR) is left out. The commands
// are pipelined when the capabilities read by Capa offer PIPELINING.
func (c *Client) Headers(ns []int, maxSize int, fn func(n int, header []byte)) error {
	batch := 1
	if c.caps.Has("PIPELINING") {
		batch = topBatch
	}
	var hdr bytes.Buffer
	for len(ns) > 0 {
		k := min(batch, len(ns))
		c.buf = c.buf[:0]
		for i, n := range ns[:k] {
			if i > 0 {
				c.buf = append(c.buf, "\r\n"...)
			}
			c.buf = append(c.buf, "TOP "...)
			c.buf = strconv.AppendInt(c.buf, int64(n), 10)
			c.buf = append(c.buf, " 0"...)
		}
		if err := c.send("TOP", c.buf); err != nil {
			return err
		}
		for _, n := range ns[:k] {
			if _, err := c.status("TOP"); err != nil {
				var e *ErrResponse
				if errors.As(err, &e) {
					continue // gone, or no TOP for this one: no header
				}
				return err
			}
			hdr.Reset()
			err := c.lines("TOP", maxSize, func(line []byte) {
				if hdr.Len()+len(line)+2 <= maxSize {
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
