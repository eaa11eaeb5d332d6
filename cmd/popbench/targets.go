package main

// What each scenario does against one target. The IMAP ceiling does over
// IMAP the work that the POP3 targets make their upstream do; the POP3
// targets are driven by the same lean client.

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/popbridge/popbridge/pop3/pop3client"
)

const (
	targetCeiling = "imap-ceiling"
	targetBridge  = "popbridge"
	targetBase    = "popbridge-baseline" // -baseline
	targetPeer    = "dovecot-imapc"
)

// target is one server under test.
type target struct {
	name string
	pop3 bool
	addr func() string // popbridge's changes when it is restarted
}

// phase is a part of a measurement and how long it took.
type phase struct {
	name string
	d    time.Duration
}

// stopwatch splits a measurement into phases.
type stopwatch struct {
	start, last time.Time
	phases      []phase
}

func newStopwatch() *stopwatch {
	now := time.Now()
	return &stopwatch{start: now, last: now}
}

// lap ends the current phase.
func (w *stopwatch) lap(name string) {
	now := time.Now()
	w.phases = append(w.phases, phase{name, now.Sub(w.last)})
	w.last = now
}

func (w *stopwatch) total() time.Duration { return w.last.Sub(w.start) }

// listOnce logs in and lists the mailbox: over POP3 USER, PASS, STAT, UIDL,
// LIST; over IMAP LOGIN, SELECT, UID FETCH 1:* (UID RFC822.SIZE). It returns
// the time from connecting to the last byte of the listing, and its phases,
// then logs out (not timed).
func (t *target) listOnce(user, password string, want int) (time.Duration, []phase, error) {
	sw := newStopwatch()
	if !t.pop3 {
		c, err := dialIMAP(t.addr())
		if err != nil {
			return 0, nil, err
		}
		defer c.Close()
		sw.lap("connect")
		if err := c.login(user, password); err != nil {
			return 0, nil, err
		}
		sw.lap("LOGIN")
		if err := c.selectInbox(); err != nil {
			return 0, nil, err
		}
		sw.lap("SELECT")
		msgs, err := c.sizes()
		if err != nil {
			return 0, nil, err
		}
		sw.lap("UID FETCH")
		if len(msgs) != want {
			return 0, nil, fmt.Errorf("%s: %d messages listed, want %d", user, len(msgs), want)
		}
		return sw.total(), sw.phases, c.logout()
	}
	c, err := dialPOP3(t.addr())
	if err != nil {
		return 0, nil, err
	}
	defer c.Close()
	sw.lap("connect")
	if err := c.Login(user, password); err != nil {
		return 0, nil, err
	}
	sw.lap("USER+PASS")
	n, _, err := c.Stat()
	if err != nil {
		return 0, nil, err
	}
	sw.lap("STAT")
	uidls, err := c.AppendListing(make([]pop3client.Entry, 0, n), "UIDL")
	if err != nil {
		return 0, nil, err
	}
	sw.lap("UIDL")
	sizes, err := c.AppendListing(make([]pop3client.Entry, 0, n), "LIST")
	if err != nil {
		return 0, nil, err
	}
	sw.lap("LIST")
	if n != want || len(uidls) != want || len(sizes) != want {
		return 0, nil, fmt.Errorf("%s: STAT %d, UIDL %d, LIST %d lines; want %d", user, n, len(uidls), len(sizes), want)
	}
	return sw.total(), sw.phases, c.Quit()
}

// retrAll logs in, then retrieves every message one after the other in the
// same session: POP3 RETR n, IMAP UID FETCH uid (BODY.PEEK[]). It returns
// the octets of the messages and the time from the first request to the
// last byte of the last message (the login is not in it), split into the
// waits for each message's first byte and the rest.
func (t *target) retrAll(user, password string, want int) (int64, time.Duration, []phase, error) {
	var total int64
	var first time.Duration // request sent → first octet of the message (or its status line)
	if !t.pop3 {
		c, err := dialIMAP(t.addr())
		if err != nil {
			return 0, 0, nil, err
		}
		defer c.Close()
		if err := c.login(user, password); err != nil {
			return 0, 0, nil, err
		}
		if err := c.selectInbox(); err != nil {
			return 0, 0, nil, err
		}
		msgs, err := c.sizes()
		if err != nil {
			return 0, 0, nil, err
		}
		if len(msgs) != want {
			return 0, 0, nil, fmt.Errorf("%s: %d messages, want %d", user, len(msgs), want)
		}
		start := time.Now()
		for _, m := range msgs {
			n, ttfb, err := c.body(m.uid)
			if err != nil {
				return 0, 0, nil, err
			}
			if n != m.size {
				return 0, 0, nil, fmt.Errorf("UID %d: %d octets, RFC822.SIZE %d", m.uid, n, m.size)
			}
			total += n
			first += ttfb
		}
		took := time.Since(start)
		return total, took, []phase{{"first bytes", first}, {"rest", took - first}}, c.logout()
	}
	c, err := dialPOP3(t.addr())
	if err != nil {
		return 0, 0, nil, err
	}
	defer c.Close()
	if err := c.Login(user, password); err != nil {
		return 0, 0, nil, err
	}
	n, _, err := c.Stat()
	if err != nil {
		return 0, 0, nil, err
	}
	if n != want {
		return 0, 0, nil, fmt.Errorf("%s: %d messages, want %d", user, n, want)
	}
	start := time.Now()
	for i := 1; i <= n; i++ {
		s := time.Now()
		r, err := c.RetrReader(i)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("RETR %d: %w", i, err)
		}
		first += time.Since(s)
		m, err := r.WriteTo(io.Discard)
		if err != nil {
			return 0, 0, nil, fmt.Errorf("RETR %d: %w", i, err)
		}
		total += m
	}
	took := time.Since(start)
	return total, took, []phase{{"first bytes", first}, {"rest", took - first}}, c.Quit()
}

