package proxy_test

// TestSoak is a bounded load test of popbridge against a real Dovecot:
// POP3 clients run mixed sessions while IMAP clients APPEND and expunge
// mail in the same mailboxes, and a ledger of every message proves at the
// end that nothing was lost, nothing was deleted without DELE + QUIT, every
// RETR and TOP was byte-exact and no UIDL ever changed. popbridge's
// goroutines and heap must be back to their level before the load. The one
// answer allowed to end without its dot is a TOP whose later partial FETCH
// found the message expunged meanwhile: the connection is cut, and
// popbridge's log must say so for that very client.
//
// The short form runs with the other tests (20 POP3 clients for 8 s). The
// long form:
//
//	POPBRIDGE_SOAK=60s POPBRIDGE_SOAK_CLIENTS=100 go test -race -count=1 -run '^TestSoak$' -v -timeout 15m ./proxy/
//
// Loopback only; bounded in time (POPBRIDGE_SOAK, at most 30m) and in
// connections (POPBRIDGE_SOAK_CLIENTS POP3 clients, at most 1,000, plus one
// IMAP connection per writer and user).

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
)

type soakConfig struct {
	clients  int           // POP3 clients
	duration time.Duration // of the load
	users    int           // maildrops they share
	writers  int           // IMAP clients appending and expunging
	seed     int           // messages per maildrop at the start
}

func soakSettings(t *testing.T) soakConfig {
	cfg := soakConfig{clients: 20, duration: 8 * time.Second}
	if v := os.Getenv("POPBRIDGE_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 || d > 30*time.Minute {
			t.Fatalf("POPBRIDGE_SOAK=%q: want a duration up to 30m", v)
		}
		cfg.duration = d
	}
	if v := os.Getenv("POPBRIDGE_SOAK_CLIENTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			t.Fatalf("POPBRIDGE_SOAK_CLIENTS=%q: want 1 to 1000", v)
		}
		cfg.clients = n
	}
	// About two clients per maildrop: enough contention for [IN-USE].
	cfg.users = max(2, cfg.clients/2)
	cfg.writers = max(2, cfg.clients/10)
	cfg.seed = 8
	return cfg
}

// soakBody is message id, the same octets every time it is asked for, so
// the ledger needs no copy: mostly small messages, some of 16 to 64 KiB and
// a few of up to 512 KiB, with lines that need dot-stuffing, long lines,
// empty lines, and sometimes no final line end.
func soakBody(id int) []byte {
	rng := rand.New(rand.NewPCG(uint64(id), 0x50a4))
	size := 200 + rng.IntN(4000)
	switch {
	case id%20 == 7:
		size = 128<<10 + rng.IntN(384<<10)
	case id%5 == 2:
		size = 16<<10 + rng.IntN(48<<10)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: soak@example.org\r\nTo: pop@example.org\r\nSubject: soak message %d\r\n"+
		"Message-ID: <soak-%d@popbridge.test>\r\nX-Soak-ID: %d\r\n\r\n", id, id, id)
	for b.Len() < size {
		switch rng.IntN(8) {
		case 0:
			b.WriteString(".\r\n")
		case 1:
			b.WriteString("..leading dots " + strconv.Itoa(rng.IntN(1000)) + "\r\n")
		case 2:
			b.WriteString("\r\n")
		case 3:
			b.WriteString(strings.Repeat("long-line ", 40+rng.IntN(200)) + "\r\n")
		default:
			fmt.Fprintf(&b, "line %d of message %d: %x\r\n", rng.IntN(1<<20), id, rng.Uint64())
		}
	}
	if id%9 == 4 {
		b.WriteString("no final line end")
	}
	return b.Bytes()
}

// soakID finds the X-Soak-ID of a message's header, or -1.
func soakID(msg []byte) int {
	const field = "\r\nX-Soak-ID: "
	head, _, _ := bytes.Cut(msg, []byte("\r\n\r\n"))
	i := bytes.Index(head, []byte(field))
	if i < 0 {
		return -1
	}
	v := head[i+len(field):]
	if j := bytes.IndexByte(v, '\r'); j >= 0 {
		v = v[:j]
	}
	id, err := strconv.Atoi(string(v))
	if err != nil {
		return -1
	}
	return id
}

