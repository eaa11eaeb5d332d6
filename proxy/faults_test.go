package proxy_test

// Fault injection: "nothing is lost" (README: What UPDATE promises) under upstream cuts,
// stalls, restarts and refusals, missing capabilities, a panicking session
// and hostile or vanishing clients, against a real Dovecot, mostly through
// faultrelay.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"

	"github.com/popbridge/popbridge/internal/faultrelay"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3"
	"github.com/popbridge/popbridge/pop3/pop3client"
	"github.com/popbridge/popbridge/proxy"
)

// TestFaultCutDuringRetr: the upstream connection breaks in the middle of a
// message. The client must not take the part for the whole: no terminating
// ".", the connection closes; nothing changes upstream (no \Seen for a
// message not delivered); the next session gets the message whole.
func TestFaultCutDuringRetr(t *testing.T) {
	b, r := relayedBridge(t, nil)
	user := dovecot.User(t)
	// The big message is over the fetch-ahead bound (1 MiB), so RETR 1
	// does not fetch it: the cut armed after RETR 1 falls inside RETR 2.
	seed(t, b.DV, user, [][]byte{message("small", "hi\r\n"), bigMessage("big", 2<<20)})
	_, before := imapState(t, b.DV, user, "INBOX")

	c := b.dial(t)
	if err := c.Login(user, b.DV.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Retr(1); err != nil { // delivered whole: gets \Seen at the end
		t.Fatal(err)
	}
	f := r.CutAfterBytes(faultrelay.ServerToClient, 256<<10)
	if _, err := c.Cmd("RETR 2"); err != nil {
		t.Fatalf("RETR 2: %v", err)
	}
	got, err := c.MultiLine()
	if !errors.Is(err, pop3client.ErrNoTerminator) {
		t.Fatalf("RETR 2 cut upstream: %d octets, %v; want ErrNoTerminator", len(got), err)
	}
	if len(got) == 0 || int64(len(got)) >= before[1].Size {
		t.Errorf("client got %d of %d octets before the cut; want a part", len(got), before[1].Size)
	}
	if !f.HasFired() {
		t.Fatal("the relay did not cut")
	}
	if line, err := c.ReadLine(); err == nil {
		t.Fatalf("connection still open after a truncated RETR: %q", line)
	}
	waitRelayIdle(t, r, 5*time.Second)

	_, after := imapState(t, b.DV, user, "INBOX")
	// Message 1 was delivered whole before the cut; its \Seen is written
	// only at the end of the session, which the cut ended: it may or may
	// not be there. Message 2 must be exactly as it was.
	checkUntouched(t, before, after, before[0].UID)
	if len(after) != 2 || hasFlag(after[0], imap.FlagDeleted) {
		t.Fatalf("upstream after the cut: %+v", uidsOf(after))
	}

	// Cut at the UID FETCH itself, before any octet of the message: a plain
	// -ERR [SYS/TEMP].
	c2 := b.loginWithin(t, user, 5*time.Second)
	f = r.CutOnCommand("UID FETCH", "BODY.PEEK[]")
	if _, err := c2.Cmd("RETR 2"); errCode(err) != "SYS/TEMP" || !f.HasFired() {
		t.Fatalf("RETR with the upstream cut at its UID FETCH: %v, want -ERR [SYS/TEMP]", err)
	}
	c2.Quit()

	// The same for TOP, whose partial fetches are cut part-way.
	c2 = b.loginWithin(t, user, 5*time.Second)
	f = r.CutAfterBytes(faultrelay.ServerToClient, 100<<10)
	if _, err := c2.Cmd("TOP 2 10000"); err != nil {
		t.Fatalf("TOP 2 10000: %v", err)
	}
	if got, err := c2.MultiLine(); !errors.Is(err, pop3client.ErrNoTerminator) || !f.HasFired() {
		t.Fatalf("TOP cut upstream: %d octets, %v; want ErrNoTerminator", len(got), err)
	}
	_, after = imapState(t, b.DV, user, "INBOX")
	checkUntouched(t, before, after, before[0].UID)

	c2 = b.loginWithin(t, user, 5*time.Second)
	got, err = c2.Retr(2)
	if err != nil || !bytes.Equal(got, wantRETR(before[1].Body)) {
		t.Fatalf("next session RETR 2: %d octets, %v", len(got), err)
	}
	if err := c2.Quit(); err != nil {
		t.Fatal(err)
	}
	if _, after := imapState(t, b.DV, user, "INBOX"); !hasFlag(after[1], imap.FlagSeen) {
		t.Error("message 2 not \\Seen after it was delivered whole")
	}
}

// TestFaultCutDuringUpdate: the upstream connection breaks in UPDATE, at
// each command of it. The client gets -ERR [SYS/TEMP]; no message it did
// not DELEte is touched (another client's \Deleted one included); the next
// session finishes the job with DELE + QUIT.
func TestFaultCutDuringUpdate(t *testing.T) {
	dv := dovecot.Start(t)
	for _, tc := range []struct {
		name, cmd, contains string
		forward             bool     // the server gets the command, the answer is lost
		retr                bool     // RETR first, so that UPDATE starts with \Seen
		hide                []string // capabilities the relay hides
	}{
		{name: "before UID EXPUNGE", cmd: "UID EXPUNGE"},
		{name: "after UID EXPUNGE", cmd: "UID EXPUNGE", forward: true},
		{name: "before UID STORE Deleted", cmd: "UID STORE", contains: `\Deleted`},
		{name: "after UID STORE Deleted", cmd: "UID STORE", contains: `\Deleted`, forward: true},
		{name: "before UID STORE Seen", cmd: "UID STORE", contains: `\Seen`, retr: true},
		// Without UIDPLUS, others' \Deleted is cleared around a bare
		// EXPUNGE ("shield"); a cut there leaves it cleared (see below).
		{name: "no UIDPLUS: before EXPUNGE", cmd: "EXPUNGE", hide: []string{"UIDPLUS"}},
		{name: "no UIDPLUS: after EXPUNGE", cmd: "EXPUNGE", hide: []string{"UIDPLUS"}, forward: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := faultrelay.Start(t, dv.IMAPAddr)
			r.HideCapabilities(tc.hide...)
			b := startBridge(t, dv, withUpstream(r.Addr()))
			user := dovecot.User(t)
			for i := range 4 {
				dv.Append(t, user, "INBOX", message(fmt.Sprintf("m%d", i), "body\r\n"))
			}
			others := dv.Append(t, user, "INBOX", message("other client", "keep me\r\n"), imap.FlagDeleted)
			_, before := imapState(t, dv, user, "INBOX")

			c := b.dial(t)
			if err := c.Login(user, dv.Password); err != nil {
				t.Fatal(err)
			}
			if tc.retr {
				if _, err := c.Retr(2); err != nil {
					t.Fatal(err)
				}
			}
			uidl, err := c.Listing("UIDL")
			if err != nil {
				t.Fatal(err)
			}
			deleted := map[string]bool{uidl[0].Value: true, uidl[2].Value: true}
			c.Cmd("DELE 1")
			c.Cmd("DELE 3")
			var f *faultrelay.Fault
			if tc.forward {
				f = r.CutAfterCommand(tc.cmd, tc.contains)
			} else {
				f = r.CutOnCommand(tc.cmd, tc.contains)
			}
			_, err = c.Cmd("QUIT")
			if code := errCode(err); code != "SYS/TEMP" {
				t.Fatalf("QUIT with the upstream cut at %s: %v, want -ERR [SYS/TEMP]", tc.cmd, err)
			}
			if !f.HasFired() {
				t.Fatalf("the relay never saw %s", tc.cmd)
			}
			if line, err := c.ReadLine(); err == nil {
				t.Errorf("connection open after QUIT: %q", line)
			}
			_, mid := imapState(t, dv, user, "INBOX")
			shielded := tc.hide != nil
			if shielded {
				// The documented limit of the shield (imapupstream
				// expungeShielded): the connection died between clearing
				// the other client's \Deleted and setting it again. Its
				// message is kept — it reappears — and its UID is logged.
				checkUntouched(t, before, mid, before[0].UID, before[2].UID, others)
				if !slices.Contains(uidsOf(mid), others) {
					t.Fatal("the other client's message was expunged")
				}
				if !b.logged(`could not restore \Deleted on other clients' messages after EXPUNGE`) {
					t.Error("the shielded messages whose \\Deleted was lost were not logged")
				}
			} else {
				checkUntouched(t, before, mid, before[0].UID, before[2].UID)
			}

			// The next session finishes the job.
			c2 := b.loginWithin(t, user, 5*time.Second)
			uidl2, err := c2.Listing("UIDL")
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range uidl2 {
				if deleted[e.Value] {
					if _, err := c2.Cmd("DELE %d", e.N); err != nil {
						t.Fatal(err)
					}
				}
			}
			if err := c2.Quit(); err != nil {
				t.Fatalf("QUIT of the retry: %v", err)
			}
			_, after := imapState(t, dv, user, "INBOX")
			if got, want := uidsOf(after), []uint32{before[1].UID, before[3].UID, others}; !slices.Equal(got, want) {
				t.Fatalf("after the retry upstream has %v, want %v", got, want)
			}
			checkUntouched(t, before, after, before[0].UID, before[2].UID, before[1].UID, others)
			if !shielded && !hasFlag(after[2], imap.FlagDeleted) {
				t.Error("the other client's \\Deleted flag was lost")
			}
		})
	}
}

