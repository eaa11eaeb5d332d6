package proxy_test

// More of "nothing is lost" (README: What UPDATE promises), against a real Dovecot: the
// mailbox's UIDVALIDITY changing under an open session, a message expunged
// in the middle of a TOP, a state store that fails (errors, a read-only
// file, a corrupt record), and clients that misbehave (stop reading,
// trickle bytes, open thousands of connections). soak_test.go has them all
// at once; cmd/popbridge/storebusy_test.go a state file held by another
// process.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/boltstore"
)

// withServer changes the pop3.Server (limits, timeouts) before it serves.
func withServer(f func(*pop3.Server)) bridgeOption {
	return func(_ *proxy.Options, _ *imapupstream.Config, s *pop3.Server) { f(s) }
}

// expectClosed fails unless the connection ends without another line.
func expectClosed(t *testing.T, c *pop3client.Client) {
	t.Helper()
	if line, err := c.ReadLine(); err == nil {
		t.Fatalf("the connection is still open: %q", line)
	}
}

// TestFaultUIDValidityChangeDuringSession: the mailbox's UIDVALIDITY
// changes (doveadm, as a restore or a repair would) while a POP3 session is
// open, so the session's UIDs may no longer name its messages. Dovecot
// still runs the next command on its old view (a UID STORE included) and
// only then ends the IMAP session with BYE. No message is served whole or
// changed by a stale UID: RETR and TOP answer -ERR [SYS/TEMP] (a message
// longer than one read may have started: it then ends without the
// terminating dot) and the connection closes; DELE + QUIT answers -ERR
// [SYS/TEMP] and changes nothing upstream, whatever policy.on_dele says,
// not even \Seen. The next session works and shows the same UIDLs, which
// uidmap keeps by re-identifying the messages.
func TestFaultUIDValidityChangeDuringSession(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "one\r\ntwo\r\n"), bigMessage("big", 256<<10)})
	store := uidmap.NewMemoryStore()
	b := startBridge(t, dv, withStore(store))
	want := uidls(t, b, user)
	validity, orig := imapState(t, dv, user, "INBOX")
	bump := func(t *testing.T) {
		t.Helper()
		validity += 1000
		dv.Doveadm(t, "mailbox", "update", "-u", user, "--uid-validity", fmt.Sprint(validity), "INBOX")
	}

	for _, tc := range []struct {
		cmd      string
		mayStart bool // bigger than the first read: may start, must not end
	}{
		{cmd: "RETR 1"}, {cmd: "TOP 2 1"}, {cmd: "TOP 1 0"}, {cmd: "RETR 3", mayStart: true},
	} {
		t.Run(tc.cmd, func(t *testing.T) {
			c := b.loginWithin(t, user, 5*time.Second)
			bump(t)
			line, err := c.Cmd("%s", tc.cmd)
			switch {
			case err == nil && tc.mayStart:
				got, err := c.MultiLine()
				if !errors.Is(err, pop3client.ErrNoTerminator) {
					t.Fatalf("%s after the UIDVALIDITY change: +OK and %d octets, %v; want no terminating dot", tc.cmd, len(got), err)
				}
				t.Logf("client saw: %q, %d octets, the connection closed without the terminating dot", line, len(got))
			case errCode(err) != "SYS/TEMP":
				t.Fatalf("%s after the UIDVALIDITY change: %q, %v; want -ERR [SYS/TEMP]", tc.cmd, line, err)
			default:
				t.Logf("client saw: %q", line)
				expectClosed(t, c)
			}
		})
	}

	for _, mode := range []proxy.OnDele{proxy.OnDeleExpunge, proxy.OnDeleTrash, proxy.OnDeleHide} {
		for _, retr := range []bool{false, true} {
			name := "DELE+QUIT/" + string(mode)
			if retr {
				name = "RETR+DELE+QUIT/" + string(mode)
			}
			t.Run(name, func(t *testing.T) {
				p := defaultPolicy()
				p.OnDele = mode
				b := startBridge(t, dv, withPolicy(p), withStore(store))
				c := b.loginWithin(t, user, 5*time.Second)
				if retr { // \Seen is then due at UPDATE, before the deletions
					if _, err := c.Retr(2); err != nil {
						t.Fatal(err)
					}
				}
				bump(t)
				for n := 1; n <= 3; n++ {
					if _, err := c.Cmd("DELE %d", n); err != nil {
						t.Fatal(err)
					}
				}
				line, err := c.Cmd("QUIT")
				if errCode(err) != "SYS/TEMP" {
					t.Fatalf("QUIT after the UIDVALIDITY change: %q, %v; want -ERR [SYS/TEMP]", line, err)
				}
				t.Logf("client saw: %q", line)
				expectClosed(t, c)
				_, after := imapState(t, dv, user, "INBOX")
				if !slices.Equal(uidsOf(after), uidsOf(orig)) {
					t.Fatalf("INBOX has %v, had %v", uidsOf(after), uidsOf(orig))
				}
				checkUntouched(t, orig, after) // no \Deleted, \Seen or keyword either
			})
		}
	}

	if got := uidls(t, b, user); !slices.Equal(got, want) {
		t.Fatalf("UIDLs after the UIDVALIDITY changes %v, before %v", got, want)
	}
	c := b.loginWithin(t, user, 5*time.Second)
	for i, m := range orig {
		if got, err := c.Retr(i + 1); err != nil || !bytes.Equal(got, wantRETR(m.Body)) {
			t.Fatalf("next session: RETR %d: %d octets, %v", i+1, len(got), err)
		}
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if !b.logged("upstream UIDVALIDITY changed: messages re-identified", "kept", "3") {
		t.Error("the re-identification was not logged")
	}
}

