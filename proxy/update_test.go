package proxy_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/imapupstream"
	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/postgres"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
	"github.com/popbridge/popbridge/uidmap"
	"github.com/popbridge/popbridge/uidmap/pgstore"
)

// What UPDATE reports is what happened to the client's own DELEted
// messages, and two UPDATEs of one maildrop never undo each other.

// shieldSetup is a Dovecot seen through a relay that hides UIDPLUS (so
// deletion is a plain EXPUNGE with others' \Deleted shielded), a user with
// four messages, and a fifth that another client flagged \Deleted.
func shieldSetup(t *testing.T, opts ...bridgeOption) (b *bridge, r *faultrelay.Relay, user string, msgs []imapMessage) {
	t.Helper()
	dv := dovecot.Start(t)
	r = faultrelay.Start(t, dv.IMAPAddr)
	r.HideCapabilities("UIDPLUS")
	b = startBridge(t, dv, append([]bridgeOption{withUpstream(r.Addr())}, opts...)...)
	user = dovecot.User(t)
	for i := range 4 {
		dv.Append(t, user, "INBOX", message(fmt.Sprintf("m%d", i), "body\r\n"))
	}
	dv.Append(t, user, "INBOX", message("other client", "keep me\r\n"), imap.FlagDeleted)
	_, msgs = imapState(t, dv, user, "INBOX")
	return b, r, user, msgs
}

// TestShieldRestoreFailureIsNotTheClients: the connection breaks while
// \Deleted is set again on the other client's message, after the EXPUNGE
// removed the client's messages: the client gets +OK, which is true; the
// other message is kept (without its flag) and logged.
func TestShieldRestoreFailureIsNotTheClients(t *testing.T) {
	t.Parallel()
	b, r, user, before := shieldSetup(t)
	c := b.dial(t)
	if err := c.Login(user, b.DV.Password); err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{1, 3} {
		if _, err := c.Cmd("DELE %d", n); err != nil {
			t.Fatal(err)
		}
	}
	// The restore is the only STORE with a condition before +FLAGS:
	// "UID STORE 5 (UNCHANGEDSINCE m) +FLAGS.SILENT (\Deleted)".
	f := r.CutOnCommand("UID STORE", ") +FLAGS")
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT when only restoring the other client's flag failed: %v, want +OK", err)
	}
	if !f.HasFired() {
		t.Fatalf("the restore never went out; commands %q", r.Commands())
	}
	_, after := imapState(t, b.DV, user, "INBOX")
	if got, want := uidsOf(after), []uint32{before[1].UID, before[3].UID, before[4].UID}; !slices.Equal(got, want) {
		t.Fatalf("upstream has %v, want %v", got, want)
	}
	if !b.logged(`could not restore \Deleted on other clients' messages after EXPUNGE`) {
		t.Error("the lost flag was not logged")
	}
}

