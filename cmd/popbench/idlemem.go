package main

// The idle scenario at a scale Dovecot's processes would not fit on the
// machine: 10,000 logged-in idle sessions through popbridge, in front of
// go-imap's in-memory IMAP server (imapmemserver) running inside popbench.
// Only popbridge's memory is measured, as in the idle scenario, so the
// upstream's own cost does not matter.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapserver"
	"github.com/emersion/go-imap/v2/imapserver/imapmemserver"
)

// memUpstream is an imapmemserver with the users of the scenario.
type memUpstream struct {
	addr string
	srv  *imapserver.Server
}

// startMemUpstream serves n users (memUser), each with an INBOX of msgs
// small messages, on a free loopback port.
func startMemUpstream(n, msgs int, password string) (*memUpstream, error) {
	mem := imapmemserver.New()
	for i := range n {
		name := memUser(i)
		u := imapmemserver.NewUser(name, password)
		if err := u.Create("INBOX", nil); err != nil {
			return nil, err
		}
		for j := range msgs {
			if _, err := u.Append("INBOX", bytes.NewReader(message(name, j, smallSize(j))), &imap.AppendOptions{}); err != nil {
				return nil, err
			}
		}
		mem.AddUser(u)
	}
	srv := imapserver.New(&imapserver.Options{
		NewSession: func(*imapserver.Conn) (imapserver.Session, *imapserver.GreetingData, error) {
			return mem.NewSession(), nil, nil
		},
		Caps:         imap.CapSet{imap.CapIMAP4rev1: {}, imap.CapIMAP4rev2: {}},
		InsecureAuth: true, // loopback only
		Logger:       discardLogger{},
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	go srv.Serve(ln)
	return &memUpstream{addr: ln.Addr().String(), srv: srv}, nil
}

func (m *memUpstream) close() { m.srv.Close() }

type discardLogger struct{}

func (discardLogger) Printf(string, ...any) {}

// sessionsWithinFileLimit is how many idle sessions fit in one process's
// limit on open files, at two sockets each, with some to spare.
func sessionsWithinFileLimit() int {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 1 << 30
	}
	return max(int(lim.Cur)-256, 0) / 2
}

func memUser(i int) string { return fmt.Sprintf("mem%05d", i) }

// scenarioIdleMem: memory per idle session with o.idleMem sessions, for
// popbridge (and -baseline's) in front of imapmemserver.
func (b *bench) scenarioIdleMem(ctx context.Context) error {
	n := b.o.idleMem
	if most := sessionsWithinFileLimit(); n > most {
		// Each session is two sockets in popbridge (and two in
		// popbench: the client and the in-memory upstream's end).
		b.logf("idle with imapmemserver: %d sessions instead of %d: the open-files limit allows no more (raising it needs CAP_SYS_RESOURCE)", most, n)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("The imapmemserver idle scenario ran %s sessions instead of %s: two sockets each in one process, under this machine's hard limit on open files.", fmtCount(most), fmtCount(n)))
		n = most
	}
	start := time.Now()
	up, err := startMemUpstream(n, b.o.idleMsgs, b.password)
	if err != nil {
		return fmt.Errorf("imapmemserver: %w", err)
	}
	defer up.close()
	b.logf("imapmemserver with %d users of %d messages on %s in %v", n, b.o.idleMsgs, up.addr, time.Since(start).Round(time.Millisecond))
	users := make([]string, n)
	for i := range users {
		users[i] = memUser(i)
	}
	scen := "idle " + fmtCount(n) + " (imapmemserver)"
	b.rep.idleMemScenario = scen
	type bin struct{ name, path string }
	bins := []bin{{targetBridge, b.bin}}
	if b.o.baseline != "" {
		p, err := filepath.Abs(b.o.baseline)
		if err != nil {
			return err
		}
		bins = append(bins, bin{targetBase, p})
	}
	for i, bn := range bins {
		dir := filepath.Join(b.dir, "memserver-"+bn.name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		var br *bridge
		t := &target{name: bn.name, pop3: true, addr: func() string { return br.addr }}
		// Warm-up: the first login of each user names its messages.
		if br, err = startBridge(bn.path, dir, up.addr, false); err != nil {
			return err
		}
		err := b.warmUsers(t, users)
		br.stop()
		if err != nil {
			return err
		}
		for r := range b.o.runs {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := b.idleBridge(t, scen, users, (r+i)%b.o.runs, &br, func(withMetrics bool) (err error) {
				br, err = startBridge(bn.path, dir, up.addr, withMetrics)
				return err
			}); err != nil {
				return err
			}
			br.stop()
		}
	}
	return nil
}