// TestFaultCutDuringHide: with on_dele hide, the upstream breaks at the
// keyword STORE of UPDATE. Whichever answer the client gets must be true:
// +OK and the messages are hidden from the next session, or -ERR [SYS/TEMP]
// and a retry hides them. IMAP keeps every message; the others untouched.
func TestFaultCutDuringHide(t *testing.T) {
	p := defaultPolicy()
	p.OnDele = proxy.OnDeleHide
	b, r := relayedBridge(t, nil, withPolicy(p))
	user := dovecot.User(t)
	for i := range 3 {
		b.DV.Append(t, user, "INBOX", message(fmt.Sprintf("m%d", i), "body\r\n"))
	}
	_, before := imapState(t, b.DV, user, "INBOX")

	c := b.login(t, user)
	uidl, err := c.Listing("UIDL")
	if err != nil {
		t.Fatal(err)
	}
	c.Cmd("DELE 2")
	f := r.CutOnCommand("UID STORE", proxy.HiddenKeyword)
	_, quitErr := c.Cmd("QUIT")
	if quitErr != nil && errCode(quitErr) != "SYS/TEMP" {
		t.Fatalf("QUIT with the upstream cut at the keyword STORE: %v, want +OK or -ERR [SYS/TEMP]", quitErr)
	}
	if !f.HasFired() {
		t.Fatal("the relay never saw the keyword STORE")
	}
	_, mid := imapState(t, b.DV, user, "INBOX")
	checkUntouched(t, before, mid, before[1].UID)
	if len(mid) != 3 {
		t.Fatalf("hide removed messages upstream: %v", uidsOf(mid))
	}

	c2 := b.loginWithin(t, user, 5*time.Second)
	uidl2, err := c2.Listing("UIDL")
	if err != nil {
		t.Fatal(err)
	}
	if quitErr == nil {
		if len(uidl2) != 2 || uidl2[0].Value != uidl[0].Value || uidl2[1].Value != uidl[2].Value {
			t.Fatalf("QUIT said +OK, but the next session lists %v (was %v)", uidl2, uidl)
		}
		c2.Quit()
		return
	}
	// -ERR: the retry finishes the job.
	for _, e := range uidl2 {
		if e.Value == uidl[1].Value {
			c2.Cmd("DELE %d", e.N)
		}
	}
	if err := c2.Quit(); err != nil {
		t.Fatal(err)
	}
	c3 := b.loginWithin(t, user, 5*time.Second)
	if n, _, err := c3.Stat(); err != nil || n != 2 {
		t.Fatalf("after the retry: STAT %d, %v; want 2 messages", n, err)
	}
	c3.Quit()
}

