package main

// The IMAP ceiling's client: raw TCP, one bufio.Reader, and just enough
// parsing for LOGIN, SELECT, UID FETCH of sizes and of bodies, and LOGOUT.
// It does what a POP3 session needs done over IMAP with as little client
// work as possible, so that its numbers are the server's speed.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"github.com/popbridge/popbridge/internal/imapwire"
)

const ioTimeout = 5 * time.Minute // no single exchange of the benchmark takes this long

type imapConn struct {
	c   net.Conn
	r   *bufio.Reader
	w   *bufio.Writer
	tag int
}

// imapMsg is one message as UID FETCH 1:* (UID RFC822.SIZE) lists it.
type imapMsg struct {
	uid  uint32
	size int64
}

func dialIMAP(addr string) (*imapConn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	ic := &imapConn{c: c, r: bufio.NewReaderSize(c, 64<<10), w: bufio.NewWriterSize(c, 4096)}
	c.SetDeadline(time.Now().Add(ioTimeout))
	line, err := ic.r.ReadSlice('\n')
	if err != nil {
		c.Close()
		return nil, err
	}
	if !bytes.HasPrefix(line, []byte("* OK")) {
		c.Close()
		return nil, fmt.Errorf("imap greeting %q", line)
	}
	return ic, nil
}

func (c *imapConn) Close() error { return c.c.Close() }

// command sends one tagged command and reads to its tagged answer. untagged
// sees every other line (without literals); literal, if not nil, reads each
// literal (the rest is discarded).
func (c *imapConn) command(cmd string, untagged func(line []byte) error, literal func(r io.Reader, n int64) error) error {
	c.tag++
	tag := "a" + strconv.Itoa(c.tag)
	c.c.SetDeadline(time.Now().Add(ioTimeout))
	c.w.WriteString(tag)
	c.w.WriteByte(' ')
	c.w.WriteString(cmd)
	c.w.WriteString("\r\n")
	if err := c.w.Flush(); err != nil {
		return err
	}
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return fmt.Errorf("imap: line longer than %d bytes", c.r.Size())
			}
			return err
		}
		if len(line) > len(tag) && string(line[:len(tag)]) == tag && line[len(tag)] == ' ' {
			if bytes.HasPrefix(line[len(tag)+1:], []byte("OK")) {
				return nil
			}
			return fmt.Errorf("imap %s: %s", firstWord(cmd), bytes.TrimSpace(line))
		}
		// A line ending in {n} announces a literal of n octets; the
		// response goes on after it.
		for {
			n, ok := imapwire.LiteralSize(line)
			if untagged != nil {
				if err := untagged(line); err != nil {
					return err
				}
			}
			if !ok {
				break
			}
			if literal != nil {
				lr := io.LimitReader(c.r, n)
				if err := literal(lr, n); err != nil {
					return err
				}
				n = lr.(*io.LimitedReader).N
			}
			if n > 0 {
				if _, err := c.r.Discard(int(n)); err != nil {
					return err
				}
			}
			if line, err = c.r.ReadSlice('\n'); err != nil {
				return err
			}
		}
	}
}

func firstWord(s string) string {
	if i := bytes.IndexByte([]byte(s), ' '); i > 0 {
		return s[:i]
	}
	return s
}

func (c *imapConn) login(user, password string) error {
	return c.command("LOGIN "+imapQuote(user)+" "+imapQuote(password), nil, nil)
}

func imapQuote(s string) string { return strconv.Quote(s) } // user names and passwords here are plain ASCII

func (c *imapConn) selectInbox() error { return c.command("SELECT INBOX", nil, nil) }

// sizes lists the mailbox: UID FETCH 1:* (UID RFC822.SIZE).
func (c *imapConn) sizes() ([]imapMsg, error) {
	var msgs []imapMsg
	err := c.command("UID FETCH 1:* (UID RFC822.SIZE)", func(line []byte) error {
		if !bytes.HasPrefix(line, []byte("* ")) || !bytes.Contains(line, []byte(" FETCH ")) {
			return nil
		}
		uid, ok1 := numberAfter(line, "UID ")
		size, ok2 := numberAfter(line, "RFC822.SIZE ")
		if ok1 && ok2 {
			msgs = append(msgs, imapMsg{uid: uint32(uid), size: size})
		}
		return nil
	}, nil)
	return msgs, err
}

// numberAfter parses the decimal number that follows key in line.
func numberAfter(line []byte, key string) (int64, bool) {
	i := bytes.Index(line, []byte(key))
	if i < 0 {
		return 0, false
	}
	var n int64
	j := i + len(key)
	start := j
	for j < len(line) && line[j] >= '0' && line[j] <= '9' {
		n = n*10 + int64(line[j]-'0')
		j++
	}
	return n, j > start
}

// body fetches one message, UID FETCH uid (BODY.PEEK[]), reads its literal
// and returns its size and how long its first octet took to come.
func (c *imapConn) body(uid uint32) (int64, time.Duration, error) {
	var got int64 = -1
	var ttfb time.Duration
	start := time.Now()
	err := c.command("UID FETCH "+strconv.FormatUint(uint64(uid), 10)+" (BODY.PEEK[])", nil, func(r io.Reader, n int64) error {
		ttfb = time.Since(start)
		m, err := io.Copy(io.Discard, r)
		got = m
		return err
	})
	if err == nil && got < 0 {
		return 0, 0, fmt.Errorf("imap: UID %d: no body in the answer", uid)
	}
	return got, ttfb, err
}

// bodies fetches every message in one command, UID FETCH 1:*
// (BODY.PEEK[]): the batched ceiling, where the server streams message after
// message without a round trip between them (POP3 has no such command). It
// returns the octets and the number of literals read.
func (c *imapConn) bodies() (total int64, count int, err error) {
	err = c.command("UID FETCH 1:* (BODY.PEEK[])", nil, func(r io.Reader, _ int64) error {
		m, err := io.Copy(io.Discard, r)
		total += m
		count++
		return err
	})
	return total, count, err
}

func (c *imapConn) logout() error {
	err := c.command("LOGOUT", nil, nil)
	c.c.Close()
	return err
}