// TestShieldKeepsAnUndelete: another client undeletes its message while
// popbridge has it shielded (between the shield and the EXPUNGE), setting
// its flags to (\Seen) as clients that store whole flag lists do: with
// CONDSTORE the restore is conditional and leaves that change alone. (A
// bare -FLAGS (\Deleted) then changes nothing on the server, which clears
// nothing a server could report: such an undelete is lost to the restore.)
func TestShieldKeepsAnUndelete(t *testing.T) {
	t.Parallel()
	b, r, user, before := shieldSetup(t)
	other := before[4].UID
	c := b.dial(t)
	if err := c.Login(user, b.DV.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	imapc := b.DV.Client(t, user)
	if _, err := imapc.Select("INBOX", nil).Wait(); err != nil {
		t.Fatal(err)
	}
	var undeleteErr error
	f := r.BeforeCommand("EXPUNGE", "", func() {
		undeleteErr = imapc.Store(imap.UIDSetNum(imap.UID(other)),
			&imap.StoreFlags{Op: imap.StoreFlagsSet, Silent: true, Flags: []imap.Flag{imap.FlagSeen}}, nil).Close()
	})
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
	if !f.HasFired() || undeleteErr != nil {
		t.Fatalf("the undelete did not run before EXPUNGE (fired %v): %v", f.HasFired(), undeleteErr)
	}
	_, after := imapState(t, b.DV, user, "INBOX")
	if got, want := uidsOf(after), []uint32{before[1].UID, before[2].UID, before[3].UID, other}; !slices.Equal(got, want) {
		t.Fatalf("upstream has %v, want %v", got, want)
	}
	if hasFlag(after[3], imap.FlagDeleted) || !hasFlag(after[3], imap.FlagSeen) {
		t.Fatalf("the restore set \\Deleted again on a message the other client had undeleted meanwhile; commands %q", r.Commands())
	}
}

// TestTwoUpdatesWithoutUIDPLUSUnderLockNone: with policy.lock none two
// sessions of one maildrop QUIT at once, each with a DELE, on an upstream
// without UIDPLUS. Their UPDATEs are serialised, so their shields never
// interleave: both get +OK, both messages are gone, and no message is left
// flagged \Deleted but the other client's.
func TestTwoUpdatesWithoutUIDPLUSUnderLockNone(t *testing.T) {
	t.Parallel()
	p := defaultPolicy()
	p.Exclusive = false
	b, r, user, before := shieldSetup(t, withPolicy(p))
	a, bb := b.dial(t), b.dial(t)
	for _, c := range []*pop3client.Client{a, bb} {
		if err := c.Login(user, b.DV.Password); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if _, err := bb.Cmd("DELE 2"); err != nil {
		t.Fatal(err)
	}
	// When A's UPDATE is about to EXPUNGE (its shield is up), B's QUIT
	// starts and has time to run its whole UPDATE, were it not made to wait:
	// by then no STORE of B's may have gone out.
	var wg sync.WaitGroup
	var quitB atomic.Value
	var storesDuringA []string
	f := r.BeforeCommand("EXPUNGE", "", func() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			quitB.Store(fmt.Sprint(bb.Quit()))
		}()
		time.Sleep(500 * time.Millisecond)
		for _, cmd := range r.Commands() {
			if strings.HasPrefix(cmd, "UID STORE") {
				storesDuringA = append(storesDuringA, cmd)
			}
		}
	})
	if err := a.Quit(); err != nil {
		t.Fatalf("QUIT of session A: %v", err)
	}
	wg.Wait()
	if !f.HasFired() {
		t.Fatal("A's UPDATE sent no EXPUNGE")
	}
	// A's own \Deleted and its shield of the other client's message.
	if len(storesDuringA) != 2 {
		t.Fatalf("STOREs sent before A's EXPUNGE: %q; B's UPDATE ran beside A's", storesDuringA)
	}
	if got := quitB.Load(); got != "<nil>" {
		t.Fatalf("QUIT of session B: %v", got)
	}
	_, after := imapState(t, b.DV, user, "INBOX")
	if got, want := uidsOf(after), []uint32{before[2].UID, before[3].UID, before[4].UID}; !slices.Equal(got, want) {
		t.Fatalf("upstream has %v, want %v", got, want)
	}
	for _, m := range after {
		if hasFlag(m, imap.FlagDeleted) != (m.UID == before[4].UID) {
			t.Errorf("UID %d: \\Deleted is %v", m.UID, hasFlag(m, imap.FlagDeleted))
		}
	}
}

// leaseObserver counts what the proxy reports.
type leaseObserver struct{ lost atomic.Int32 }

func (o *leaseObserver) Resolved(*uidmap.View) {}
func (o *leaseObserver) LockContended()        {}
func (o *leaseObserver) LeaseLost()            { o.lost.Add(1) }
func (o *leaseObserver) HookAnswered(string)   {}

