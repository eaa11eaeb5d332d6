package main

import (
	"fmt"
	"io"
	"net"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3/pop3client"
)

// More end-to-end tests of several instances sharing one PostgreSQL (issue
// 6); the helpers are in scaleout_test.go.

// switchRelay is a load balancer whose choice the test makes: a TCP relay
// that sends every new connection to the backend chosen last with use, and
// counts the connections each backend got.
type switchRelay struct {
	Addr     string
	backends []string
	mu       sync.Mutex
	target   int
	conns    []int
}

func startSwitch(t *testing.T, backends []string) *switchRelay {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &switchRelay{Addr: l.Addr().String(), backends: backends, conns: make([]int, len(backends))}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			target := s.backends[s.target]
			s.conns[s.target]++
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				new(tap).relay(c, target, io.Discard)
			}()
		}
	}()
	return s
}

// use sends the connections from now on to backend i.
func (s *switchRelay) use(i int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.target = i
}

// counts returns how many connections each backend got so far.
func (s *switchRelay) counts() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.conns)
}

// TestClientAlternatingInstancesKeepMode: fetchmail and mpop leave mail on
// the server (keep; policy.on_dele: keep) and fetch what they have not seen
// (UIDL, RETR of the new UIDLs, QUIT), through a balancer that sends each of
// their runs to the other of two instances, while mail arrives between
// runs. Each run delivers exactly the messages that arrived since the one
// before, octet for octet, so that all runs together deliver every message
// appended exactly once. Once the mailbox is also re-created upstream (new
// UIDVALIDITY and UIDs) after a run on the other instance: the UIDLs that
// instance handed out, kept in PostgreSQL, are the ones served.
func TestClientAlternatingInstancesKeepMode(t *testing.T) {
	dv := dovecot.Start(t)
	inst := startInstances(t, dv, 2, scaleOptions{onDele: "keep"})
	backends := []string{inst[0].Addr, inst[1].Addr}
	between := func(i int) []byte {
		return trapMessage(fmt.Sprintf("between runs %d", i), "", fmt.Sprintf("arrived between runs, %d\n", i))
	}
	for _, kind := range clientKinds {
		if kind.name != "fetchmail" && kind.name != "mpop" {
			continue
		}
		t.Run(kind.name, func(t *testing.T) {
			t.Parallel()
			requireCommand(t, kind.command)
			user := dovecot.User(t)
			lb := startSwitch(t, backends)
			host, port, _ := net.SplitHostPort(lb.Addr)
			client := kind.setup(t, clientAccount{Mode: modePlain, Host: host, Port: port, User: user,
				Password: dv.Password, Dir: clientDir(t)})

			// What happens upstream before each run; run i goes to
			// instance i%2+1.
			arrivals := []struct {
				reset bool // re-create the mailbox first
				msgs  [][]byte
			}{
				{msgs: initialMessages()},
				{},
				{msgs: laterMessages()[:1]},
				{msgs: laterMessages()[1:]},
				{msgs: [][]byte{between(1), between(2)}}, // seen by instance 1 only
				{reset: true, msgs: [][]byte{between(3)}},
				{},
				{msgs: [][]byte{between(4)}},
			}
			var appended, delivered [][]byte
			had := map[string]bool{} // IMAP bodies at the run before
			for run, step := range arrivals {
				if step.reset {
					_, msgs := imapInbox(t, dv, user)
					recreateInbox(t, dv, user, msgs)
				}
				for _, m := range step.msgs {
					dv.Append(t, user, "INBOX", m)
				}
				_, all := imapInbox(t, dv, user)
				var want [][]byte
				for _, m := range all {
					if !had[string(m.Body)] {
						want = append(want, asRETR(m.Body))
						had[string(m.Body)] = true
					}
				}
				if len(want) != len(step.msgs) {
					t.Fatalf("before run %d: %d new messages in IMAP, %d appended", run+1, len(want), len(step.msgs))
				}
				appended = append(appended, want...)

				target := run % 2
				lb.use(target)
				before := lb.counts()
				got := client.fetch(t)
				after := lb.counts()
				delivered = append(delivered, got...)
				if after[target] == before[target] || after[1-target] != before[1-target] {
					t.Fatalf("run %d: connections per instance went from %v to %v, want new ones on instance %d only",
						run+1, before, after, target+1)
				}
				what := fmt.Sprintf("run %d (instance %d, %d new)", run+1, target+1, len(step.msgs))
				if step.reset {
					what += " after the mailbox was re-created"
				}
				compareDeliveries(t, what, got, want)
			}
			compareDeliveries(t, "all runs together", delivered, appended)
		})
	}
}