// failingStore is a uidmap.Store whose Load or Apply fail on demand, as a
// store whose disk or database is gone would.
type failingStore struct {
	uidmap.Store
	failLoad, failApply atomic.Bool
}

var errStoreDown = errors.New("test: state store unavailable")

func (s *failingStore) Load(ctx context.Context, key uidmap.Key) (*uidmap.Maildrop, error) {
	if s.failLoad.Load() {
		return nil, errStoreDown
	}
	return s.Store.Load(ctx, key)
}

func (s *failingStore) Apply(ctx context.Context, key uidmap.Key, ch *uidmap.Change) error {
	if s.failApply.Load() {
		return errStoreDown
	}
	return s.Store.Apply(ctx, key, ch)
}

// loginRefused logs in and fails unless the answer is -ERR [SYS/TEMP], at
// once, with the connection still usable (QUIT answers).
func (b *bridge) loginRefused(t *testing.T, user string) {
	t.Helper()
	c := b.dial(t)
	if _, err := c.Cmd("USER %s", user); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	line, err := c.Cmd("PASS %s", b.DV.Password)
	if errCode(err) != "SYS/TEMP" {
		t.Fatalf("login: %q, %v; want -ERR [SYS/TEMP]", line, err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("-ERR [SYS/TEMP] after %v", d)
	}
	t.Logf("client saw: %q", line)
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT after the refused login: %v", err)
	}
}

// loginNow logs in and fails on any error, [IN-USE] included: a failed
// session before must have released the maildrop lock at once.
func (b *bridge) loginNow(t *testing.T, user string) *pop3client.Client {
	t.Helper()
	c := b.dial(t)
	if err := c.Login(user, b.DV.Password); err != nil {
		t.Fatalf("login: %v", err)
	}
	return c
}

func listUIDLs(t *testing.T, c *pop3client.Client) []string {
	t.Helper()
	list, err := c.Listing("UIDL")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range list {
		out = append(out, e.Value)
	}
	return out
}