// TestFaultStall: the upstream stops answering. With a 1 s command timeout
// the client hears so within a few seconds instead of hanging: -ERR
// [SYS/TEMP] before any message octet, or the connection closed without "."
// after some; a stalled login is refused the same way. Later sessions work.
func TestFaultStall(t *testing.T) {
	const timeout = time.Second
	b, r := relayedBridge(t, nil, withTimeouts(timeout, timeout))
	user := dovecot.User(t)
	seed(t, b.DV, user, [][]byte{message("small", "hi\r\n"), bigMessage("big", 1<<20)})
	_, before := imapState(t, b.DV, user, "INBOX")
	within := func(t *testing.T, start time.Time) {
		t.Helper()
		if d := time.Since(start); d > 3*timeout {
			t.Errorf("took %v with a %v timeout", d, timeout)
		}
	}
	// unstall drops what the relay holds, then lets traffic flow again: a
	// held command must not reach Dovecot after popbridge gave up on it.
	unstall := func() { r.CutAll(); r.Release() }

	t.Run("before RETR", func(t *testing.T) {
		c := b.loginWithin(t, user, 5*time.Second)
		r.Stall(faultrelay.BothDirs)
		defer unstall()
		start := time.Now()
		_, err := c.Cmd("RETR 1")
		if code := errCode(err); code != "SYS/TEMP" {
			t.Fatalf("RETR through a stalled upstream: %v, want -ERR [SYS/TEMP]", err)
		}
		within(t, start)
		unstall()
		// The session's upstream connection is gone: nothing more can be
		// served, so popbridge closes the connection (which frees the
		// maildrop lock at once) and a new session works.
		if line, err := c.ReadLine(); err == nil {
			t.Fatalf("the session went on after its upstream died: %q", line)
		}
		c2 := b.loginWithin(t, user, 5*time.Second)
		c2.Quit()
	})

	t.Run("during RETR", func(t *testing.T) {
		c := b.loginWithin(t, user, 5*time.Second)
		f := r.StallAfterBytes(faultrelay.ServerToClient, 200<<10)
		defer unstall()
		start := time.Now()
		if _, err := c.Cmd("RETR 2"); err != nil {
			t.Fatal(err)
		}
		got, err := c.MultiLine()
		if !errors.Is(err, pop3client.ErrNoTerminator) {
			t.Fatalf("RETR stalled part-way: %d octets, %v; want ErrNoTerminator", len(got), err)
		}
		within(t, start)
		if !f.HasFired() {
			t.Fatal("the relay did not stall")
		}
	})

	t.Run("during UPDATE", func(t *testing.T) {
		c := b.loginWithin(t, user, 5*time.Second)
		c.Cmd("DELE 1")
		r.Stall(faultrelay.BothDirs)
		defer unstall()
		start := time.Now()
		if _, err := c.Cmd("QUIT"); errCode(err) != "SYS/TEMP" {
			t.Fatalf("QUIT through a stalled upstream: %v, want -ERR [SYS/TEMP]", err)
		}
		within(t, start)
	})

	t.Run("at login", func(t *testing.T) {
		r.Stall(faultrelay.BothDirs)
		defer unstall()
		c := b.dial(t)
		start := time.Now()
		if _, err := c.Cmd("USER %s", user); err != nil {
			t.Fatal(err)
		}
		_, err := c.Cmd("PASS %s", b.DV.Password)
		if code := errCode(err); code != "SYS/TEMP" {
			t.Fatalf("login through a stalled upstream: %v, want -ERR [SYS/TEMP]", err)
		}
		within(t, start)
	})

	r.Disarm()
	waitRelayIdle(t, r, 5*time.Second)
	c := b.loginWithin(t, user, 5*time.Second)
	for i, m := range before {
		if got, err := c.Retr(i + 1); err != nil || !bytes.Equal(got, wantRETR(m.Body)) {
			t.Fatalf("after the stalls, RETR %d: %v", i+1, err)
		}
	}
	c.Quit()
	_, after := imapState(t, b.DV, user, "INBOX")
	if !slices.Equal(uidsOf(after), uidsOf(before)) || hasFlag(after[0], imap.FlagDeleted) {
		t.Fatalf("messages changed upstream: %v, were %v", uidsOf(after), uidsOf(before))
	}
}