// retrBatched is the ceiling's retrAll in one command (imapConn.bodies),
// timed from the command to the last octet of its answer.
func (t *target) retrBatched(user, password string, want int) (int64, time.Duration, error) {
	c, err := dialIMAP(t.addr())
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	if err := c.login(user, password); err != nil {
		return 0, 0, err
	}
	if err := c.selectInbox(); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	total, n, err := c.bodies()
	took := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if n != want {
		return 0, 0, fmt.Errorf("%s: %d messages, want %d", user, n, want)
	}
	return total, took, c.logout()
}

// session is one full session: over POP3 USER, PASS, STAT, UIDL, RETR of
// the messages picks (numbers from 1), QUIT; over IMAP LOGIN, SELECT, UID
// FETCH 1:* (UID RFC822.SIZE), UID FETCH (BODY.PEEK[]) of the same
// messages, LOGOUT. It returns the octets retrieved.
func (t *target) session(user, password string, picks []int) (int64, error) {
	var total int64
	if !t.pop3 {
		c, err := dialIMAP(t.addr())
		if err != nil {
			return 0, err
		}
		defer c.Close()
		if err := c.login(user, password); err != nil {
			return 0, err
		}
		if err := c.selectInbox(); err != nil {
			return 0, err
		}
		msgs, err := c.sizes()
		if err != nil {
			return 0, err
		}
		for _, p := range picks {
			if p > len(msgs) {
				return 0, fmt.Errorf("%s: message %d of %d", user, p, len(msgs))
			}
			n, _, err := c.body(msgs[p-1].uid)
			if err != nil {
				return 0, err
			}
			total += n
		}
		return total, c.logout()
	}
	c, err := dialPOP3(t.addr())
	if err != nil {
		return 0, err
	}
	defer c.Close()
	if err := c.Login(user, password); err != nil {
		return 0, err
	}
	n, _, err := c.Stat()
	if err != nil {
		return 0, err
	}
	if _, err := c.AppendListing(make([]pop3client.Entry, 0, n), "UIDL"); err != nil {
		return 0, err
	}
	for _, p := range picks {
		m, err := retr(c, p)
		if err != nil {
			return 0, fmt.Errorf("RETR %d: %w", p, err)
		}
		total += m
	}
	return total, c.Quit()
}

// warm logs in once and out again (for popbridge: the first login on a
// mailbox names its messages; for Dovecot: it builds the indexes and the
// imapc cache).
func (t *target) warm(user, password string) error {
	if !t.pop3 {
		c, err := dialIMAP(t.addr())
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.login(user, password); err != nil {
			return err
		}
		if err := c.selectInbox(); err != nil {
			return err
		}
		if _, err := c.sizes(); err != nil {
			return err
		}
		return c.logout()
	}
	c, err := dialPOP3(t.addr())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.Login(user, password); err != nil {
		return err
	}
	n, _, err := c.Stat()
	if err != nil {
		return err
	}
	if _, err := c.AppendListing(make([]pop3client.Entry, 0, n), "UIDL"); err != nil {
		return err
	}
	return c.Quit()
}

// openIdle logs in over POP3 and leaves the session open.
func (t *target) openIdle(user, password string) (*pop3client.Client, error) {
	c, err := dialPOP3(t.addr())
	if err != nil {
		return nil, err
	}
	if err := c.Login(user, password); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// dialPOP3 connects the POP3 targets' client: a read or write that waits
// ioTimeout fails, and a big read buffer takes big messages in few reads.
func dialPOP3(addr string) (*pop3client.Client, error) {
	return pop3client.DialContext(context.Background(), addr, &pop3client.Options{
		Timeout:        ioTimeout,
		Dialer:         &net.Dialer{Timeout: 10 * time.Second},
		ReadBufferSize: 64 << 10,
	})
}

// retr reads message n to its end and returns its size, dot-stuffing
// undone.
func retr(c *pop3client.Client, n int) (int64, error) {
	r, err := c.RetrReader(n)
	if err != nil {
		return 0, err
	}
	return r.WriteTo(io.Discard)
}