// TestKilledInstanceLockExpiresWithinLease: instance 1 serves a session, so
// holds the maildrop's lock in PostgreSQL, and is killed with SIGKILL: it
// releases nothing. On instance 2 the user gets -ERR [IN-USE] right after
// the kill, and is served within state.lock_lease (plus a margin for
// polling), with the same UIDLs.
func TestKilledInstanceLockExpiresWithinLease(t *testing.T) {
	const lease = 2 * time.Second
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	for i := range 2 {
		dv.Append(t, user, "INBOX", fmt.Appendf(nil, "Subject: %d\r\nMessage-ID: <%d@kill.example>\r\n\r\nbody %d\r\n", i, i, i))
	}
	inst := startInstances(t, dv, 2, scaleOptions{lockLease: lease})

	held, err := inst[0].login(t, user, dv.Password)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	before, err := uidlsOf(held)
	if err != nil || len(before) != 2 {
		t.Fatalf("instance 1 lists %v (%v), want 2 UIDLs", before, err)
	}
	// Past the first lease: only renewals keep the lock now.
	time.Sleep(lease + lease/2)
	if _, err := inst[1].login(t, user, dv.Password); !isInUse(err) {
		t.Fatalf("instance 2 %v after a live session held the lock for %v, want -ERR [IN-USE]", err, lease+lease/2)
	}

	inst[0].kill(t)
	killed := time.Now()
	if _, err := inst[1].login(t, user, dv.Password); !isInUse(err) {
		t.Fatalf("instance 2 right after instance 1 was killed (%v): %v, want -ERR [IN-USE]: the lock is "+
			"held for its lease, not released", time.Since(killed), err)
	}
	inUse := 1
	for {
		c, err := inst[1].login(t, user, dv.Password)
		waited := time.Since(killed)
		if err == nil {
			after, err := uidlsOf(c)
			if err != nil || !reflect.DeepEqual(after, before) {
				t.Fatalf("UIDLs on instance 2 %v (%v), instance 1 served %v", after, err, before)
			}
			if err := c.Quit(); err != nil {
				t.Fatal(err)
			}
			t.Logf("instance 2 served the user %v after the kill (lease %v), after %d answers [IN-USE]", waited, lease, inUse)
			if waited > lease+2*time.Second {
				t.Fatalf("the killed instance's lock was freed after %v, want at most the lease %v + 2s", waited, lease)
			}
			return
		}
		if !isInUse(err) {
			t.Fatalf("instance 2 %v after the kill: %v, want -ERR [IN-USE] or +OK", waited, err)
		}
		inUse++
		if waited > lease+2*time.Second {
			t.Fatalf("instance 2 still answers %v %v after the kill (lease %v)", err, waited, lease)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestUIDValidityResetSeenByBothInstances: after both instances served the
// user's UIDLs, the mailbox is re-created upstream (new UIDVALIDITY, new
// UIDs, one message gone, one new), and sessions on both instances log in
// at the same moment (policy.lock: none, so that neither waits for the
// other: two per instance). All of them list the same UIDLs, the surviving
// messages keep theirs, the new one gets one that was never used, and the
// re-identification is done once (one instance logs it). Three rounds.
func TestUIDValidityResetSeenByBothInstances(t *testing.T) {
	const (
		rounds      = 3
		perInstance = 2
		reidentify  = `"msg":"upstream UIDVALIDITY changed: messages re-identified"`
		ended       = `"msg":"session ended"`
	)
	dv := dovecot.Start(t)
	user := dovecot.User(t)
	for i := range 5 {
		dv.Append(t, user, "INBOX", fmt.Appendf(nil, "Subject: %d\r\nMessage-ID: <%d@reset.example>\r\n\r\nbody %d\r\n", i, i, i))
	}
	dv.Append(t, user, "INBOX", []byte("Subject: no Message-ID\r\nFrom: x@example.org\r\n\r\nidentified by its header\r\n"))
	inst := startInstances(t, dv, 2, scaleOptions{onDele: "keep", lock: "none"})
	sessions := 0
	logged := func(msg string) int { return inst[0].logged(msg) + inst[1].logged(msg) }

	var first []string
	for i, in := range inst {
		c, err := in.login(t, user, dv.Password)
		if err != nil {
			t.Fatal(err)
		}
		got, err := uidlsOf(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Quit(); err != nil {
			t.Fatal(err)
		}
		sessions++
		if i == 0 {
			first = got
		} else if !reflect.DeepEqual(got, first) {
			t.Fatalf("instance 2 lists %v, instance 1 %v", got, first)
		}
	}
	_, cur := imapInbox(t, dv, user)
	if len(first) != len(cur) {
		t.Fatalf("POP3 lists %d UIDLs, IMAP has %d messages", len(first), len(cur))
	}
	uidlOf := map[string]string{} // body → UIDL
	used := map[string]bool{}
	for i, m := range cur {
		uidlOf[string(m.Body)] = first[i]
		used[first[i]] = true
	}

	for round := 1; round <= rounds; round++ {
		// The oldest message is gone; the others come back in reverse
		// order (other UIDs than before), and one is new.
		survivors := cur[1:]
		validity, _ := imapInbox(t, dv, user)
		dv.EmptyWithNewUIDValidity(t, user, "INBOX")
		for i := len(survivors) - 1; i >= 0; i-- {
			dv.Append(t, user, "INBOX", survivors[i].Body)
		}
		dv.Append(t, user, "INBOX", fmt.Appendf(nil, "Subject: new %d\r\nMessage-ID: <new%d@reset.example>\r\n\r\narrived with reset %d\r\n", round, round, round))
		newValidity, want := imapInbox(t, dv, user)
		if newValidity == validity {
			t.Fatal("UIDVALIDITY did not change")
		}
		resets := logged(reidentify)

		type result struct {
			instance int
			uidls    []string
			err      error
		}
		start := make(chan struct{})
		results := make(chan result, len(inst)*perInstance)
		for i, in := range inst {
			for range perInstance {
				c, err := pop3client.Dial(in.Addr) // greeted; the logins start together
				if err != nil {
					t.Fatal(err)
				}
				c.SetDeadline(time.Now().Add(30 * time.Second))
				go func() {
					defer c.Close()
					<-start
					r := result{instance: i + 1}
					if r.err = c.Login(user, dv.Password); r.err == nil {
						if r.uidls, r.err = uidlsOf(c); r.err == nil {
							r.err = c.Quit()
						}
					}
					results <- r
				}()
			}
		}
		close(start)
		var all []result
		for range len(inst) * perInstance {
			all = append(all, <-results)
		}
		sessions += len(all)
		for _, r := range all {
			if r.err != nil {
				t.Fatalf("round %d: a session on instance %d: %v", round, r.instance, r.err)
			}
			if !reflect.DeepEqual(r.uidls, all[0].uidls) {
				t.Fatalf("round %d: two sessions at once after the reset list different UIDLs:\ninstance %d: %v\ninstance %d: %v",
					round, all[0].instance, all[0].uidls, r.instance, r.uidls)
			}
		}
		got := all[0].uidls
		if len(got) != len(want) {
			t.Fatalf("round %d: POP3 lists %d UIDLs %v, IMAP has %d messages", round, len(got), got, len(want))
		}
		for i, m := range want {
			old, known := uidlOf[string(m.Body)]
			switch {
			case known && got[i] != old:
				t.Errorf("round %d: %s has UIDL %s after the reset, %s before", round, messageID(m.Body), got[i], old)
			case !known && used[got[i]]:
				t.Errorf("round %d: the new message %s got UIDL %s, already used before", round, messageID(m.Body), got[i])
			case !known:
				uidlOf[string(m.Body)] = got[i]
				used[got[i]] = true
			}
		}
		waitFor(t, "every session's log line", func() bool { return logged(ended) >= sessions })
		if n := logged(reidentify) - resets; n != 1 {
			t.Errorf("round %d: %d sessions logged re-identifying the messages, want 1:\n%s\n%s",
				round, n, inst[0].stderr.String(), inst[1].stderr.String())
		}
		if t.Failed() {
			return
		}
		cur = want
	}
}