// wantTop is what TOP n k must deliver for a message: the header, the blank
// line and the first k lines of the body (all of it when it is shorter).
func wantTop(raw []byte, k int) []byte {
	full := wantRETR(raw)
	i := bytes.Index(full, []byte("\r\n\r\n"))
	out, body := slices.Clone(full[:i+4]), full[i+4:]
	for ; k > 0 && len(body) > 0; k-- {
		j := bytes.IndexByte(body, '\n')
		out, body = append(out, body[:j+1]...), body[j+1:]
	}
	return out
}

// soakMsg is the ledger entry of one message.
type soakMsg struct {
	user      string
	appended  bool // the APPEND (or seeding) succeeded
	expunged  bool // its IMAP writer expunged it
	deleted   int  // POP3 sessions that DELEted it and got +OK to QUIT
	uncertain bool // an APPEND or a QUIT failed: its fate is not known
}

// soakLedger records every message and every UIDL served.
type soakLedger struct {
	mu    sync.Mutex
	msgs  []*soakMsg                // by id
	uidls map[string]map[string]int // user → UIDL → id: a UIDL names one message, forever
	ids   map[string]map[int]string // user → id → UIDL: a message has one UIDL, forever
	errs  []string
	nerrs int
	// cuts are the clients (by local address) whose connection popbridge
	// cut in the middle of an answer.
	cuts map[string]bool
}

func newSoakLedger() *soakLedger {
	return &soakLedger{uidls: map[string]map[string]int{}, ids: map[string]map[int]string{}, cuts: map[string]bool{}}
}

func (l *soakLedger) cut(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cuts[client] = true
}

func (l *soakLedger) add(user string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, &soakMsg{user: user})
	return len(l.msgs) - 1
}

func (l *soakLedger) update(id int, f func(m *soakMsg)) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f(l.msgs[id])
}

func (l *soakLedger) errorf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.nerrs++
	if len(l.errs) < 20 {
		l.errs = append(l.errs, fmt.Sprintf(format, args...))
	}
}

// bind records that user's message id was served with uidl and reports a
// UIDL that changed or named two messages.
func (l *soakLedger) bind(user, uidl string, id int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.uidls[user] == nil {
		l.uidls[user], l.ids[user] = map[string]int{}, map[int]string{}
	}
	if other, ok := l.uidls[user][uidl]; ok && other != id {
		l.errs = append(l.errs, fmt.Sprintf("%s: UIDL %s named message %d, now %d", user, uidl, other, id))
		l.nerrs++
	}
	if other, ok := l.ids[user][id]; ok && other != uidl {
		l.errs = append(l.errs, fmt.Sprintf("%s: message %d had UIDL %s, now %s", user, id, other, uidl))
		l.nerrs++
	}
	l.uidls[user][uidl], l.ids[user][id] = id, uidl
}

// soakStats are counters of what happened.
type soakStats struct {
	sessions, quits, drops, rsets, quick, inUse  atomic.Int64
	retrs, retrBytes, tops, gone, deles, deleted atomic.Int64
	cutMidAnswer                                 atomic.Int64
	appends, expunges                            atomic.Int64
}

