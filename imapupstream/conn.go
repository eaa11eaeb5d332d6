package imapupstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"

	"github.com/popbridge/popbridge/imapupstream/internal/lean"
	"github.com/popbridge/popbridge/imapupstream/internal/watchdog"
)

// logoutTimeout bounds the LOGOUT that Close sends.
const logoutTimeout = 2 * time.Second

// Conn is one logged-in upstream IMAP connection, the session's only one.
//
// A Conn is used by one goroutine at a time; to interrupt a blocked call from
// another goroutine, cancel the context given to it (which ends the
// connection). At most one message reader (from Fetch or Top) is open at a
// time: starting another operation first closes (drains) an open reader.
// After an ErrUnavailable every call fails fast with ErrUnavailable; only Close
// remains to be called.
type Conn struct {
	log    *zap.Logger
	cfg    Config
	raw    net.Conn // the TCP connection under TLS and go-imap: closing it unblocks everything
	client *imapclient.Client
	lean   *lean.Conn // under go-imap: answers read without its decoder (internal/lean)
	caps   Caps
	mbox   *Mailbox
	reader io.Closer    // the message reader still open, if any
	direct *directState // the connection taken from go-imap by Fetch (direct.go), nil when not
	// selecting is the SELECT sent behind the login (Login), until the
	// first Select takes its answer.
	selecting *selectAhead

	mu     sync.Mutex // guards dead and closed (guards' callbacks run on other goroutines)
	dead   error      // why the connection ended, once it has
	closed bool
}

// Caps are the upstream's capabilities that matter here, after login.
type Caps struct {
	IMAP4rev2 bool
	UIDPlus   bool // UID EXPUNGE, APPENDUID/COPYUID (UIDPLUS or IMAP4rev2)
	Move      bool // UID MOVE (MOVE or IMAP4rev2)
	ObjectID  bool // EMAILID/THREADID (OBJECTID, RFC 8474)
	CondStore bool // MODSEQ (CONDSTORE or QRESYNC)
	ESearch   bool
	// set is every capability advertised: go-imap's own set, shared with
	// it and never changed (go-imap replaces its set, it does not edit it).
	set imap.CapSet
}

// Has reports whether the capability name was advertised (case-insensitive),
// or is implied by one that was (IMAP4rev2 implies UIDPLUS, MOVE and more).
func (c Caps) Has(name string) bool {
	// go-imap's set has every name upper-case but IMAP4rev1 and IMAP4rev2.
	for _, mixed := range []imap.Cap{imap.CapIMAP4rev1, imap.CapIMAP4rev2} {
		if strings.EqualFold(name, string(mixed)) {
			return c.set.Has(mixed)
		}
	}
	return c.set.Has(imap.Cap(strings.ToUpper(name)))
}

func capsFrom(set imap.CapSet) Caps {
	return Caps{
		IMAP4rev2: set.Has(imap.CapIMAP4rev2),
		UIDPlus:   set.Has(imap.CapUIDPlus),
		Move:      set.Has(imap.CapMove),
		ObjectID:  set.Has(imap.CapObjectID),
		CondStore: set.Has(imap.CapCondStore),
		ESearch:   set.Has(imap.CapESearch),
		set:       set,
	}
}

// Caps returns the capabilities the server advertised after login.
func (c *Conn) Caps() Caps { return c.caps }

// Mailbox returns what Select found (nil before Select).
func (c *Conn) Mailbox() *Mailbox { return c.mbox }

// Mailbox is the selected mailbox as SELECT reported it.
type Mailbox struct {
	Name           string
	UIDValidity    uint32
	UIDNext        uint32
	NumMessages    uint32
	HighestModSeq  uint64 // 0 unless CONDSTORE
	PermanentFlags []string
	Caps           Caps
}