// TestFaultSlowUpstream: a slow link (latency both ways, 4 MB/s) is no
// fault: every answer is complete and exact, and deletions apply.
func TestFaultSlowUpstream(t *testing.T) {
	b, r := relayedBridge(t, nil, withTimeouts(2*time.Second, 2*time.Second))
	user := dovecot.User(t)
	seed(t, b.DV, user, [][]byte{message("small", "one\r\ntwo\r\nthree\r\n"), bigMessage("big", 1<<20)})
	_, before := imapState(t, b.DV, user, "INBOX")
	r.SetLatency(faultrelay.BothDirs, 25*time.Millisecond)
	r.SetRate(faultrelay.ServerToClient, 4<<20)

	c := b.login(t, user)
	for i, m := range before {
		if got, err := c.Retr(i + 1); err != nil || !bytes.Equal(got, wantRETR(m.Body)) {
			t.Fatalf("RETR %d over a slow link: %d octets, %v", i+1, len(got), err)
		}
	}
	if got, err := c.Top(1, 2); err != nil || !bytes.HasSuffix(got, []byte("\r\n\r\none\r\ntwo\r\n")) {
		t.Fatalf("TOP 1 2 over a slow link: %q, %v", got, err)
	}
	c.Cmd("DELE 1")
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	_, after := imapState(t, b.DV, user, "INBOX")
	if !slices.Equal(uidsOf(after), []uint32{before[1].UID}) || !hasFlag(after[0], imap.FlagSeen) {
		t.Fatalf("after DELE 1 + QUIT: %v", uidsOf(after))
	}
}