// TestFaultStoreUnavailable: the state store fails. A login that cannot
// read the maildrop's state, or cannot store the UIDLs of new messages, is
// refused with -ERR [SYS/TEMP] (a UIDL is never served that a later session
// could not reproduce) and leaves the upstream and the lock as they were;
// an UPDATE whose hidden marks cannot be stored answers -ERR [SYS/TEMP] and
// hides nothing. Once the store works again, so does everything.
func TestFaultStoreUnavailable(t *testing.T) {
	dv := dovecot.Start(t)
	fs := &failingStore{Store: uidmap.NewMemoryStore()}
	b := startBridge(t, dv, withStore(fs))
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n")})
	_, before := imapState(t, dv, user, "INBOX")

	fail := func(flag *atomic.Bool) func() {
		flag.Store(true)
		return func() { flag.Store(false) }
	}
	t.Run("Load fails", func(t *testing.T) {
		defer fail(&fs.failLoad)()
		b.loginRefused(t, user)
	})
	t.Run("Apply fails at the first session", func(t *testing.T) {
		defer fail(&fs.failApply)()
		b.loginRefused(t, user)
	})
	_, after := imapState(t, dv, user, "INBOX")
	checkUntouched(t, before, after)

	c := b.loginNow(t, user)
	want := listUIDLs(t, c)
	if err := c.Quit(); err != nil || len(want) != 2 {
		t.Fatalf("with the store back: UIDLs %v, QUIT %v", want, err)
	}

	t.Run("Apply fails for a new message", func(t *testing.T) {
		dv.Append(t, user, "INBOX", message("c", "c\r\n"))
		_, before = imapState(t, dv, user, "INBOX")
		func() {
			defer fail(&fs.failApply)()
			b.loginRefused(t, user)
		}()
		_, after := imapState(t, dv, user, "INBOX")
		checkUntouched(t, before, after)
		c := b.loginNow(t, user)
		got := listUIDLs(t, c)
		if err := c.Quit(); err != nil || len(got) != 3 || !slices.Equal(got[:2], want) {
			t.Fatalf("with the store back: UIDLs %v (%v), before %v", got, err, want)
		}
		want = got
	})

	t.Run("Apply fails at UPDATE (on_dele hide)", func(t *testing.T) {
		p := defaultPolicy()
		p.OnDele = proxy.OnDeleHide
		b := startBridge(t, dv, withPolicy(p), withStore(fs))
		c := b.loginNow(t, user)
		if _, err := c.Cmd("DELE 2"); err != nil {
			t.Fatal(err)
		}
		restore := fail(&fs.failApply)
		line, err := c.Cmd("QUIT")
		restore()
		if errCode(err) != "SYS/TEMP" {
			t.Fatalf("QUIT with the store failing: %q, %v; want -ERR [SYS/TEMP]", line, err)
		}
		t.Logf("client saw: %q", line)
		c = b.loginNow(t, user)
		if got := listUIDLs(t, c); !slices.Equal(got, want) {
			t.Fatalf("after the failed UPDATE: %v, want nothing hidden: %v", got, want)
		}
		c.Quit()
		_, after := imapState(t, dv, user, "INBOX")
		checkUntouched(t, before, after) // no keyword either
	})
}

// chattr sets or clears a file attribute, or skips the test where the file
// system does not support it.
func chattr(t *testing.T, attr, path string) {
	t.Helper()
	if out, err := exec.Command("chattr", attr, path).CombinedOutput(); err != nil {
		t.Skipf("chattr %s: %v %s (needs root and a file system with immutable files)", attr, err, out)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFaultBoltStoreReadOnly: the bolt file becomes unwritable under a
// running popbridge (chattr +i: every write fails, as on a file system
// remounted read-only). A login that has new UIDLs to store is refused with
// -ERR [SYS/TEMP] and the file keeps every byte; when the file is writable
// again, the next login works and keeps the old UIDLs.
func TestFaultBoltStoreReadOnly(t *testing.T) {
	dv := dovecot.Start(t)
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() }) // after the bridge stops
	b := startBridge(t, dv, withStore(s))
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n")})
	want := uidls(t, b, user)
	dv.Append(t, user, "INBOX", message("c", "c\r\n"))
	_, before := imapState(t, dv, user, "INBOX")

	chattr(t, "+i", path)
	t.Cleanup(func() { exec.Command("chattr", "-i", path).Run() })
	raw := mustRead(t, path)
	b.loginRefused(t, user)
	if !bytes.Equal(mustRead(t, path), raw) {
		t.Fatal("the state file changed")
	}
	_, after := imapState(t, dv, user, "INBOX")
	checkUntouched(t, before, after)

	chattr(t, "-i", path)
	c := b.loginNow(t, user)
	got := listUIDLs(t, c)
	if err := c.Quit(); err != nil || len(got) != 3 || !slices.Equal(got[:2], want) {
		t.Fatalf("with the file writable again: UIDLs %v (%v), before %v", got, err, want)
	}
}