// CanStoreFlag reports whether PERMANENTFLAGS allows storing flag (\* allows
// any keyword). With no PERMANENTFLAGS reported, every flag is allowed.
func (m *Mailbox) CanStoreFlag(flag string) bool {
	if m.PermanentFlags == nil {
		return true
	}
	for _, f := range m.PermanentFlags {
		if strings.EqualFold(f, flag) || (f == `\*` && !strings.HasPrefix(flag, `\`)) {
			return true
		}
	}
	return false
}

// Select SELECTs (read-write, never EXAMINE) the configured mailbox. Selecting
// again is allowed: if UIDVALIDITY changed meanwhile, the new Mailbox is
// returned together with an error wrapping ErrMailboxChanged.
func (c *Conn) Select(ctx context.Context) (_ *Mailbox, err error) {
	if c.selecting != nil {
		return c.takeSelect(ctx)
	}
	if o := c.cfg.Observer; o != nil {
		defer observeCommand(o, "select", time.Now(), &err)
	}
	const op = "SELECT"
	if err := c.begin(op); err != nil {
		return nil, err
	}
	g := c.guard(ctx, c.cfg.CommandTimeout)
	data, err := c.client.Select(c.cfg.Mailbox, nil).Wait()
	g.Stop()
	return c.selected(data, err)
}

// selected is the end of Select: the answer to a SELECT of the configured
// mailbox (Select's own, or one sent right behind the login, see
// Login, see Conn.takeSelect) made the Conn's Mailbox.
func (c *Conn) selected(data *imap.SelectData, err error) (*Mailbox, error) {
	const op = "SELECT"
	if err != nil {
		var imapErr *imap.Error
		if errors.As(err, &imapErr) && imapErr.Type == imap.StatusResponseTypeNo && imapErr.Code == "" {
			// Most servers answer a missing mailbox with a plain NO.
			return nil, fmt.Errorf("%w: %s %q: %w", ErrNoMailbox, op, c.cfg.Mailbox, err)
		}
		return nil, c.fail(op, err)
	}
	if data.UIDValidity == 0 {
		return nil, fmt.Errorf("imapupstream: SELECT %q: the server sent no UIDVALIDITY", c.cfg.Mailbox)
	}
	mb := &Mailbox{
		Name:          c.cfg.Mailbox,
		UIDValidity:   data.UIDValidity,
		UIDNext:       uint32(data.UIDNext),
		NumMessages:   data.NumMessages,
		HighestModSeq: data.HighestModSeq,
		Caps:          c.caps,
	}
	if data.PermanentFlags != nil {
		mb.PermanentFlags = make([]string, len(data.PermanentFlags))
		for i, f := range data.PermanentFlags {
			mb.PermanentFlags[i] = string(f)
		}
	}
	prev := c.mbox
	c.mbox = mb
	c.log.Debug("upstream mailbox selected",
		zap.String("mailbox", mb.Name), zap.Uint32("uidvalidity", mb.UIDValidity),
		zap.Uint32("uidnext", mb.UIDNext), zap.Uint32("messages", mb.NumMessages))
	if prev != nil && prev.Name == mb.Name && prev.UIDValidity != mb.UIDValidity {
		return mb, fmt.Errorf("%w: %q was %d, now %d", ErrMailboxChanged, mb.Name, prev.UIDValidity, mb.UIDValidity)
	}
	return mb, nil
}

// messageCountHint is the number of messages as far as we know: what SELECT
// said, or more if EXISTS announced new ones since. (go-imap's own count is
// updated only after Select's Wait has returned, so it can lag right after.)
func (c *Conn) messageCountHint() uint32 {
	n := c.mbox.NumMessages
	if mb := c.client.Mailbox(); mb != nil && mb.NumMessages > n {
		n = mb.NumMessages
	}
	return n
}

// Close logs out (with a short timeout) and closes the connection. A message
// reader still open is abandoned, not drained; a command sent ahead
// (FetchAhead) and not taken is drained first if the connection is still
// fine. Close may be called more than once; it must not be called while
// another method of the Conn is running (cancel that method's context
// instead).
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	dead := c.dead
	c.mu.Unlock()

	if r, ok := c.reader.(abandoner); ok {
		// Nobody will read the rest of the literal: end the connection, then
		// let the reader unblock go-imap's reading goroutine.
		c.kill(errConnClosed)
		r.abandon()
		dead = errConnClosed
	}
	c.reader = nil
	if ds := c.direct; ds != nil {
		// Commands sent ahead must be answered before LOGOUT is: drain
		// them briefly (they are small), or give them up if the
		// connection is gone or the drain ended it. Either way go-imap
		// gets its reader back, for LOGOUT or to end.
		ds.ctx = context.Background()
		c.releaseDirectWithin(logoutTimeout)
	}
	if dead == nil {
		dead = c.deadCause()
	}
	if dead == nil {
		// LOGOUT politely, briefly. A failure only means we close harder.
		g := c.guard(context.Background(), logoutTimeout)
		if err := c.client.Logout().Wait(); err != nil {
			c.log.Debug("upstream LOGOUT failed", zap.Error(err))
		}
		g.Stop()
	}
	c.kill(errConnClosed)
	c.client.Close() // waits for go-imap's reading goroutine; its error is moot now
	return nil
}

// abandoner is a message reader that can be given up without reading on.
type abandoner interface{ abandon() }

// kill ends the connection and records the first reason. Closing the socket
// makes every blocked go-imap call return.
func (c *Conn) kill(cause error) {
	c.mu.Lock()
	if c.dead == nil {
		c.dead = cause
	}
	c.mu.Unlock()
	c.raw.Close()
}

// deadCause returns why the connection ended, or nil while it is alive.
func (c *Conn) deadCause() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dead
}

// begin starts an operation: it closes a message reader still open and
// checks that the connection is usable.
func (c *Conn) begin(op string) error {
	c.closeReader()
	c.releaseDirect() // go-imap reads the connection again
	c.settleSelect(context.Background())
	return c.usable(op)
}

// closeReader closes (drains) the message reader still open, if any.
func (c *Conn) closeReader() {
	if r := c.reader; r != nil {
		r.Close()
		c.reader = nil
	}
}

// usable reports, as an error for op, whether the connection can be used.
func (c *Conn) usable(op string) error {
	c.mu.Lock()
	closed, dead := c.closed, c.dead
	c.mu.Unlock()
	if closed {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, errConnClosed)
	}
	if dead != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, dead)
	}
	select {
	case <-c.client.Closed():
		c.kill(io.ErrUnexpectedEOF)
		return fmt.Errorf("%w: %s: the server closed the connection", ErrUnavailable, op)
	default:
	}
	return nil
}

// fail maps an error from a go-imap call of op. If the connection has ended
// (timeout, cancelled context, Close, or the server went away) the result
// wraps ErrUnavailable and the cause; a connection-level failure also ends
// the connection for good.
func (c *Conn) fail(op string, err error) error {
	if err == nil {
		return nil
	}
	if cause := c.deadCause(); cause != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, cause)
	}
	if isConnError(err) {
		c.kill(err)
		if !errors.Is(err, ErrUnavailable) {
			return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
		}
		return err
	}
	return classify(op, err)
}

// guard bounds a blocking go-imap call: when ctx is done, or when the
// server makes no progress for d while we wait on it, the connection is
// ended, which makes the blocked call return; fail then reports the cause.
func (c *Conn) guard(ctx context.Context, d time.Duration) *watchdog.Guard {
	return watchdog.Start(ctx, d, c.kill)
}

// sortUIDs returns uids sorted, without duplicates or zeros, as a new slice.
func sortUIDs(uids []uint32) []uint32 {
	s := slices.Clone(uids)
	slices.Sort(s)
	s = slices.Compact(s)
	if len(s) > 0 && s[0] == 0 {
		s = s[1:]
	}
	return s
}

// maxUIDSetLen keeps command lines well under servers' limits (Dovecot: 64 KiB).
const maxUIDSetLen = 8000

// uidSets splits sorted, unique uids into UID sets of contiguous ranges, each
// short enough for one command line.
func uidSets(sorted []uint32) []imap.UIDSet {
	var sets []imap.UIDSet
	var cur imap.UIDSet
	curLen := 0
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1] == sorted[j]+1 {
			j++
		}
		r := imap.UIDRange{Start: imap.UID(sorted[i]), Stop: imap.UID(sorted[j])}
		l := 22 // "4294967295:4294967295,"
		if curLen+l > maxUIDSetLen && len(cur) > 0 {
			sets = append(sets, cur)
			cur, curLen = nil, 0
		}
		cur = append(cur, r)
		curLen += l
		i = j + 1
	}
	if len(cur) > 0 {
		sets = append(sets, cur)
	}
	return sets
}