// TestFaultUpstreamRestart: Dovecot restarts between sessions and during
// one. popbridge keeps running: an open session reports [SYS/TEMP] and
// deletes nothing, the next session works.
func TestFaultUpstreamRestart(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv)
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "b\r\n")})
	_, before := imapState(t, dv, user, "INBOX")

	c := b.login(t, user)
	if got, err := c.Retr(1); err != nil || !bytes.Equal(got, before[0].Body) {
		t.Fatalf("RETR 1: %v", err)
	}
	c.Quit()

	dv.Restart(t) // between sessions
	c = b.loginWithin(t, user, 5*time.Second)
	if got, err := c.Retr(2); err != nil || !bytes.Equal(got, before[1].Body) {
		t.Fatalf("after a restart, RETR 2: %v", err)
	}
	c.Cmd("DELE 1")

	dv.Restart(t) // during a session
	if _, err := c.Cmd("RETR 2"); errCode(err) != "SYS/TEMP" {
		t.Fatalf("RETR after the upstream restarted: %v, want -ERR [SYS/TEMP]", err)
	}
	// The connection is closed after that answer: no UPDATE can follow,
	// so the DELE of message 1 is void.
	if line, err := c.ReadLine(); err == nil {
		t.Fatalf("the session went on after its upstream died: %q", line)
	}
	if _, mid := imapState(t, dv, user, "INBOX"); len(mid) != 2 {
		t.Fatalf("a failed UPDATE removed messages: %v", uidsOf(mid))
	}

	c = b.loginWithin(t, user, 5*time.Second)
	c.Cmd("DELE 1")
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	if _, after := imapState(t, dv, user, "INBOX"); !slices.Equal(uidsOf(after), []uint32{before[1].UID}) {
		t.Fatalf("after DELE 1 + QUIT: %v", uidsOf(after))
	}
}

// TestFaultUpstreamRefusesOrBreaksAtLogin: the upstream is unreachable, or
// the connection breaks at each step of the login. The client gets -ERR
// [SYS/TEMP], never +OK, and no lock is left behind.
func TestFaultUpstreamRefusesOrBreaksAtLogin(t *testing.T) {
	b, r := relayedBridge(t, nil)
	user := dovecot.User(t)
	seed(t, b.DV, user, [][]byte{message("a", "a\r\n")})

	try := func(t *testing.T) {
		t.Helper()
		c := b.dial(t)
		c.Cmd("USER %s", user)
		start := time.Now()
		_, err := c.Cmd("PASS %s", b.DV.Password)
		if code := errCode(err); code != "SYS/TEMP" {
			t.Fatalf("login: %v, want -ERR [SYS/TEMP]", err)
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("-ERR [SYS/TEMP] after %v", d)
		}
	}
	t.Run("refused", func(t *testing.T) {
		r.Refuse(true)
		defer r.Refuse(false)
		try(t)
	})
	for _, step := range []struct{ cmd, contains string }{
		{"LOGIN", ""}, {"SELECT", ""}, {"UID FETCH", "RFC822.SIZE"},
	} {
		t.Run("cut at "+step.cmd, func(t *testing.T) {
			f := r.CutOnCommand(step.cmd, step.contains)
			try(t)
			if !f.HasFired() {
				t.Fatalf("the relay never saw %s", step.cmd)
			}
		})
	}
	t.Run("upstream down", func(t *testing.T) {
		b.DV.Stop(t)
		try(t)
		b.DV.Restart(t)
	})
	// Nothing was left locked or open.
	waitRelayIdle(t, r, 5*time.Second)
	c := b.loginWithin(t, user, time.Second)
	if n, _, err := c.Stat(); err != nil || n != 1 {
		t.Fatalf("STAT %d, %v", n, err)
	}
	c.Quit()
}

