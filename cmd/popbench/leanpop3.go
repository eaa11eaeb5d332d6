package main

// A lean POP3 client for the targets, as lean as the IMAP one: raw TCP, one
// bufio.Reader, multi-line answers read line by line up to the terminating
// dot. (pop3/pop3test keeps whole messages in memory, which would bill the
// client's copying to the servers.)

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"
)

type pop3Conn struct {
	c net.Conn
	r *bufio.Reader
	w *bufio.Writer
}

// pop3Entry is a line of LIST or UIDL.
type pop3Entry struct {
	n     int
	value string
}

func dialPOP3(addr string) (*pop3Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	pc := &pop3Conn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 4096)}
	c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := pc.status("greeting"); err != nil {
		c.Close()
		return nil, err
	}
	return pc, nil
}

func (c *pop3Conn) Close() error { return c.c.Close() }

// cmd sends a command and reads its status line.
func (c *pop3Conn) cmd(cmd string) ([]byte, error) {
	c.c.SetDeadline(time.Now().Add(ioTimeout))
	c.w.WriteString(cmd)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return nil, err
	}
	return c.status(cmd)
}

func (c *pop3Conn) status(what string) ([]byte, error) {
	line, err := c.r.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	if !bytes.HasPrefix(line, []byte("+OK")) {
		if w, _, ok := bytes.Cut([]byte(what), []byte(" ")); ok && string(w) == "PASS" {
			what = "PASS"
		}
		return nil, fmt.Errorf("pop3 %s: %s", what, bytes.TrimSpace(line))
	}
	return line, nil
}

// multi reads a multi-line answer to its end. line, if not nil, sees each
// complete line (un-stuffed, CRLF included). It returns the octets of the
// payload (dot-stuffing undone).
func (c *pop3Conn) multi(line func(l []byte)) (int64, error) {
	var n int64
	start := true // at the start of a line
	for {
		l, err := c.r.ReadSlice('\n')
		full := errors.Is(err, bufio.ErrBufferFull)
		if err != nil && !full {
			return n, fmt.Errorf("pop3: multi-line answer cut off: %w", err)
		}
		if start && len(l) > 0 && l[0] == '.' {
			if !full && len(l) == 3 && l[1] == '\r' {
				return n, nil
			}
			l = l[1:]
		}
		n += int64(len(l))
		if line != nil && start && !full {
			line(l)
		}
		start = !full
	}
}

func (c *pop3Conn) login(user, password string) error {
	if _, err := c.cmd("USER " + user); err != nil {
		return err
	}
	_, err := c.cmd("PASS " + password)
	return err
}

// stat returns the message count.
func (c *pop3Conn) stat() (int, error) {
	line, err := c.cmd("STAT")
	if err != nil {
		return 0, err
	}
	f := bytes.Fields(line)
	if len(f) < 3 {
		return 0, fmt.Errorf("pop3 STAT: %q", line)
	}
	return strconv.Atoi(string(f[1]))
}

// listing runs LIST or UIDL and parses its lines.
func (c *pop3Conn) listing(cmd string, hint int) ([]pop3Entry, error) {
	if _, err := c.cmd(cmd); err != nil {
		return nil, err
	}
	out := make([]pop3Entry, 0, hint)
	var perr error
	_, err := c.multi(func(l []byte) {
		num, val, ok := bytes.Cut(bytes.TrimRight(l, "\r\n"), []byte(" "))
		n, err := strconv.Atoi(string(num))
		if !ok || err != nil {
			perr = fmt.Errorf("pop3 %s: bad line %q", cmd, l)
			return
		}
		out = append(out, pop3Entry{n: n, value: string(val)})
	})
	if err == nil {
		err = perr
	}
	return out, err
}

// retr reads message n and returns its size (un-stuffed).
func (c *pop3Conn) retr(n int) (int64, error) {
	if _, err := c.cmd("RETR " + strconv.Itoa(n)); err != nil {
		return 0, err
	}
	return c.multi(nil)
}

func (c *pop3Conn) quit() error {
	_, err := c.cmd("QUIT")
	c.c.Close()
	return err
}
