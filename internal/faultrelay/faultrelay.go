package faultrelay

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Dir is a direction of the stream, or both.
type Dir uint8

const (
	// ClientToServer is what the client sends: commands.
	ClientToServer Dir = 1 << iota
	// ServerToClient is what the server sends: greeting, responses, message data.
	ServerToClient
	// BothDirs is both directions.
	BothDirs = ClientToServer | ServerToClient
)

func (d Dir) String() string {
	switch d {
	case ClientToServer:
		return "client-to-server"
	case ServerToClient:
		return "server-to-client"
	case BothDirs:
		return "both"
	}
	return fmt.Sprintf("Dir(%d)", uint8(d))
}

// index is the slot of a single direction: 0 client to server, 1 server to client.
func (d Dir) index() int {
	if d == ServerToClient {
		return 1
	}
	return 0
}

var singleDirs = [2]Dir{ClientToServer, ServerToClient}

// dialTimeout bounds the dial to the upstream for each new connection.
const dialTimeout = 5 * time.Second

// Relay is a running fault-injecting relay. Its methods may be called from
// any goroutine.
type Relay struct {
	upstream string
	ln       net.Listener
	ctx      context.Context // cancelled by Close: ends pending dials
	cancel   context.CancelFunc
	wg       sync.WaitGroup // the accept loop and every connection handler

	mu         sync.Mutex
	closed     bool
	conns      map[*conn]struct{}
	accepted   int
	refuse     bool
	latency    [2]time.Duration
	rate       [2]int           // bytes per second; 0 = unlimited
	stalls     [2]chan struct{} // non-nil while the direction is stalled; closed by Release
	byteFaults [2]*Fault        // armed byte-count fault per direction
	cmdFaults  []*Fault         // armed command faults, in the order armed
	hideCaps   map[string]bool  // upper-case capability names hidden from the client
	commands   []string         // client command lines seen, without tags
	lineFaults [2]atomic.Bool   // a line-level fault is armed for the direction
}

// maxCommands bounds the command record.
const maxCommands = 100000

// New starts a relay on 127.0.0.1:0 that forwards every connection to
// upstream (host:port).
func New(upstream string) (*Relay, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("faultrelay: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Relay{upstream: upstream, ln: ln, ctx: ctx, cancel: cancel, conns: make(map[*conn]struct{})}
	r.wg.Add(1)
	go r.acceptLoop()
	return r, nil
}

// Start is New for a test: the test fails if the relay cannot start, and the
// relay is closed when the test ends.
func Start(t testing.TB, upstream string) *Relay {
	t.Helper()
	r, err := New(upstream)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// Addr is the address clients connect to (127.0.0.1:port).
func (r *Relay) Addr() string { return r.ln.Addr().String() }

// Upstream is the address connections are forwarded to.
func (r *Relay) Upstream() string { return r.upstream }

// Close stops accepting, cuts every connection, releases every stall and
// waits until all the relay's goroutines have ended. It may be called more
// than once.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		r.wg.Wait()
		return nil
	}
	r.closed = true
	err := r.ln.Close()
	r.cancel()
	for c := range r.conns {
		c.cut()
	}
	r.releaseLocked()
	r.mu.Unlock()
	r.wg.Wait()
	return err
}

// Conns returns the number of connections being relayed now.
func (r *Relay) Conns() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.conns)
}

// Accepted returns the number of client connections accepted so far
// (refused ones included).
func (r *Relay) Accepted() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.accepted
}

// Commands returns the command lines clients sent so far, in order, without
// their tags and line ends (e.g. "UID EXPUNGE 1,3"); LOGIN and AUTHENTICATE
// keep only the command name. Lines longer than 200 octets are truncated.
func (r *Relay) Commands() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.commands...)
}

// SetLatency delays every chunk forwarded in d by latency after it was read
// (a link delay: throughput is unchanged). Zero removes it.
func (r *Relay) SetLatency(d Dir, latency time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, sd := range singleDirs {
		if d&sd != 0 {
			r.latency[i] = latency
		}
	}
}

// SetRate limits what each connection forwards in d to about bytesPerSecond.
// Zero removes the limit.
func (r *Relay) SetRate(d Dir, bytesPerSecond int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, sd := range singleDirs {
		if d&sd != 0 {
			r.rate[i] = max(bytesPerSecond, 0)
		}
	}
}

// Stall stops forwarding in d, on every connection (open or new), until
// Release. Bytes keep being read until the relay's small buffers are full,
// then the sender is held back by TCP.
func (r *Relay) Stall(d Dir) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stallLocked(d)
}