// TestFaultWithoutUIDPLUSOrMOVE: the upstream lacks UIDPLUS and/or MOVE,
// really (Dovecot configured so) or as far as popbridge can tell (the relay
// hides them). DELE + QUIT removes exactly the DELEted messages, never
// another client's \Deleted one, and never sends a command that was not
// advertised.
func TestFaultWithoutUIDPLUSOrMOVE(t *testing.T) {
	for _, tc := range []struct {
		name      string
		dvWithout []string // not advertised by Dovecot
		hide      []string // hidden by the relay
		mode      proxy.OnDele
		method    string   // logged
		sent      []string // commands (prefixes) that must be sent…
		notSent   []string // …and that must not
	}{
		{name: "expunge/dovecot without UIDPLUS", dvWithout: []string{"UIDPLUS"}, mode: proxy.OnDeleExpunge,
			method: "plain-expunge-shield", sent: []string{"UID SEARCH", "EXPUNGE"}, notSent: []string{"UID EXPUNGE"}},
		{name: "expunge/relay hides UIDPLUS", hide: []string{"UIDPLUS"}, mode: proxy.OnDeleExpunge,
			method: "plain-expunge-shield", sent: []string{"UID SEARCH", "EXPUNGE"}, notSent: []string{"UID EXPUNGE"}},
		{name: "trash/dovecot without MOVE", dvWithout: []string{"MOVE"}, mode: proxy.OnDeleTrash,
			method: "uid-copy+uid-expunge", sent: []string{"UID COPY", "UID EXPUNGE"}, notSent: []string{"UID MOVE", "MOVE", "EXPUNGE"}},
		{name: "trash/relay hides MOVE and UIDPLUS", hide: []string{"MOVE", "UIDPLUS"}, mode: proxy.OnDeleTrash,
			method: "uid-copy+plain-expunge-shield", sent: []string{"UID COPY", "EXPUNGE"}, notSent: []string{"UID MOVE", "MOVE", "UID EXPUNGE"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var dvOpts []dovecot.Option
			if tc.dvWithout != nil {
				dvOpts = append(dvOpts, dovecot.WithoutCapabilities(tc.dvWithout...))
			}
			p := defaultPolicy()
			p.OnDele = tc.mode
			b, r := relayedBridge(t, dvOpts, withPolicy(p))
			r.HideCapabilities(tc.hide...)
			dv := b.DV
			user := dovecot.User(t)
			for i := range 4 {
				dv.Append(t, user, "INBOX", message(fmt.Sprintf("m%d", i), "body\r\n"))
			}
			others := dv.Append(t, user, "INBOX", message("other client", "keep me\r\n"), imap.FlagDeleted)
			_, before := imapState(t, dv, user, "INBOX")

			c := b.dial(t)
			if err := c.Login(user, dv.Password); err != nil {
				t.Fatal(err)
			}
			c.Cmd("DELE 1")
			c.Cmd("DELE 3")
			if err := c.Quit(); err != nil {
				t.Fatalf("QUIT: %v", err)
			}
			_, after := imapState(t, dv, user, "INBOX")
			if got, want := uidsOf(after), []uint32{before[1].UID, before[3].UID, others}; !slices.Equal(got, want) {
				t.Fatalf("INBOX has %v, want %v", got, want)
			}
			checkUntouched(t, before, after, before[0].UID, before[2].UID)
			if !hasFlag(after[2], imap.FlagDeleted) {
				t.Error("the other client's message lost its \\Deleted flag")
			}
			if tc.mode == proxy.OnDeleTrash {
				_, trash := imapState(t, dv, user, "Trash")
				if len(trash) != 2 || !bytes.Equal(trash[0].Body, before[0].Body) || !bytes.Equal(trash[1].Body, before[2].Body) {
					t.Fatalf("Trash holds %d messages, want the 2 DELEted ones", len(trash))
				}
			}
			if !b.logged("upstream messages deleted", "method", tc.method) {
				t.Errorf("no log of the delete method %q", tc.method)
			}
			// "EXPUNGE" alone is a bare EXPUNGE; "UID EXPUNGE 1:3" is not one.
			sent := func(prefix string) bool {
				for _, cmd := range r.Commands() {
					cmd = strings.ToUpper(cmd)
					if cmd == prefix || strings.HasPrefix(cmd, prefix+" ") {
						return true
					}
				}
				return false
			}
			for _, cmd := range tc.sent {
				if !sent(cmd) {
					t.Errorf("%s was never sent (commands: %q)", cmd, r.Commands())
				}
			}
			for _, cmd := range tc.notSent {
				if sent(cmd) {
					t.Errorf("%s was sent to a server without %v (commands: %q)", cmd, append(tc.dvWithout, tc.hide...), r.Commands())
				}
			}
		})
	}
}

// panicBackend wraps the proxy backend: user's first Retrieve panics, in
// Retrieve itself or part-way through reading the message.
type panicBackend struct {
	pop3.Backend
	user     string
	midRead  bool
	panicked atomic.Bool
}

func (b *panicBackend) Login(ctx context.Context, ci *pop3.ConnInfo, cred *pop3.Credentials) (pop3.Session, error) {
	s, err := b.Backend.Login(ctx, ci, cred)
	if err != nil || cred.Username != b.user {
		return s, err
	}
	return &panicSession{Session: s, b: b}, nil
}

type panicSession struct {
	pop3.Session
	b *panicBackend
}

func (s *panicSession) Retrieve(ctx context.Context, n int) (io.ReadCloser, error) {
	if !s.b.panicked.CompareAndSwap(false, true) {
		return s.Session.Retrieve(ctx, n)
	}
	if !s.b.midRead {
		panic("faults test: panic in Retrieve")
	}
	rc, err := s.Session.Retrieve(ctx, n)
	if err != nil {
		return nil, err
	}
	return &panicReader{ReadCloser: rc, left: 100 << 10}, nil
}

type panicReader struct {
	io.ReadCloser
	left int
}

func (r *panicReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		panic("faults test: panic while reading a message")
	}
	n, err := r.ReadCloser.Read(p[:min(len(p), r.left)])
	r.left -= n
	return n, err
}