// TestLostLeaseWritesNothing: two instances share PostgreSQL; instance A
// cannot reach it for longer than the lease while its session is open. The
// client's next connection, through instance B, takes the maildrop. A's
// QUIT then gets -ERR [SYS/TEMP], closes and deletes nothing; B's works.
func TestLostLeaseWritesNothing(t *testing.T) {
	t.Parallel()
	const lease = time.Second
	dsn := postgres.DSN(t)
	dbRelay := faultrelay.Start(t, strings.Split(strings.TrimPrefix(dsn, "postgres://postgres@"), "/")[0])
	dsnA := strings.Replace(dsn, dbRelay.Upstream(), dbRelay.Addr(), 1)
	open := func(dsn string) uidmap.Store {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := pgstore.Open(ctx, dsn, pgstore.Options{LockLease: lease})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}
	obsA := &leaseObserver{}
	dv := dovecot.Start(t)
	withObserver := func(o proxy.Observer) bridgeOption {
		return func(po *proxy.Options, _ *imapupstream.Config, _ *pop3.Server) { po.Observer = o }
	}
	instA := startBridge(t, dv, withStore(open(dsnA)), withObserver(obsA))
	instB := startBridge(t, dv, withStore(open(dsn)))
	user := dovecot.User(t)
	for i := range 3 {
		dv.Append(t, user, "INBOX", message(fmt.Sprintf("m%d", i), "body\r\n"))
	}
	_, before := imapState(t, dv, user, "INBOX")

	a := instA.dial(t)
	if err := a.Login(user, dv.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Retr(1); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	dbRelay.Stall(faultrelay.BothDirs)
	time.Sleep(lease + lease/2)

	bc := instB.loginWithin(t, user, 10*time.Second)
	if _, err := bc.Cmd("DELE 2"); err != nil {
		t.Fatal(err)
	}
	if err := bc.Quit(); err != nil {
		t.Fatalf("QUIT on instance B: %v", err)
	}
	dbRelay.Release() // A could write again, if it did not know better

	_, err := a.Cmd("QUIT")
	if code := errCode(err); code != "SYS/TEMP" {
		t.Fatalf("QUIT on instance A after its lease was lost: %v, want -ERR [SYS/TEMP]", err)
	}
	if line, err := a.ReadLine(); err == nil {
		t.Errorf("connection open after the lost lease: %q", line)
	}
	_, after := imapState(t, dv, user, "INBOX")
	if got, want := uidsOf(after), []uint32{before[0].UID, before[2].UID}; !slices.Equal(got, want) {
		t.Fatalf("upstream has %v, want %v (A's DELE not applied, B's applied)", got, want)
	}
	if hasFlag(after[0], imap.FlagSeen) {
		t.Error("A stored \\Seen after its lease was lost")
	}
	if obsA.lost.Load() != 1 {
		t.Errorf("LeaseLost reported %d times, want 1", obsA.lost.Load())
	}
	if !instA.logged("maildrop lock lost: the session ends without writing") {
		t.Error("the lost lease was not logged")
	}
}

// TestQuitAnsweredBeforeLogout: the client gets QUIT's +OK once UPDATE's
// EXPUNGE is done, without waiting for the upstream's answer to LOGOUT,
// and the maildrop lock is free by then: a new session logs in and finds
// the deletion done while the first one's LOGOUT is still held back.
func TestQuitAnsweredBeforeLogout(t *testing.T) {
	t.Parallel()
	b, r := relayedBridge(t, nil)
	user := dovecot.User(t)
	for i := range 2 {
		b.DV.Append(t, user, "INBOX", message(fmt.Sprintf("m%d", i), "body\r\n"))
	}
	answered := make(chan struct{})
	var heldTooLong atomic.Bool
	f := r.BeforeCommand("LOGOUT", "", func() {
		select {
		case <-answered:
		case <-time.After(10 * time.Second):
			heldTooLong.Store(true)
		}
	})
	c := b.dial(t)
	if err := c.Login(user, b.DV.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cmd("DELE 1"); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatalf("QUIT: %v", err)
	}
	if heldTooLong.Load() || b.logged("upstream LOGOUT failed") {
		t.Fatal("QUIT's +OK waited for the upstream's LOGOUT (and its timeout)")
	}
	c2 := b.dial(t)
	if err := c2.Login(user, b.DV.Password); err != nil {
		t.Fatalf("login right after QUIT's +OK: %v", err)
	}
	n, _, err := c2.Stat()
	close(answered)
	if err != nil || n != 1 {
		t.Fatalf("STAT after the first session's UPDATE: %d messages, %v; want 1", n, err)
	}
	if err := c2.Quit(); err != nil {
		t.Fatal(err)
	}
	if !f.HasFired() {
		t.Fatalf("no LOGOUT went upstream; commands %q", r.Commands())
	}
}