func (r *Relay) stallLocked(d Dir) {
	if r.closed {
		return
	}
	for i, sd := range singleDirs {
		if d&sd != 0 && r.stalls[i] == nil {
			r.stalls[i] = make(chan struct{})
		}
	}
}

// Release ends every stall (Stall and StallAfterBytes).
func (r *Relay) Release() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.releaseLocked()
}

func (r *Relay) releaseLocked() {
	for i, ch := range r.stalls {
		if ch != nil {
			close(ch)
			r.stalls[i] = nil
		}
	}
}

// Refuse makes the relay reset new connections at once (the client sees its
// connection end before any greeting; the upstream is not contacted), or
// accept them again.
func (r *Relay) Refuse(on bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.refuse = on
}

// HideCapabilities removes the named capabilities (case-insensitive, whole
// names such as "UIDPLUS", "MOVE" or "AUTH=PLAIN") from the server's
// "* CAPABILITY" responses and "[CAPABILITY …]" response codes. Called with
// no names it hides nothing any more. The server itself still accepts the
// commands: only what the client is told changes.
func (r *Relay) HideCapabilities(names ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hideCaps = nil
	for _, n := range names {
		if r.hideCaps == nil {
			r.hideCaps = make(map[string]bool)
		}
		r.hideCaps[asciiUpper(n)] = true
	}
	r.updateLineFaultsLocked()
}

// CutAll cuts every open connection now.
func (r *Relay) CutAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.conns {
		c.cut()
	}
}

// Disarm removes every fault: latency, rate limits, stalls, armed cuts (their
// Fired channels stay open), refusal and hidden capabilities.
func (r *Relay) Disarm() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.latency = [2]time.Duration{}
	r.rate = [2]int{}
	r.releaseLocked()
	for i, f := range r.byteFaults {
		if f != nil {
			f.armed = false
			r.byteFaults[i] = nil
		}
	}
	for _, f := range r.cmdFaults {
		f.armed = false
	}
	r.cmdFaults = nil
	r.refuse = false
	r.hideCaps = nil
	r.updateLineFaultsLocked()
}

// Fault is an armed one-shot fault: it fires on the first connection that
// meets its condition, then disarms itself.
type Fault struct {
	r     *Relay
	fired chan struct{}
	armed bool // guarded by r.mu

	// Byte faults.
	dirs  Dir
	n     int64
	stall bool // stall the direction instead of cutting

	// Command faults.
	cmd      string // upper case, single spaces: "UID EXPUNGE"
	contains string // upper case
	forward  bool   // forward the command line, then cut
	hook     func() // BeforeCommand: run, then forward the line; no cut
}

// Fired is closed when the fault has fired.
func (f *Fault) Fired() <-chan struct{} { return f.fired }

// HasFired reports whether the fault has fired.
func (f *Fault) HasFired() bool {
	select {
	case <-f.fired:
		return true
	default:
		return false
	}
}

// Disarm removes the fault if it has not fired yet.
func (f *Fault) Disarm() {
	r := f.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if !f.armed {
		return
	}
	f.disarmLocked()
}

// disarmLocked takes the armed fault out of the relay's lists; r.mu is held.
func (f *Fault) disarmLocked() {
	r := f.r
	f.armed = false
	for i, g := range r.byteFaults {
		if g == f {
			r.byteFaults[i] = nil
		}
	}
	for i, g := range r.cmdFaults {
		if g == f {
			r.cmdFaults = append(r.cmdFaults[:i:i], r.cmdFaults[i+1:]...)
			break
		}
	}
	r.updateLineFaultsLocked()
}

// fire disarms the fault and reports whether this call did (only one
// connection ever fires a fault).
func (f *Fault) fire() bool {
	r := f.r
	r.mu.Lock()
	defer r.mu.Unlock()
	if !f.armed {
		return false
	}
	f.disarmLocked()
	if f.stall {
		r.stallLocked(f.dirs)
	}
	close(f.fired)
	return true
}

// CutAfterBytes arms a cut: the first connection that forwards n more bytes
// in d (counted from now, or from its start if it opens later; in each
// direction separately for BothDirs) forwards exactly those n bytes, then is
// cut. It replaces a byte fault armed before for d.
func (r *Relay) CutAfterBytes(d Dir, n int64) *Fault {
	return r.armBytes(d, n, false)
}

// StallAfterBytes is CutAfterBytes that stalls the direction (for every
// connection, as Stall) instead of cutting, until Release.
func (r *Relay) StallAfterBytes(d Dir, n int64) *Fault {
	return r.armBytes(d, n, true)
}