// startSoakBridge is startBridge with logs kept from Warn up only: a long
// soak would otherwise hold every debug entry in memory.
func startSoakBridge(t *testing.T, dv *dovecot.Server) (*bridge, func()) {
	t.Helper()
	core, logs := observer.New(zapcore.WarnLevel)
	log := zap.New(core)
	dialer, err := imapupstream.NewDialer(imapupstream.Config{
		Address: dv.IMAPAddr, TLS: imapupstream.TLSMode("none"), Mailbox: "INBOX",
		ConnectTimeout: 30 * time.Second, CommandTimeout: 30 * time.Second,
	}, log)
	if err != nil {
		t.Fatal(err)
	}
	store := uidmap.NewMemoryStore()
	backend, err := proxy.New(proxy.Options{Dialer: dialer, UpstreamID: dv.IMAPAddr, Mailbox: "INBOX",
		Map: uidmap.New(store, uidmap.Options{}), Policy: defaultPolicy(), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	srv := &pop3.Server{Backend: backend, Logger: log, Implementation: "popbridge", FailureDelay: 50 * time.Millisecond}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	stop := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}
	t.Cleanup(stop)
	return &bridge{Addr: l.Addr().String(), Up: dv, DV: dv, Password: dv.Password, Store: store, Logs: logs, srv: srv}, stop
}

// settleGoroutines waits until at most want goroutines run and returns how
// many do.
func settleGoroutines(want int, within time.Duration) int {
	deadline := time.Now().Add(within)
	for {
		n := runtime.NumGoroutine()
		if n <= want || time.Now().After(deadline) {
			return n
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func heapAlloc() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func TestSoak(t *testing.T) {
	cfg := soakSettings(t)
	// Dovecot's defaults allow 100 processes per service; one imap-login
	// process serving many connections spares a fork per login.
	dv := dovecot.Start(t, dovecot.WithConfig(
		"default_process_limit = 1000\ndefault_client_limit = 5000\n"+
			"service imap-login {\n  service_count = 0\n  process_min_avail = 2\n}"))
	b, _ := startSoakBridge(t, dv)
	ledger := newSoakLedger()
	var stats soakStats

	users := make([]string, cfg.users)
	for i := range users {
		users[i] = fmt.Sprintf("soak%d-%s", i, dovecot.User(t))
		ids := make([]int, cfg.seed)
		for j := range ids {
			ids[j] = ledger.add(users[i])
			ledger.update(ids[j], func(m *soakMsg) { m.appended = true })
		}
		dv.FillMaildir(t, users[i], cfg.seed, func(j int) []byte { return soakBody(ids[j]) })
	}

	baseGoroutines := settleGoroutines(0, 200*time.Millisecond)
	baseHeap := heapAlloc()
	t.Logf("soak: %d POP3 clients on %d maildrops, %d IMAP writers, %v; %d goroutines and %d KiB heap before",
		cfg.clients, cfg.users, cfg.writers, cfg.duration, baseGoroutines, baseHeap>>10)

	start := time.Now()
	end := start.Add(cfg.duration)
	var wg sync.WaitGroup
	for w := range cfg.writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			soakWriter(dv, w, cfg, users, end, ledger, &stats)
		}()
	}
	for i := range cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), uint64(start.UnixNano())))
			for time.Now().Before(end) {
				soakSession(b, users[rng.IntN(len(users))], rng, ledger, &stats)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)

	// popbridge is idle now: its goroutines and heap must be back.
	goroutines := settleGoroutines(baseGoroutines, 10*time.Second)
	if goroutines > baseGoroutines {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after the soak, %d before:\n%s", goroutines, baseGoroutines, buf[:runtime.Stack(buf, true)])
	}
	heap := heapAlloc()
	if heap > baseHeap+64<<20 {
		t.Errorf("heap %d KiB after the soak, %d KiB before", heap>>10, baseHeap>>10)
	}

	// The ledger against the mailboxes.
	for _, user := range users {
		present := map[int]bool{}
		_, msgs := imapState(t, dv, user, "INBOX")
		for _, m := range msgs {
			id := soakID(m.Body)
			switch {
			case id < 0 || id >= len(ledger.msgs) || ledger.msgs[id].user != user:
				t.Errorf("%s: a message that nobody appended (id %d)", user, id)
			case present[id]:
				t.Errorf("%s: message %d is there twice", user, id)
			case !bytes.Equal(m.Body, soakBody(id)):
				t.Errorf("%s: message %d changed upstream", user, id)
			}
			present[id] = true
		}
		// A last session: the listing has the same UIDLs as ever.
		c := b.loginEventually(t, user)
		list, err := c.Listing("UIDL")
		if err != nil {
			t.Fatal(err)
		}
		c.Quit()
		listed := map[string]bool{}
		for _, e := range list {
			listed[e.Value] = true
		}
		if len(list) != len(msgs) || len(listed) != len(list) {
			t.Errorf("%s: the last UIDL listing has %d entries (%d distinct), IMAP %d messages", user, len(list), len(listed), len(msgs))
		}
		for id, uidl := range ledger.ids[user] {
			if present[id] != listed[uidl] {
				t.Errorf("%s: message %d (UIDL %s): in IMAP %v, listed %v", user, id, uidl, present[id], listed[uidl])
			}
		}
		for id, m := range ledger.msgs {
			if m.user != user || m.uncertain || !m.appended {
				continue
			}
			gone := m.expunged || m.deleted > 0
			switch {
			case !present[id] && !gone:
				t.Errorf("%s: message %d LOST: neither expunged by its writer nor DELEted + QUIT", user, id)
			case present[id] && m.deleted > 0:
				t.Errorf("%s: message %d still there after %d DELE + QUIT +OK", user, id, m.deleted)
			case present[id] && m.expunged:
				t.Errorf("%s: message %d still there after its writer expunged it", user, id)
			}
		}
	}
	for _, e := range ledger.errs {
		t.Error(e)
	}
	if ledger.nerrs > len(ledger.errs) {
		t.Errorf("… and %d more errors", ledger.nerrs-len(ledger.errs))
	}
	warnings := map[string]int{}
	cutsLogged := 0
	for _, e := range b.Logs.All() {
		if e.Level >= zapcore.ErrorLevel {
			t.Errorf("popbridge logged %s: %s %v", e.Level, e.Message, e.ContextMap())
		}
		if strings.HasPrefix(e.Message, "message stream failed part-way") {
			// Only ever a message expunged meanwhile, for a client that
			// saw its connection end there.
			ctx := e.ContextMap()
			remote, _ := ctx["remote"].(string)
			if !strings.Contains(fmt.Sprint(ctx["error"]), "no such message") || !ledger.cuts[remote] {
				t.Errorf("popbridge cut an answer short: %s %v (clients cut: %v)", e.Message, ctx, ledger.cuts)
			}
			cutsLogged++
		}
		if warnings[e.Message]++; warnings[e.Message] == 1 {
			t.Logf("popbridge warned: %s %v", e.Message, e.ContextMap())
		}
	}
	if len(warnings) > 0 {
		t.Logf("popbridge warnings: %v", warnings)
	}
	if cutsLogged != len(ledger.cuts) {
		t.Errorf("%d clients saw an answer end without its dot, popbridge logged %d such answers", len(ledger.cuts), cutsLogged)
	}
	if stats.quits.Load() == 0 || stats.retrs.Load() == 0 || stats.deleted.Load() == 0 || stats.appends.Load() == 0 {
		t.Errorf("the soak did too little to prove anything")
	}
	var remaining int
	for _, m := range ledger.msgs {
		if m.appended && !m.expunged && m.deleted == 0 {
			remaining++
		}
	}
	t.Logf("soak: %v, %d sessions (%d QUIT, %d dropped, %d RSET+QUIT, %d login+STAT+QUIT; %d more logins answered [IN-USE]); "+
		"%d messages (%d seeded, %d APPENDed meanwhile, %d expunged by IMAP, %d deleted by POP3 DELE+QUIT, %d left); "+
		"%d RETRs (%d MiB, byte-exact), %d TOPs, %d DELEs, %d RETR/TOP of messages expunged meanwhile (%d cut mid-answer); "+
		"goroutines %d before, %d after; heap %d KiB before, %d KiB after",
		took.Round(time.Millisecond), stats.sessions.Load(), stats.quits.Load(), stats.drops.Load(), stats.rsets.Load(), stats.quick.Load(), stats.inUse.Load(),
		len(ledger.msgs), cfg.users*cfg.seed, stats.appends.Load(), stats.expunges.Load(), stats.deleted.Load(), remaining,
		stats.retrs.Load(), stats.retrBytes.Load()>>20, stats.tops.Load(), stats.deles.Load(), stats.gone.Load(), stats.cutMidAnswer.Load(),
		baseGoroutines, goroutines, baseHeap>>10, heap>>10)
}