// TestFaultBoltStoreCorruptRecord: a record of the bolt file is damaged.
// Every login of that maildrop is refused with -ERR [SYS/TEMP], the cause is
// logged, and the file is not touched: a damaged map is never silently
// replaced by a fresh one (that would rename every UIDL). Once the operator
// resets the maildrop (popbridge state reset), logins work again.
func TestFaultBoltStoreCorruptRecord(t *testing.T) {
	dv := dovecot.Start(t)
	path := filepath.Join(t.TempDir(), "state.db")
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n")})
	s1, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	b1 := startBridge(t, dv, withStore(s1))
	want := uidls(t, b1, user)
	b1.stop(t)
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}

	// Damage UID 1's record (the layout is uidmap/boltstore.go's).
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		drops := tx.Bucket([]byte("maildrops"))
		k, _ := drops.Cursor().First()
		uids := drops.Bucket(k).Bucket([]byte("uids"))
		first, _ := uids.Cursor().First()
		return uids.Put(first, []byte{0x7f, 0xff, 0xff})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	s2, err := boltstore.Open(path)
	if err != nil {
		t.Fatalf("OpenBolt of a file with a damaged record: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	b := startBridge(t, dv, withStore(s2))
	_, before := imapState(t, dv, user, "INBOX")
	raw := mustRead(t, path)
	b.loginRefused(t, user)
	b.loginRefused(t, user) // still: nothing was repaired behind the operator's back
	if !bytes.Equal(mustRead(t, path), raw) {
		t.Fatal("the state file changed")
	}
	_, after := imapState(t, dv, user, "INBOX")
	checkUntouched(t, before, after)
	logged := false
	for _, e := range b.Logs.FilterMessage("login failed").All() {
		if strings.Contains(fmt.Sprint(e.ContextMap()["error"]), "corrupt record") {
			logged = true
		}
	}
	if !logged {
		t.Error("the corrupt record was not logged")
	}

	key := uidmap.Key{Upstream: dv.IMAPAddr, User: user, Mailbox: "INBOX"}
	if err := s2.Reset(context.Background(), key); err != nil {
		t.Fatal(err)
	}
	c := b.loginNow(t, user)
	// Same UIDVALIDITY, Dovecot's format: the same UIDLs come out again.
	if got := listUIDLs(t, c); !slices.Equal(got, want) {
		t.Fatalf("after the reset: %v, want %v", got, want)
	}
	c.Quit()
}

// TestFaultClientStopsReading: a client asks for a big message and never
// reads it (a 4 KiB receive buffer). popbridge gives up after its write
// timeout, closes the connection, releases the upstream connection and the
// maildrop lock (a new session for the user works at once) and deletes
// nothing: the DELE before was no UPDATE. The stalled client never sees the
// terminating dot.
func TestFaultClientStopsReading(t *testing.T) {
	const writeTimeout = 500 * time.Millisecond
	b, r := relayedBridge(t, nil, withServer(func(s *pop3.Server) { s.WriteTimeout = writeTimeout }))
	user := dovecot.User(t)
	seed(t, b.DV, user, [][]byte{message("small", "hi\r\n"), bigMessage("big", 8<<20)})
	_, before := imapState(t, b.DV, user, "INBOX")

	d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		})
		return err
	}}
	conn, err := d.Dial("tcp", b.Addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := pop3client.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(user, b.DV.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Send("RETR 2"); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	time.Sleep(50 * time.Millisecond)
	if r.Conns() != 1 {
		t.Fatalf("%d upstream connections during the RETR", r.Conns())
	}
	waitRelayIdle(t, r, writeTimeout+5*time.Second)
	t.Logf("upstream connection released %v after the RETR (write timeout %v)", time.Since(start), writeTimeout)
	c2 := b.loginNow(t, user)
	if n, _, err := c2.Stat(); err != nil || n != 2 {
		t.Fatalf("STAT %d, %v", n, err)
	}
	if err := c2.Quit(); err != nil {
		t.Fatal(err)
	}
	_, after := imapState(t, b.DV, user, "INBOX")
	checkUntouched(t, before, after) // no expunge, no \Seen

	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Status(); err != nil {
		t.Fatalf("RETR 2: %v", err)
	}
	got, err := c.MultiLine()
	if err == nil {
		t.Fatalf("the stalled client got the whole message (%d octets)", len(got))
	}
	t.Logf("client saw: +OK and %d of %d octets, then %v", len(got), before[1].Size, err)
}

// trickle writes data one byte every interval until the connection fails
// or stop is closed.
func trickle(conn net.Conn, data string, interval time.Duration, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i = (i + 1) % len(data) {
			if _, err := conn.Write([]byte{data[i]}); err != nil {
				return
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	return &wg
}

// readToEnd reads lines until the connection ends and returns them.
func readToEnd(c *pop3client.Client) []string {
	var lines []string
	for {
		line, err := c.ReadLine()
		if err != nil {
			return lines
		}
		lines = append(lines, line)
	}
}

// TestFaultSlowloris: clients that keep a connection busy with a byte every
// 100 ms. Before login, a line that never ends is cut off by AuthTimeout
// (which a trickle does not extend) and complete lines by LoginTimeout;
// after login, IdleTimeout. Each gets a -ERR and the connection closes; the
// one after login releases its lock and deletes nothing.
func TestFaultSlowloris(t *testing.T) {
	const authTimeout, loginTimeout, idleTimeout = time.Second, 2 * time.Second, time.Second
	dv := dovecot.Start(t)
	b := startBridge(t, dv, withServer(func(s *pop3.Server) {
		s.AuthTimeout, s.LoginTimeout, s.IdleTimeout = authTimeout, loginTimeout, idleTimeout
	}))
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n")})
	_, before := imapState(t, dv, user, "INBOX")

	for _, tc := range []struct {
		name    string
		login   bool
		data    string
		timeout time.Duration
		last    string // the last line the client reads
	}{
		{"before login, no line end", false, "USER " + strings.Repeat("x", 500), authTimeout, "-ERR disconnected for inactivity"},
		{"before login, complete lines", false, "CAPA\r\n", loginTimeout, "-ERR login timeout"},
		{"after login, no line end", true, "STAT" + strings.Repeat(" ", 500), idleTimeout, "-ERR disconnected for inactivity"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := b.dial(t)
			if tc.login {
				if err := c.Login(user, dv.Password); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Cmd("DELE 1"); err != nil {
					t.Fatal(err)
				}
			}
			stop := make(chan struct{})
			start := time.Now()
			wg := trickle(c.Conn(), tc.data, 100*time.Millisecond, stop)
			lines := readToEnd(c)
			took := time.Since(start)
			close(stop)
			c.Close()
			wg.Wait()
			if len(lines) == 0 || lines[len(lines)-1] != tc.last {
				t.Fatalf("lines %q; want the last to be %q", lines, tc.last)
			}
			if took < tc.timeout-200*time.Millisecond || took > tc.timeout+2*time.Second {
				t.Errorf("closed after %v with a %v timeout", took, tc.timeout)
			}
			t.Logf("client saw %q, closed after %v", tc.last, took.Round(time.Millisecond))
			if tc.login {
				c := b.loginWithin(t, user, time.Second)
				c.Quit()
				_, after := imapState(t, dv, user, "INBOX")
				checkUntouched(t, before, after)
			}
		})
	}
}

// floodSize is how many connections a flood opens: 2,000, fewer if the
// file descriptor limit would not allow both ends of them comfortably.
func floodSize(t *testing.T) int {
	var lim syscall.Rlimit
	n := 2000
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err == nil && lim.Cur < uint64(3*n+1000) {
		n = max(int(lim.Cur)-1000, 200) / 3
		t.Logf("RLIMIT_NOFILE %d: flooding with %d connections instead of 2,000", lim.Cur, n)
	}
	return n
}

// floodResult is what the clients of a flood saw.
type floodResult struct {
	admitted map[string]int // greeted +OK, by source address
	refused  int            // -ERR [SYS/TEMP] too many connections…, then closed
	answers  map[string]int // the refusals, by text
}

// flood opens n connections at once from the addresses, round robin, and
// holds the admitted ones until every connection has its answer.
func flood(t *testing.T, addr string, n int, from []net.IP) floodResult {
	t.Helper()
	res := floodResult{admitted: map[string]int{}, answers: map[string]int{}}
	var (
		mu   sync.Mutex
		held []net.Conn
		wg   sync.WaitGroup
		errs []error
	)
	deadline := time.Now().Add(30 * time.Second)
	for i := range n {
		ip := from[i%len(from)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Deadline: deadline}
			conn, err := d.Dial("tcp", addr)
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			conn.SetDeadline(deadline)
			c, err := pop3client.NewClient(conn) // closes conn on error
			var after error                      // a refused connection must close
			if err == nil && !strings.HasPrefix(c.Greeting(), "+OK") {
				if line, rerr := c.ReadLine(); rerr == nil {
					after = fmt.Errorf("connection open after %q: %q", c.Greeting(), line)
				}
				conn.Close()
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("greeting: %w", err))
			case strings.HasPrefix(c.Greeting(), "+OK"):
				res.admitted[ip.String()]++
				held = append(held, conn)
			default:
				res.refused++
				res.answers[c.Greeting()]++
				if after != nil {
					errs = append(errs, after)
				}
			}
		}()
	}
	wg.Wait()
	for _, c := range held {
		c.Close()
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d flood connections failed, e.g. %v", len(errs), n, errs[0])
	}
	return res
}