// TestFaultPanicInSession: a panic in one session closes that connection
// only; a session running at the same time and new ones get their mail byte
// for byte, and the panicked session's lock and upstream connection are
// released.
func TestFaultPanicInSession(t *testing.T) {
	dv := dovecot.Start(t)
	for _, midRead := range []bool{false, true} {
		t.Run(map[bool]string{false: "in Retrieve", true: "while reading"}[midRead], func(t *testing.T) {
			victim, bystander := dovecot.User(t), dovecot.User(t)
			pb := &panicBackend{user: victim, midRead: midRead}
			r := faultrelay.Start(t, dv.IMAPAddr)
			b := startBridgeWith(t, dv, func(be pop3.Backend) pop3.Backend { pb.Backend = be; return pb }, withUpstream(r.Addr()))
			for _, u := range []string{victim, bystander} {
				seed(t, dv, u, [][]byte{bigMessage("big", 1<<20), message("small", "hi\r\n")})
			}
			_, want := imapState(t, dv, bystander, "INBOX")

			// The bystander is in the middle of a big RETR when the panic comes.
			other := b.login(t, bystander)
			if _, err := other.Cmd("RETR 1"); err != nil {
				t.Fatal(err)
			}
			c := b.dial(t)
			if err := c.Login(victim, dv.Password); err != nil {
				t.Fatal(err)
			}
			if midRead {
				if _, err := c.Cmd("RETR 1"); err != nil {
					t.Fatalf("RETR 1: %v", err)
				}
				if got, err := c.MultiLine(); !errors.Is(err, pop3client.ErrNoTerminator) {
					t.Fatalf("RETR that panicked part-way: %d octets, %v; want ErrNoTerminator", len(got), err)
				}
			} else {
				if _, err := c.Cmd("RETR 1"); errCode(err) != "SYS/TEMP" {
					t.Fatalf("RETR that panicked: %v, want -ERR [SYS/TEMP]", err)
				}
				if line, err := c.ReadLine(); err == nil {
					t.Fatalf("connection open after a panic: %q", line)
				}
			}
			if !pb.panicked.Load() || !b.logged("panic in POP3 session; connection closed") {
				t.Fatal("no panic happened or it was not logged")
			}
			if got, err := other.MultiLine(); err != nil || !bytes.Equal(got, wantRETR(want[0].Body)) {
				t.Fatalf("bystander's RETR during the panic: %d octets, %v", len(got), err)
			}
			if err := other.Quit(); err != nil {
				t.Fatal(err)
			}
			waitRelayIdle(t, r, 5*time.Second) // the panicked session's upstream connection too
			for _, u := range []string{victim, bystander} {
				c := b.loginWithin(t, u, time.Second)
				got, err := c.Retr(1)
				if err != nil || !bytes.Equal(got, wantRETR(want[0].Body)) {
					t.Fatalf("%s after the panic: RETR 1: %d octets, %v", u, len(got), err)
				}
				c.Quit()
			}
		})
	}
}

// TestFaultClientDisconnectsMidRetr: the client goes away in the middle of
// a big message. popbridge lets go of the upstream connection and the lock
// promptly, without reading the rest of the message first, and changes
// nothing upstream.
func TestFaultClientDisconnectsMidRetr(t *testing.T) {
	b, r := relayedBridge(t, nil)
	user := dovecot.User(t)
	seed(t, b.DV, user, [][]byte{message("small", "hi\r\n"), bigMessage("big", 3<<20)})
	_, before := imapState(t, b.DV, user, "INBOX")
	// A 1 MB/s upstream: reading the rest of the message would take seconds.
	r.SetRate(faultrelay.ServerToClient, 1<<20)

	c := b.dial(t)
	if err := c.Login(user, b.DV.Password); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Cmd("RETR 2"); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c.DotReader(), make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	c.Close()
	start := time.Now()
	waitRelayIdle(t, r, 2*time.Second)
	c2 := b.loginWithin(t, user, time.Second)
	t.Logf("upstream connection and lock released %v after the client left", time.Since(start))
	r.SetRate(faultrelay.ServerToClient, 0)
	if n, _, err := c2.Stat(); err != nil || n != 2 {
		t.Fatalf("STAT %d, %v", n, err)
	}
	c2.Quit()
	_, after := imapState(t, b.DV, user, "INBOX")
	checkUntouched(t, before, after)
}

// TestFaultPipelinedFlood: 10,000 commands in one write are all answered,
// in order.
func TestFaultPipelinedFlood(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv)
	user := dovecot.User(t)
	seed(t, dv, user, [][]byte{message("a", "a\r\n"), message("b", "bb\r\n")})
	c := b.dial(t)
	if err := c.Login(user, dv.Password); err != nil {
		t.Fatal(err)
	}
	_, total, err := c.Stat()
	if err != nil {
		t.Fatal(err)
	}
	uidl, err := c.Cmd("UIDL 1")
	if err != nil {
		t.Fatal(err)
	}
	cmds := []string{"NOOP", "STAT", "UIDL 1"}
	answers := []string{"+OK", fmt.Sprintf("+OK 2 %d", total), uidl}
	const n = 10000
	var burst bytes.Buffer
	for i := range n {
		burst.WriteString(cmds[i%3] + "\r\n")
	}
	werr := make(chan error, 1)
	go func() { _, err := c.Conn().Write(burst.Bytes()); werr <- err }()
	for i := range n {
		line, err := c.ReadLine()
		if err != nil || line != answers[i%3] {
			t.Fatalf("answer %d to %s: %q, %v; want %q", i+1, cmds[i%3], line, err, answers[i%3])
		}
	}
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
}