func (r *Relay) armBytes(d Dir, n int64, stall bool) *Fault {
	f := &Fault{r: r, fired: make(chan struct{}), armed: true, dirs: d, n: max(n, 0), stall: stall}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, sd := range singleDirs {
		if d&sd != 0 {
			if old := r.byteFaults[i]; old != nil {
				old.armed = false
				for j := range r.byteFaults {
					if r.byteFaults[j] == old {
						r.byteFaults[j] = nil
					}
				}
			}
			r.byteFaults[i] = f
		}
	}
	return f
}

// CutOnCommand arms a cut: the first client command line whose command,
// after the tag, is cmd (case-insensitive, e.g. "UID EXPUNGE", "UID STORE")
// and whose text contains contains (case-insensitive; "" matches any, e.g.
// `\Deleted` or "BODY.PEEK[]") ends its connection; the server never gets
// that line.
func (r *Relay) CutOnCommand(cmd, contains string) *Fault {
	return r.armCommand(cmd, contains, false)
}

// CutAfterCommand is CutOnCommand that forwards the matching line to the
// server first, then cuts: the server may or may not have acted on it, and
// the client never learns which.
func (r *Relay) CutAfterCommand(cmd, contains string) *Fault {
	return r.armCommand(cmd, contains, true)
}

// BeforeCommand arms a hook: before the first client command line that
// matches cmd and contains (as for CutOnCommand) is forwarded, fn runs,
// holding that line (and what the client sends after it) back until fn
// returns. It lets a test act at an exact point of another client's
// exchange, e.g. change a flag between two of its commands.
func (r *Relay) BeforeCommand(cmd, contains string, fn func()) *Fault {
	f := r.newCommandFault(cmd, contains)
	f.hook = fn
	return r.armCommandFault(f)
}

func (r *Relay) armCommand(cmd, contains string, forward bool) *Fault {
	f := r.newCommandFault(cmd, contains)
	f.forward = forward
	return r.armCommandFault(f)
}

func (r *Relay) newCommandFault(cmd, contains string) *Fault {
	return &Fault{
		r: r, fired: make(chan struct{}), armed: true,
		cmd:      asciiUpper(strings.Join(strings.Fields(cmd), " ")),
		contains: asciiUpper(contains),
	}
}

func (r *Relay) armCommandFault(f *Fault) *Fault {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cmdFaults = append(r.cmdFaults, f)
	r.updateLineFaultsLocked()
	return f
}

func (r *Relay) updateLineFaultsLocked() {
	r.lineFaults[0].Store(len(r.cmdFaults) > 0)
	r.lineFaults[1].Store(len(r.hideCaps) > 0)
}

func (r *Relay) acceptLoop() {
	defer r.wg.Done()
	for {
		nc, err := r.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			time.Sleep(5 * time.Millisecond)
			continue
		}
		r.mu.Lock()
		r.accepted++
		refuse, closed := r.refuse, r.closed
		if !refuse && !closed {
			r.wg.Add(1)
		}
		r.mu.Unlock()
		if refuse || closed {
			if tc, ok := nc.(*net.TCPConn); ok {
				tc.SetLinger(0) // a reset, as close as a listener gets to refusing
			}
			nc.Close()
			continue
		}
		go r.handle(nc)
	}
}

// handle relays one connection until it ends.
func (r *Relay) handle(client net.Conn) {
	defer r.wg.Done()
	d := net.Dialer{Timeout: dialTimeout}
	server, err := d.DialContext(r.ctx, "tcp", r.upstream)
	if err != nil {
		client.Close()
		return
	}
	c := &conn{r: r, client: client, server: server, done: make(chan struct{})}
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		client.Close()
		server.Close()
		return
	}
	r.conns[c] = struct{}{}
	r.mu.Unlock()

	var wg sync.WaitGroup
	for i, sd := range singleDirs {
		src, dst := client, server
		if sd == ServerToClient {
			src, dst = server, client
		}
		ch := make(chan event, 8)
		wg.Add(2)
		go func() { defer wg.Done(); c.read(sd, src, ch) }()
		go func() { defer wg.Done(); c.write(i, dst, ch) }()
	}
	wg.Wait()
	c.cut()
	r.mu.Lock()
	delete(r.conns, c)
	r.mu.Unlock()
}

// conn is one relayed connection.
type conn struct {
	r              *Relay
	client, server net.Conn
	done           chan struct{} // closed when the connection is cut
	cutOnce        sync.Once
	raw            atomic.Bool    // after STARTTLS: no IMAP parsing
	halfClosed     atomic.Int32   // directions that ended cleanly
	muted          [2]atomic.Bool // by direction: writes stopped until the cut
}