// TestFaultConnectionFlood: 2,000 connections at once, from one address and
// from a hundred (127.0.0.2… : Linux routes all of 127/8 to lo), against
// MaxConnections 50 and MaxConnectionsPerIP 20. Exactly as many as the
// limits allow are greeted; every other one gets a clear -ERR [SYS/TEMP] and
// is closed; the counts return to zero afterwards. A well-behaved client
// served all along gets its mail byte for byte.
func TestFaultConnectionFlood(t *testing.T) {
	const maxConns, perIP = 50, 20
	n := floodSize(t)
	dv := dovecot.Start(t)
	b := startBridge(t, dv, withServer(func(s *pop3.Server) {
		s.MaxConnections, s.MaxConnectionsPerIP = maxConns, perIP
	}))
	good := dovecot.User(t)
	seed(t, dv, good, [][]byte{bigMessage("big", 1<<20)})
	_, want := imapState(t, dv, good, "INBOX")

	var (
		wg      sync.WaitGroup
		stop    = make(chan struct{})
		goodErr error
		rounds  atomic.Int32
	)
	gc := b.dial(t) // from 127.0.0.1: it holds one of the per-address slots
	if err := gc.Login(good, dv.Password); err != nil {
		t.Fatal(err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			got, err := gc.Retr(1)
			if err != nil || !bytes.Equal(got, wantRETR(want[0].Body)) {
				goodErr = fmt.Errorf("round %d: %d octets, %v", rounds.Load(), len(got), err)
				return
			}
			rounds.Add(1)
			select {
			case <-stop:
				goodErr = gc.Quit()
				return
			default:
			}
		}
	}()

	// afterwards: the slots are free again (the good client still holds one).
	slotsFree := func(t *testing.T) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			res := flood(t, b.Addr, perIP, []net.IP{net.IPv4(127, 0, 0, 1)})
			if res.admitted["127.0.0.1"] == perIP-1 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after the flood, %d of %d connections admitted: the counts did not return", res.admitted["127.0.0.1"], perIP)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}

	t.Run("one address", func(t *testing.T) {
		start, r0 := time.Now(), rounds.Load()
		res := flood(t, b.Addr, n, []net.IP{net.IPv4(127, 0, 0, 1)})
		t.Logf("%d connections from 127.0.0.1 in %v: %d greeted, %d refused %v; the good client did %d RETRs meanwhile",
			n, time.Since(start).Round(time.Millisecond), res.admitted["127.0.0.1"], res.refused, res.answers, rounds.Load()-r0)
		if res.admitted["127.0.0.1"] != perIP-1 || res.refused != n-(perIP-1) {
			t.Errorf("greeted %v, refused %d; want %d greeted", res.admitted, res.refused, perIP-1)
		}
		for line := range res.answers {
			if line != "-ERR [SYS/TEMP] too many connections from your address, try again later" {
				t.Errorf("refused with %q", line)
			}
		}
		slotsFree(t)
	})

	t.Run("many addresses", func(t *testing.T) {
		var from []net.IP
		for i := range n / perIP {
			from = append(from, net.IPv4(127, 0, byte(2+i/250), byte(2+i%250)))
		}
		start, r0 := time.Now(), rounds.Load()
		res := flood(t, b.Addr, n, from)
		total := 0
		for ip, k := range res.admitted {
			total += k
			if k > perIP {
				t.Errorf("%d connections from %s greeted, over the limit of %d", k, ip, perIP)
			}
		}
		t.Logf("%d connections from %d addresses in %v: %d greeted, %d refused %v; the good client did %d RETRs meanwhile",
			n, len(from), time.Since(start).Round(time.Millisecond), total, res.refused, res.answers, rounds.Load()-r0)
		if total != maxConns-1 || res.refused != n-total {
			t.Errorf("greeted %d, refused %d; want %d greeted", total, res.refused, maxConns-1)
		}
		for line := range res.answers {
			if !strings.HasPrefix(line, "-ERR [SYS/TEMP] too many connections") {
				t.Errorf("refused with %q", line)
			}
		}
		slotsFree(t)
	})

	close(stop)
	wg.Wait()
	if goodErr != nil {
		t.Fatalf("well-behaved client: %v", goodErr)
	}
	if rounds.Load() < 2 {
		t.Errorf("the well-behaved client did only %d RETRs", rounds.Load())
	}
	t.Logf("well-behaved client: %d byte-exact RETRs of %d octets", rounds.Load(), want[0].Size)
}