// TestFaultHostileInput: random bytes, NULs and a 1 MB line get a clear
// -ERR or a closed connection, and a well-behaved client served at the same
// time gets its mail byte for byte.
func TestFaultHostileInput(t *testing.T) {
	dv := dovecot.Start(t)
	b := startBridge(t, dv)
	good, hostile := dovecot.User(t), dovecot.User(t)
	seed(t, dv, good, [][]byte{bigMessage("big", 1<<20)})
	seed(t, dv, hostile, [][]byte{message("h", "h\r\n")})
	_, want := imapState(t, dv, good, "INBOX")

	var wg sync.WaitGroup
	stop := make(chan struct{})
	var goodErr error
	var rounds int
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := pop3client.Dial(b.Addr)
		if err != nil {
			goodErr = err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		if goodErr = c.Login(good, dv.Password); goodErr != nil {
			return
		}
		for {
			got, err := c.Retr(1)
			if err != nil || !bytes.Equal(got, wantRETR(want[0].Body)) {
				goodErr = fmt.Errorf("round %d: %d octets, %v", rounds, len(got), err)
				return
			}
			rounds++
			select {
			case <-stop:
				goodErr = c.Quit()
				return
			default:
			}
		}
	}()

	rng := rand.New(rand.NewPCG(1939, 2449))
	junk := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			if rng.IntN(4) == 0 {
				p[i] = 0
			} else {
				p[i] = byte(rng.IntN(256))
			}
		}
		return p
	}
	// readAll reads status lines until the connection ends; each must be
	// -ERR (a reset may eat the last ones: the junk we sent is unread).
	readAll := func(t *testing.T, c *pop3client.Client) (lines []string) {
		t.Helper()
		for {
			line, err := c.ReadLine()
			if err != nil {
				return lines
			}
			if !strings.HasPrefix(line, "-ERR") {
				t.Errorf("answer to junk: %q", line)
			}
			lines = append(lines, line)
		}
	}

	t.Run("random bytes before login", func(t *testing.T) {
		c := b.dial(t)
		go c.Conn().Write(junk(64 << 10))
		lines := readAll(t, c)
		t.Logf("closed after %d -ERR lines: %q", len(lines), lines)
	})
	t.Run("random bytes after login", func(t *testing.T) {
		c := b.dial(t)
		if err := c.Login(hostile, dv.Password); err != nil {
			t.Fatal(err)
		}
		go c.Conn().Write(junk(256 << 10))
		lines := readAll(t, c)
		t.Logf("closed after %d -ERR lines", len(lines))
	})
	t.Run("NULs and a 1 MB line", func(t *testing.T) {
		c := b.loginWithin(t, hostile, 5*time.Second)
		for _, cmd := range []string{"NOOP\x00", "\x00\x00\x00", "RETR \x001", "LIST 1\x00", "DELE 1\x00x"} {
			if line, err := c.Cmd("%s", cmd); err == nil {
				t.Errorf("%q: %q, want -ERR", cmd, line)
			}
		}
		long := bytes.Repeat([]byte("A"), 1<<20)
		go c.Conn().Write(append(long, "\r\nNOOP\r\n"...))
		if line, err := c.Status(); err == nil || !strings.Contains(line, "too long") {
			t.Errorf("1 MB line: %q, %v; want -ERR line too long", line, err)
		}
		if _, err := c.Status(); err != nil {
			t.Errorf("NOOP after the long line: %v", err)
		}
		if n, _, err := c.Stat(); err != nil || n != 1 {
			t.Errorf("STAT after the junk: %d, %v", n, err)
		}
		if err := c.Quit(); err != nil {
			t.Error(err)
		}
	})
	close(stop)
	wg.Wait()
	if goodErr != nil {
		t.Fatalf("well-behaved client: %v", goodErr)
	}
	t.Logf("well-behaved client: %d byte-exact RETRs of %d octets meanwhile", rounds, want[0].Size)
	if _, after := imapState(t, dv, hostile, "INBOX"); len(after) != 1 || len(after[0].Flags) != 0 {
		t.Errorf("the hostile session changed its mailbox: %+v", after)
	}
}