// cut ends the connection: both sockets are closed and every goroutine of it
// returns.
func (c *conn) cut() {
	c.cutOnce.Do(func() {
		close(c.done)
		c.client.Close()
		c.server.Close()
	})
}

// mute stops direction i from writing anything more: a Write under way
// ends and every later one fails, without cutting the connection (the
// caller cuts it). A cut after a forwarded command mutes the way back
// before the command leaves, so that the answer to it can never slip
// through between the write and the cut.
func (c *conn) mute(i int) {
	c.muted[i].Store(true)
	dst := c.server
	if singleDirs[i] == ServerToClient {
		dst = c.client
	}
	_ = dst.SetWriteDeadline(time.Unix(1, 0))
}

// event is what a reader hands its writer.
type event struct {
	data []byte    // to forward
	at   time.Time // when it was read
	cut  bool      // cut the connection here (after data, if any)
	eof  error     // the source ended (io.EOF: cleanly)
}

func (c *conn) send(ch chan<- event, ev event) bool {
	select {
	case ch <- ev:
		return true
	case <-c.done:
		return false
	}
}

// read reads src, splits it into events and hands them to the writer.
func (c *conn) read(d Dir, src net.Conn, ch chan<- event) {
	buf := make([]byte, 32<<10)
	var sc scanner
	for {
		n, err := src.Read(buf)
		if n > 0 {
			at := time.Now()
			for _, ev := range c.scan(d, &sc, buf[:n]) {
				ev.at = at
				if !c.send(ch, ev) {
					return
				}
				if ev.cut {
					return
				}
			}
		}
		if err != nil {
			c.send(ch, event{eof: err, at: time.Now()})
			return
		}
	}
}

// writeState counts what one direction of a connection has forwarded for
// the byte fault armed.
type writeState struct {
	fault *Fault
	count int64
}

// write forwards the reader's events to dst, applying latency, rate, stalls
// and byte faults.
func (c *conn) write(i int, dst net.Conn, ch <-chan event) {
	r := c.r
	var ws writeState
	for {
		var ev event
		select {
		case ev = <-ch:
		case <-c.done:
			return
		}
		if ev.cut && len(ev.data) == 0 {
			c.cut()
			return
		}
		if ev.cut {
			c.mute(1 - i) // the line goes out, its answer never comes back
		}
		if ev.eof != nil {
			if !errors.Is(ev.eof, io.EOF) {
				c.cut()
				return
			}
			// Half-close: the peer sees the end after everything before it.
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
			if c.halfClosed.Add(1) == 2 {
				c.cut()
			}
			return
		}
		r.mu.Lock()
		latency := r.latency[i]
		r.mu.Unlock()
		if latency > 0 && !c.sleepUntil(ev.at.Add(latency)) {
			return
		}
		data := ev.data
		for len(data) > 0 {
			if !c.waitStall(i) {
				return
			}
			r.mu.Lock()
			f, rate := r.byteFaults[i], r.rate[i]
			r.mu.Unlock()
			if f != ws.fault {
				ws.fault, ws.count = f, 0
			}
			k := len(data)
			if rate > 0 {
				k = min(k, max(rate/20, 1)) // about 20 writes a second
			}
			fires := false
			if f != nil && ws.count+int64(k) >= f.n {
				if f.fire() {
					fires = true
					k = int(f.n - ws.count)
				} else {
					ws.fault, ws.count = nil, 0 // someone else fired it
				}
			}
			if k > 0 {
				start := time.Now()
				if _, err := dst.Write(data[:k]); err != nil {
					if c.muted[i].Load() {
						<-c.done // the other direction cuts
						return
					}
					c.cut()
					return
				}
				data = data[k:]
				ws.count += int64(k)
				if rate > 0 && !c.sleepUntil(start.Add(time.Duration(k)*time.Second/time.Duration(rate))) {
					return
				}
			}
			if fires && !f.stall {
				c.cut()
				return
			}
		}
		if ev.cut {
			c.cut()
			return
		}
	}
}

// sleepUntil waits until t or the end of the connection; false means the end.
func (c *conn) sleepUntil(t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return true
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-c.done:
		return false
	}
}

// waitStall waits while direction i is stalled; false means the connection ended.
func (c *conn) waitStall(i int) bool {
	for {
		c.r.mu.Lock()
		ch := c.r.stalls[i]
		c.r.mu.Unlock()
		if ch == nil {
			return true
		}
		select {
		case <-ch:
		case <-c.done:
			return false
		}
	}
}