// soakSession runs one POP3 session of a random kind.
func soakSession(b *bridge, user string, rng *rand.Rand, l *soakLedger, st *soakStats) {
	c, err := pop3client.Dial(b.Addr)
	if err != nil {
		l.errorf("dial: %v", err)
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	if err := c.Login(user, b.DV.Password); err != nil {
		if errCode(err) == "IN-USE" {
			st.inUse.Add(1)
			c.Quit()
			time.Sleep(time.Duration(5+rng.IntN(20)) * time.Millisecond)
			return
		}
		l.errorf("%s: login: %v", user, err)
		return
	}
	st.sessions.Add(1)
	kind := rng.IntN(20)
	if kind < 3 { // quick: a poller that finds nothing new
		if _, _, err := c.Stat(); err != nil {
			l.errorf("%s: STAT: %v", user, err)
		}
		if err := c.Quit(); err != nil {
			l.errorf("%s: QUIT: %v", user, err)
		}
		st.quick.Add(1)
		return
	}

	count, total, err := c.Stat()
	if err != nil {
		l.errorf("%s: STAT: %v", user, err)
		return
	}
	uidl, err := c.Listing("UIDL")
	if err != nil {
		l.errorf("%s: UIDL: %v", user, err)
		return
	}
	list, err := c.Listing("LIST")
	if err != nil {
		l.errorf("%s: LIST: %v", user, err)
		return
	}
	seen := map[string]bool{}
	var sum int64
	for i, e := range uidl {
		if e.N != i+1 || seen[e.Value] || !pop3.ValidUIDL(e.Value) {
			l.errorf("%s: UIDL listing entry %d %q (duplicate %v)", user, e.N, e.Value, seen[e.Value])
		}
		seen[e.Value] = true
	}
	for _, e := range list {
		n, _ := strconv.ParseInt(e.Value, 10, 64)
		sum += n
	}
	if len(uidl) != count || len(list) != count || sum != total {
		l.errorf("%s: STAT %d %d, UIDL %d entries, LIST %d entries of %d octets", user, count, total, len(uidl), len(list), sum)
		return
	}
	if count == 0 {
		c.Quit()
		return
	}

	known := map[int]int{} // message number → id, for the messages read
	// check checks an answer; false means the connection is gone.
	check := func(cmd string, n int, got []byte, err error, want func(raw []byte) []byte) bool {
		if err != nil {
			var e *pop3client.ErrResponse
			if errors.As(err, &e) && strings.Contains(e.Line, "no longer exists") {
				st.gone.Add(1) // an IMAP writer expunged it during the session
				return true
			}
			if errors.Is(err, pop3client.ErrNoTerminator) {
				// A TOP that needed a later partial FETCH, which found the
				// message expunged after +OK: popbridge cuts the connection
				// rather than end a truncated answer with a dot. The log
				// must say so for this client (checked at the end).
				l.cut(c.Conn().LocalAddr().String())
				st.cutMidAnswer.Add(1)
				return false
			}
			l.errorf("%s: %s: %v", user, cmd, err)
			return true
		}
		id := soakID(got)
		if id < 0 {
			l.errorf("%s: %s: no X-Soak-ID in %d octets", user, cmd, len(got))
			return true
		}
		raw := soakBody(id)
		if !bytes.Equal(got, want(raw)) {
			l.errorf("%s: %s: message %d: %d octets differ from the %d expected", user, cmd, id, len(got), len(want(raw)))
			return true
		}
		if size, _ := strconv.Atoi(list[n-1].Value); size != len(raw) {
			l.errorf("%s: LIST %d says %d octets, message %d has %d", user, n, size, id, len(raw))
		}
		l.bind(user, uidl[n-1].Value, id)
		known[n] = id
		return true
	}
	for range rng.IntN(4) {
		n := 1 + rng.IntN(count)
		got, err := c.Retr(n)
		st.retrs.Add(1)
		st.retrBytes.Add(int64(len(got)))
		if !check(fmt.Sprintf("RETR %d", n), n, got, err, wantRETR) {
			return
		}
	}
	for range rng.IntN(3) {
		n, k := 1+rng.IntN(count), []int{0, 1, 3, 10, 99999999}[rng.IntN(5)]
		got, err := c.Top(n, k)
		st.tops.Add(1)
		if !check(fmt.Sprintf("TOP %d %d", n, k), n, got, err, func(raw []byte) []byte { return wantTop(raw, k) }) {
			return
		}
	}
	var dele []int // ids
	for n, id := range known {
		if rng.IntN(2) == 0 {
			if _, err := c.Cmd("DELE %d", n); err != nil {
				l.errorf("%s: DELE %d: %v", user, n, err)
				return
			}
			dele = append(dele, id)
			st.deles.Add(1)
		}
	}

	switch kind := rng.IntN(10); {
	case kind < 2: // the client goes away: nothing may be deleted
		st.drops.Add(1)
	case kind < 4: // RSET undoes the DELEs
		if _, err := c.Cmd("RSET"); err != nil {
			l.errorf("%s: RSET: %v", user, err)
		}
		if err := c.Quit(); err != nil {
			l.errorf("%s: QUIT after RSET: %v", user, err)
		}
		st.rsets.Add(1)
	default:
		err := c.Quit()
		for _, id := range dele {
			l.update(id, func(m *soakMsg) {
				if err == nil {
					m.deleted++
				} else {
					m.uncertain = true
				}
			})
		}
		if err != nil {
			l.errorf("%s: QUIT after %d DELEs: %v", user, len(dele), err)
			return
		}
		st.quits.Add(1)
		st.deleted.Add(int64(len(dele)))
	}
}

// soakWriter is one IMAP client that, until end, APPENDs new messages to
// its maildrops and expunges some of those it appended itself.
func soakWriter(dv *dovecot.Server, w int, cfg soakConfig, users []string, end time.Time, l *soakLedger, st *soakStats) {
	type own struct {
		uid imap.UID
		id  int
	}
	rng := rand.New(rand.NewPCG(uint64(w), 0x1ab))
	conns := map[string]*imapclient.Client{}
	mine := map[string][]own{}
	defer func() {
		for _, c := range conns {
			c.Logout().Wait()
			c.Close()
		}
	}()
	var myUsers []string
	for i, u := range users {
		if i%cfg.writers == w {
			myUsers = append(myUsers, u)
		}
	}
	for time.Now().Before(end) {
		user := myUsers[rng.IntN(len(myUsers))]
		c := conns[user]
		if c == nil {
			var err error
			if c, err = imapclient.DialInsecure(dv.IMAPAddr, nil); err != nil {
				l.errorf("writer %d: dial: %v", w, err)
				return
			}
			conns[user] = c
			if err := c.Login(user, dv.Password).Wait(); err != nil {
				l.errorf("writer %d: login %s: %v", w, user, err)
				return
			}
			if _, err := c.Select("INBOX", nil).Wait(); err != nil {
				l.errorf("writer %d: select: %v", w, err)
				return
			}
		}
		if held := mine[user]; len(held) > 0 && rng.IntN(3) == 0 {
			i := rng.IntN(len(held))
			m := held[i]
			mine[user] = slices.Delete(held, i, i+1)
			set := imap.UIDSetNum(m.uid)
			err := c.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close()
			if err == nil {
				err = c.UIDExpunge(set).Close()
			}
			if err != nil {
				l.errorf("writer %d: expunge %s UID %d: %v", w, user, m.uid, err)
				l.update(m.id, func(m *soakMsg) { m.uncertain = true })
				return
			}
			l.update(m.id, func(m *soakMsg) { m.expunged = true })
			st.expunges.Add(1)
		} else {
			id := l.add(user)
			body := soakBody(id)
			cmd := c.Append("INBOX", int64(len(body)), nil)
			_, werr := cmd.Write(body)
			cerr := cmd.Close()
			data, err := cmd.Wait()
			if err = errors.Join(err, werr, cerr); err != nil || data.UID == 0 {
				l.errorf("writer %d: append to %s: %v (UID %v)", w, user, err, data)
				l.update(id, func(m *soakMsg) { m.uncertain = true })
				return
			}
			l.update(id, func(m *soakMsg) { m.appended = true })
			mine[user] = append(mine[user], own{data.UID, id})
			st.appends.Add(1)
		}
		time.Sleep(time.Duration(10+rng.IntN(30)) * time.Millisecond)
	}
}