// expungingBackend wraps the proxy backend: right after a session has
// opened a TOP's reader, expunge(n) runs, as another IMAP client's
// expunge would in the middle of the TOP.
type expungingBackend struct {
	pop3.Backend
	expunge func(n int)
}

func (b *expungingBackend) Login(ctx context.Context, ci *pop3.ConnInfo, cred *pop3.Credentials) (pop3.Session, error) {
	s, err := b.Backend.Login(ctx, ci, cred)
	if err != nil {
		return s, err
	}
	return &expungingSession{Session: s, b: b}, nil
}

type expungingSession struct {
	pop3.Session
	b *expungingBackend
}

func (s *expungingSession) Top(ctx context.Context, n, lines int) (io.ReadCloser, error) {
	r, err := s.Session.Top(ctx, n, lines)
	if err == nil {
		s.b.expunge(n)
	}
	return r, err
}

// TestFaultExpungedDuringTop: another IMAP client expunges a message while
// TOP is reading it (TOP takes two FETCHes, the header and then the first
// lines of the body; the soak once hit the expunge in between). The client
// gets the TOP whole or -ERR, never a response broken off without the
// terminating dot, and the session goes on.
func TestFaultExpungedDuringTop(t *testing.T) {
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	body := "one\r\ntwo\r\nthree\r\nfour\r\n"
	seed(t, dv, user, [][]byte{message("a", body), message("b", body), message("c", body)})
	_, before := imapState(t, dv, user, "INBOX")
	ic := dv.Client(t, user)
	if _, err := ic.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	eb := &expungingBackend{}
	eb.expunge = func(n int) {
		eb.expunge = func(int) {} // once
		set := imap.UIDSetNum(imap.UID(before[n-1].UID))
		if err := ic.Store(set, &imap.StoreFlags{Op: imap.StoreFlagsAdd, Silent: true, Flags: []imap.Flag{imap.FlagDeleted}}, nil).Close(); err != nil {
			t.Error(err)
		}
		if err := ic.UIDExpunge(set).Close(); err != nil {
			t.Error(err)
		}
	}
	b := startBridgeWith(t, dv, func(be pop3.Backend) pop3.Backend { eb.Backend = be; return eb })
	c := b.loginNow(t, user)
	header, _, _ := bytes.Cut(before[1].Body, []byte("\r\n\r\n"))
	line, err := c.Cmd("TOP 2 2")
	switch {
	case err == nil:
		got, err := c.MultiLine()
		if want := string(header) + "\r\n\r\none\r\ntwo\r\n"; err != nil || string(got) != want {
			t.Fatalf("TOP 2 2 with the message expunged meanwhile: %q, %v; want it whole or -ERR", got, err)
		}
		t.Logf("client saw: %q and the whole answer", line)
	case strings.Contains(line, "no longer exists"):
		t.Logf("client saw: %q", line)
	default:
		t.Fatalf("TOP 2 2 with the message expunged meanwhile: %q, %v", line, err)
	}
	if _, err := c.Cmd("TOP 2 1"); err == nil || !strings.Contains(err.Error(), "no longer exists") {
		t.Fatalf("TOP of the expunged message: %v", err)
	}
	if got, err := c.Retr(1); err != nil || !bytes.Equal(got, before[0].Body) {
		t.Fatalf("RETR 1 after the expunge: %v", err)
	}
	if _, err := c.Cmd("DELE 3"); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if _, after := imapState(t, dv, user, "INBOX"); !slices.Equal(uidsOf(after), []uint32{before[0].UID}) {
		t.Fatalf("INBOX has %v, want only UID %d", uidsOf(after), before[0].UID)
	}
}
