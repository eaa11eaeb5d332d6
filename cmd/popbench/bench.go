package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/pop3/pop3client"
)

// idleWindow is how long the machine's idleness is measured before a run.
func idleWindow(quick bool) time.Duration {
	if quick {
		return time.Second
	}
	return 3 * time.Second
}

// bench is one benchmark run: the servers, the targets and the results.
type bench struct {
	o        options
	dir      string
	password string
	up, peer *dovecot.Server
	bin      string
	br       *bridge
	base     *bridge // -baseline's popbridge, nil without
	targets  []*target
	rep      *report
}

// run runs the whole benchmark and writes the table (and the chart and the
// markdown when asked).
func run(ctx context.Context, o options) (*report, error) {
	o.sizes()
	if err := checkPrerequisites(); err != nil {
		return nil, err
	}
	raiseFileLimit()

	dir, err := os.MkdirTemp("/tmp", "popbench")
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil { // Dovecot's unprivileged processes traverse it
		return nil, err
	}
	var rnd [8]byte
	rand.Read(rnd[:])
	b := &bench{o: o, dir: dir, password: "pb" + hex.EncodeToString(rnd[:])}
	b.rep = &report{opts: o, started: time.Now(), loadBefore: loadAvg(), idleBefore: idleShare(idleWindow(o.quick))}
	defer func() {
		b.br.stop()
		b.base.stop()
		stopDovecot(b.peer)
		stopDovecot(b.up)
		if o.keep {
			b.logf("kept %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	}()

	if err := b.setup(); err != nil {
		return nil, err
	}
	for _, s := range o.scenarios {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		var err error
		switch s {
		case "list":
			err = b.scenarioList(ctx)
		case "retr":
			err = b.scenarioRetr(ctx)
		case "sessions":
			err = b.scenarioSessions(ctx)
		case "idle":
			err = b.scenarioIdle(ctx)
			if err == nil && o.idleMem > 0 {
				err = b.scenarioIdleMem(ctx)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s, err)
		}
	}
	b.rep.finished = time.Now()
	b.rep.loadAfter = loadAvg()
	b.rep.machine = machine{
		cpu: cpuModel(), cores: runtime.NumCPU(), memGiB: memTotalGiB(), kernel: kernelRelease(),
		goVersion: runtime.Version(), dovecot: dovecotVersion(), popbridge: popbridgeVersion(b.bin),
		date: b.rep.started.UTC().Format("2006-01-02 15:04 MST"),
	}
	b.rep.peer = b.peer != nil
	return b.rep, b.rep.write()
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.o.log, "popbench: "+format+"\n", args...)
}

// setup starts the upstream, fills it, builds and starts popbridge and
// starts Dovecot's POP3 over imapc.
func (b *bench) setup() error {
	var err error
	b.logf("temporary directory %s", b.dir)
	b.up, err = startDovecot("upstream", filepath.Join(b.dir, "upstream"), "imap", b.password, func(dir string, port int) string {
		return upstreamConfig(dir, port, b.password, !b.o.stockDovecot)
	})
	if err != nil {
		return err
	}
	b.logf("upstream Dovecot (%s) on %s", dovecotVersion(), b.up.IMAPAddr)

	start := time.Now()
	boxes := b.mailboxes()
	total := 0
	for _, mb := range boxes {
		total += mb.n
	}
	if err := fillAll(b.up, boxes); err != nil {
		return err
	}
	b.logf("wrote %d messages in %d mailboxes in %v", total, len(boxes), time.Since(start).Round(time.Millisecond))

	ceiling := &target{name: targetCeiling, addr: func() string { return b.up.IMAPAddr }}
	b.targets = []*target{ceiling}
	// The first IMAP session on a maildir builds Dovecot's index: do it now
	// for every mailbox (this is the ceiling's warm-up).
	start = time.Now()
	if err := b.warmAll(ceiling, boxes); err != nil {
		return err
	}
	b.logf("upstream indexed every mailbox in %v", time.Since(start).Round(time.Millisecond))

	if b.bin = b.o.popbridge; b.bin == "" {
		start = time.Now()
		if b.bin, err = buildPopbridge(b.dir, b.o.raceBuild); err != nil {
			return err
		}
		b.logf("built popbridge in %v", time.Since(start).Round(time.Millisecond))
	} else if b.bin, err = filepath.Abs(b.bin); err != nil {
		return err
	}
	if err := b.startBridge(false); err != nil {
		return err
	}
	b.targets = append(b.targets, &target{name: targetBridge, pop3: true, addr: func() string { return b.br.addr }})
	if b.o.baseline != "" {
		if err := b.startBase(false); err != nil {
			return fmt.Errorf("-baseline: %w", err)
		}
		b.logf("popbridge-baseline: %s", b.o.baseline)
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("popbridge-baseline is another build of popbridge (%s), measured in the same runs with the same configuration.", filepath.Base(b.o.baseline)))
		b.targets = append(b.targets, &target{name: targetBase, pop3: true, addr: func() string { return b.base.addr }})
	}

	switch {
	case !b.o.peer:
		b.logf("Dovecot's POP3 over imapc: skipped (-dovecot-pop3=false)")
	case !exists(pop3Bin):
		b.logf("Dovecot's POP3 over imapc: skipped (%s not found: apt-get install dovecot-pop3d)", pop3Bin)
		b.rep.notes = append(b.rep.notes, "dovecot-pop3d is not installed: no dovecot-imapc column.")
	default:
		b.peer, err = startDovecot("peer", filepath.Join(b.dir, "peer"), "pop3", b.password, func(dir string, port int) string {
			return peerConfig(dir, port, b.up.IMAPAddr, b.password, !b.o.stockDovecot)
		})
		if err != nil {
			return err
		}
		b.logf("Dovecot's POP3 over imapc on %s", b.peer.POP3Addr)
		b.targets = append(b.targets, &target{name: targetPeer, pop3: true, addr: func() string { return b.peer.POP3Addr }})
	}
	return nil
}

func (b *bench) startBridge(withMetrics bool) error {
	br, err := startBridge(b.bin, b.dir, b.up.IMAPAddr, withMetrics)
	if err != nil {
		return err
	}
	b.br = br
	return nil
}

// startBase starts -baseline's popbridge, with a state directory of its
// own.
func (b *bench) startBase(withMetrics bool) error {
	bin, err := filepath.Abs(b.o.baseline)
	if err != nil {
		return err
	}
	dir := filepath.Join(b.dir, "baseline")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	br, err := startBridge(bin, dir, b.up.IMAPAddr, withMetrics)
	if err != nil {
		return err
	}
	b.base = br
	return nil
}

func (b *bench) has(s string) bool { return slices.Contains(b.o.scenarios, s) }

// mailboxes is the data of the scenarios that run.
func (b *bench) mailboxes() []mailbox {
	var out []mailbox
	if b.has("list") {
		for _, n := range b.o.listSizes {
			user := fmt.Sprintf("list%d", n)
			out = append(out, mailbox{user: user, n: n, msg: func(i int) []byte { return message(user, i, smallSize(i)) }})
		}
	}
	if b.has("retr") {
		size := b.o.retrSize
		out = append(out, mailbox{user: "retr", n: b.o.retrCount, msg: func(i int) []byte { return message("retr", i, size) }})
	}
	if b.has("sessions") {
		for _, u := range b.sessionUsers() {
			out = append(out, mailbox{user: u, n: b.o.sessMsg, msg: func(i int) []byte { return message(u, i, sessionSize(i)) }})
		}
	}
	if b.has("idle") {
		for _, u := range b.idleUsers() {
			out = append(out, mailbox{user: u, n: b.o.idleMsgs, msg: func(i int) []byte { return message(u, i, smallSize(i)) }})
		}
	}
	return out
}

func (b *bench) sessionUsers() []string {
	out := make([]string, b.o.sessUsers)
	for i := range out {
		out[i] = fmt.Sprintf("sess%03d", i)
	}
	return out
}

func (b *bench) idleUsers() []string {
	out := make([]string, b.o.idle)
	for i := range out {
		out[i] = fmt.Sprintf("idle%04d", i)
	}
	return out
}

// warmAll logs every mailbox in once on t, 8 at a time.
func (b *bench) warmAll(t *target, boxes []mailbox) error {
	users := make([]string, len(boxes))
	for i, mb := range boxes {
		users[i] = mb.user
	}
	return b.warmUsers(t, users)
}

func (b *bench) warmUsers(t *target, users []string) error {
	return firstError(parallel(len(users), 8, func(i int) error {
		if err := t.warm(users[i], b.password); err != nil {
			return fmt.Errorf("warm-up of %s on %s: %w", users[i], t.name, err)
		}
		return nil
	}))
}

// parallel runs f(0) … f(n-1) on the given number of goroutines and
// returns their errors by index.
func parallel(n, workers int, f func(i int) error) []error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				errs[i] = f(i)
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

// firstError is the first error of errs that is not nil, or nil.
func firstError(errs []error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// ordered returns the targets in the order of run r: rotated, so that no
// target always runs first (or right after another one).
func (b *bench) ordered(r int) []*target {
	n := len(b.targets)
	out := make([]*target, n)
	for i := range out {
		out[i] = b.targets[(i+r)%n]
	}
	return out
}

// groups are the process groups of the benchmark's servers (for CPU
// accounting).
func (b *bench) groups() []int {
	var g []int
	for _, d := range []*dovecot.Server{b.up, b.peer} {
		if d != nil && d.PID() != 0 {
			g = append(g, d.PID())
		}
	}
	for _, br := range []*bridge{b.br, b.base} {
		if br != nil && br.cmd != nil {
			g = append(g, br.pid())
		}
	}
	return g
}

// measure runs f and records how much of the machine other processes used
// meanwhile.
func (b *bench) measure(f func() error) (foreign float64, err error) {
	const ticks = 100 // USER_HZ on Linux
	a := sampleCPU(b.groups())
	start := time.Now()
	err = f()
	// CPU times come in ticks of 10 ms: over a short measurement the share
	// would be mostly rounding, so the window is at least a second.
	if d := time.Since(start); d < time.Second {
		time.Sleep(time.Second - d)
	}
	elapsed := time.Since(start).Seconds() * ticks
	z := sampleCPU(b.groups())
	return foreignShare(a, z, elapsed, runtime.NumCPU()), err
}

// measured runs f like measure, and runs it again (up to twice) when other
// processes took more than -max-other of the machine meanwhile.
func (b *bench) measured(what string, f func() error) (float64, error) {
	for attempt := 1; ; attempt++ {
		foreign, err := b.measure(f)
		if err != nil || b.o.maxOther <= 0 || foreign <= b.o.maxOther || attempt == 3 {
			if err == nil && attempt > 1 {
				b.rep.retried++
			}
			return foreign, err
		}
		b.logf("%s: other processes used %.0f%% of the machine; measuring again", what, foreign*100)
		time.Sleep(2 * time.Second)
	}
}

func (b *bench) record(scenario, metric string, higherBetter bool, target string, v, foreign float64) {
	s := b.rep.series(scenario, metric, higherBetter, target)
	s.values = append(s.values, v)
	s.foreign = append(s.foreign, foreign)
}

func fmtCount(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func (b *bench) progress(scenario string, run int, t *target, value string, foreign float64) {
	warn := ""
	if foreign > 0.1 {
		warn = " (other processes used " + fmt.Sprintf("%.0f%%", foreign*100) + " of the machine)"
	}
	b.logf("%-15s run %d/%d %-18s %s%s", scenario, run+1, b.o.runs, t.name, value, warn)
}

// scenarioList: login, STAT, UIDL, LIST on each list mailbox.
func (b *bench) scenarioList(ctx context.Context) error {
	for _, n := range b.o.listSizes {
		user := fmt.Sprintf("list%d", n)
		scen := "list " + fmtCount(n)
		for _, t := range b.targets[1:] {
			if err := t.warm(user, b.password); err != nil {
				return fmt.Errorf("warm-up on %s: %w", t.name, err)
			}
		}
		for r := range b.o.runs {
			for _, t := range b.ordered(r) {
				if err := ctx.Err(); err != nil {
					return err
				}
				var (
					took   time.Duration
					phases []phase
				)
				foreign, err := b.measured(scen+" on "+t.name, func() (err error) {
					took, phases, err = t.listOnce(user, b.password, n)
					return err
				})
				if err != nil {
					return fmt.Errorf("%s on %s: %w", scen, t.name, err)
				}
				ms := float64(took) / 1e6
				b.record(scen, "ms", false, t.name, ms, foreign)
				b.rep.addPhases(scen, t.name, phases)
				b.progress(scen, r, t, fmt.Sprintf("%.1f ms", ms), foreign)
			}
		}
		if n == slices.Max(b.o.listSizes) {
			// Ten listings in a row: enough samples for a profile.
			err := b.profileScenario(fmt.Sprintf("list%d", n), func(t *target) error {
				for range 10 {
					if _, _, err := t.listOnce(user, b.password, n); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// scenarioRetr: RETR of every message of the retr mailbox in one session.
func (b *bench) scenarioRetr(ctx context.Context) error {
	for _, t := range b.targets[1:] {
		if err := t.warm("retr", b.password); err != nil {
			return fmt.Errorf("warm-up on %s: %w", t.name, err)
		}
	}
	want := int64(b.o.retrCount) * int64(b.o.retrSize)
	for r := range b.o.runs {
		for _, t := range b.ordered(r) {
			if err := ctx.Err(); err != nil {
				return err
			}
			var (
				total  int64
				took   time.Duration
				phases []phase
			)
			foreign, err := b.measured("retr on "+t.name, func() (err error) {
				total, took, phases, err = t.retrAll("retr", b.password, b.o.retrCount)
				return err
			})
			if err != nil {
				return fmt.Errorf("retr on %s: %w", t.name, err)
			}
			if total != want {
				return fmt.Errorf("retr on %s: %d octets, want %d", t.name, total, want)
			}
			mbps := float64(total) / 1e6 / took.Seconds()
			b.record("retr", "MB/s", true, t.name, mbps, foreign)
			b.rep.addPhases("retr", t.name, phases)
			b.progress("retr", r, t, fmt.Sprintf("%.1f MB/s (%.2f s)", mbps, took.Seconds()), foreign)
			if t.name == targetBridge || t.name == targetBase {
				// The same measurement, set against the batched ceiling.
				b.record(scenarioRetrBatched, "MB/s", true, t.name, mbps, foreign)
			}
			if t.name == targetCeiling {
				if err := b.retrBatched(r, t, want); err != nil {
					return err
				}
			}
		}
	}
	return b.profileScenario("retr", func(t *target) error {
		_, _, _, err := t.retrAll("retr", b.password, b.o.retrCount)
		return err
	})
}

// scenarioRetrBatched is retr set against the batched ceiling: every
// message in one UID FETCH 1:* (BODY.PEEK[]), which POP3 cannot ask for.
const scenarioRetrBatched = "retr vs batched"

// retrBatched measures the batched ceiling once, right after the ceiling's
// retr run r.
func (b *bench) retrBatched(r int, t *target, want int64) error {
	var (
		total int64
		took  time.Duration
	)
	foreign, err := b.measured("retr batched on "+t.name, func() (err error) {
		total, took, err = t.retrBatched("retr", b.password, b.o.retrCount)
		return err
	})
	if err != nil {
		return fmt.Errorf("retr batched on %s: %w", t.name, err)
	}
	if total != want {
		return fmt.Errorf("retr batched on %s: %d octets, want %d", t.name, total, want)
	}
	mbps := float64(total) / 1e6 / took.Seconds()
	b.record(scenarioRetrBatched, "MB/s", true, t.name, mbps, foreign)
	b.progress(scenarioRetrBatched, r, t, fmt.Sprintf("%.1f MB/s (%.2f s, one UID FETCH 1:*)", mbps, took.Seconds()), foreign)
	return nil
}

// scenarioSessions: workers running full sessions back to back.
func (b *bench) scenarioSessions(ctx context.Context) error {
	users := b.sessionUsers()
	for _, t := range b.targets[1:] {
		if err := b.warmUsers(t, users); err != nil {
			return err
		}
	}
	for r := range b.o.runs {
		for _, t := range b.ordered(r) {
			if err := ctx.Err(); err != nil {
				return err
			}
			var res sessionsResult
			foreign, err := b.measured("sessions on "+t.name, func() (err error) {
				res, err = b.runSessions(ctx, t, users, r)
				return err
			})
			if err != nil {
				return fmt.Errorf("sessions on %s: %w", t.name, err)
			}
			b.record("sessions", "sessions/s", true, t.name, res.rate, foreign)
			b.record("sessions p50", "ms", false, t.name, res.p50, foreign)
			b.record("sessions p99", "ms", false, t.name, res.p99, foreign)
			if res.proxyCPU > 0 {
				b.record("sessions CPU, proxy", "ms/session", false, t.name, res.proxyCPU, foreign)
			}
			b.record("sessions CPU, upstream", "ms/session", false, t.name, res.upstreamCPU, foreign)
			b.progress("sessions", r, t, fmt.Sprintf("%.1f sessions/s, p50 %.1f ms, p99 %.1f ms (%d sessions)",
				res.rate, res.p50, res.p99, res.n), foreign)
			time.Sleep(time.Second) // let the servers' session processes end
		}
	}
	return b.profileScenario("sessions", func(t *target) error {
		_, err := b.runSessions(ctx, t, users, b.o.runs)
		return err
	})
}

type sessionsResult struct {
	n             int
	rate          float64 // sessions per second
	p50, p99      float64 // ms
	errs          int
	firstErr      error
	elapsedSecond float64
	// CPU time per completed session (ms) of the proxy's processes
	// (popbridge, or Dovecot's POP3 over imapc; 0 for the ceiling) and of
	// the upstream Dovecot's: on a machine the two share, what the proxy
	// uses is taken from the upstream, and these say where it goes
	// independently of how fast the runs happen to be.
	proxyCPU, upstreamCPU float64
}

// proxyGroup is the process group of t's proxy: popbridge's, or the
// Dovecot that serves POP3 over imapc; 0 for the ceiling.
func (b *bench) proxyGroup(t *target) int {
	switch {
	case t.name == targetBridge && b.br != nil && b.br.cmd != nil:
		return b.br.pid()
	case t.name == targetBase && b.base != nil && b.base.cmd != nil:
		return b.base.pid()
	case t.name == targetPeer && b.peer != nil:
		return b.peer.PID()
	}
	return 0
}

// runSessions runs o.workers workers for o.duration. Worker w takes the
// users w, w+workers, w+2·workers, … in turn, so that no two workers use
// one maildrop at once (popbridge's lock would refuse the second), and
// picks 3 distinct messages at random (the same ones for every target).
func (b *bench) runSessions(ctx context.Context, t *target, users []string, run int) (sessionsResult, error) {
	workers := min(b.o.workers, len(users))
	msgs := b.o.sessMsg
	pick := min(3, msgs)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		lats     []float64
		errCount atomic.Int64
		firstErr error
	)
	proxy := b.proxyGroup(t)
	cpu0 := groupTicks(proxy, b.up.PID())
	start := time.Now()
	deadline := start.Add(b.o.duration)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := mrand.New(mrand.NewPCG(uint64(run), uint64(w)))
			perWorker := len(users) / workers
			for k := 0; time.Now().Before(deadline) && ctx.Err() == nil; k++ {
				user := users[w+workers*(k%perWorker)]
				picks := rng.Perm(msgs)[:pick]
				for i := range picks {
					picks[i]++
				}
				s := time.Now()
				if _, err := t.session(user, b.password, picks); err != nil {
					errCount.Add(1)
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					time.Sleep(10 * time.Millisecond)
					continue
				}
				lat := float64(time.Since(s)) / 1e6
				mu.Lock()
				lats = append(lats, lat)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	cpu1 := groupTicks(proxy, b.up.PID())
	if err := ctx.Err(); err != nil {
		return sessionsResult{}, err
	}
	res := sessionsResult{n: len(lats), errs: int(errCount.Load()), firstErr: firstErr, elapsedSecond: elapsed}
	if n := float64(len(lats)); n > 0 {
		const msPerTick = 10 // USER_HZ 100
		if proxy != 0 {
			res.proxyCPU = float64(cpu1[0]-cpu0[0]) * msPerTick / n
		}
		res.upstreamCPU = float64(cpu1[1]-cpu0[1]) * msPerTick / n
	}
	if res.errs > 0 {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("sessions on %s, run %d: %d sessions failed, e.g. %v", t.name, run+1, res.errs, firstErr))
		b.logf("sessions on %s: %d sessions failed, e.g. %v", t.name, res.errs, firstErr)
		if res.errs*10 > res.n {
			return res, fmt.Errorf("%d of %d sessions failed, e.g. %w", res.errs, res.errs+res.n, firstErr)
		}
	}
	if len(lats) == 0 {
		return res, errors.New("no session completed")
	}
	sort.Float64s(lats)
	res.rate = float64(len(lats)) / elapsed
	res.p50 = percentile(lats, 0.50)
	res.p99 = percentile(lats, 0.99)
	return res, nil
}

// percentile of sorted values (nearest rank).
func percentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// scenarioIdle: memory per logged-in idle session. popbridge runs afresh
// for each run (a Go process keeps freed memory for reuse, so a second
// round in the same process would look free); Dovecot runs one process per
// session, whose PSS is summed.
func (b *bench) scenarioIdle(ctx context.Context) error {
	users := b.idleUsers()
	for _, t := range b.targets[1:] {
		if err := b.warmUsers(t, users); err != nil {
			return err
		}
	}
	for r := range b.o.runs {
		for _, t := range b.ordered(r) {
			if err := ctx.Err(); err != nil {
				return err
			}
			switch t.name {
			case targetBridge:
				if err := b.idleBridge(t, "idle", users, r, &b.br, b.startBridge); err != nil {
					return err
				}
			case targetBase:
				if err := b.idleBridge(t, "idle", users, r, &b.base, b.startBase); err != nil {
					return err
				}
			case targetPeer:
				if err := b.idlePeer(t, users, r); err != nil {
					return err
				}
			}
		}
	}
	// Later scenarios (if any) get a popbridge without metrics again.
	b.br.stop()
	if b.base != nil {
		b.base.stop()
		if err := b.startBase(false); err != nil {
			return err
		}
	}
	return b.startBridge(false)
}

// openAll opens an idle session for every user, 16 at a time.
func (b *bench) openAll(t *target, users []string) ([]*pop3client.Client, error) {
	conns := make([]*pop3client.Client, len(users))
	first := firstError(parallel(len(users), 16, func(i int) error {
		c, err := t.openIdle(users[i], b.password)
		if err != nil {
			return fmt.Errorf("idle session %d (%s) on %s: %w", i, users[i], t.name, err)
		}
		conns[i] = c
		return nil
	}))
	if first != nil {
		closeAll(conns)
	}
	return conns, first
}

func closeAll(conns []*pop3client.Client) {
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
}

const idleSettle = 2 * time.Second

// idleBridge measures a popbridge's memory per idle session: *br, which
// start restarts (with metrics) for the measurement.
func (b *bench) idleBridge(t *target, scen string, users []string, r int, br **bridge, start func(withMetrics bool) error) error {
	(*br).stop()
	if err := start(true); err != nil {
		return err
	}
	time.Sleep(idleSettle)
	before, err := processMemory((*br).pid())
	if err != nil {
		return err
	}
	go0, okGo := (*br).goMemory()
	var conns []*pop3client.Client
	foreign, err := b.measure(func() (err error) {
		conns, err = b.openAll(t, users)
		return err
	})
	if err != nil {
		return err
	}
	time.Sleep(idleSettle)
	after, err := processMemory((*br).pid())
	go1, okGo2 := (*br).goMemory()
	closeAll(conns)
	if err != nil {
		return err
	}
	n := float64(len(users))
	pss := float64(after.pss-before.pss) / n
	rss := float64(after.rss-before.rss) / n
	b.record(scen, "KiB/session", false, t.name, pss, foreign)
	b.record(scen+" RSS", "KiB/session", false, t.name, rss, foreign)
	file := float64(after.pssFile-before.pssFile) / n
	b.record(scen+" PSS of files", "KiB/session", false, t.name, file, foreign)
	extra := fmt.Sprintf("; of files %.1f KiB/session", file)
	if okGo && okGo2 {
		per := func(a, b float64) float64 { return (b - a) / 1024 / n }
		b.record(scen+" Go heap (alloc)", "KiB/session", false, t.name, per(go0.heapAlloc, go1.heapAlloc), foreign)
		b.record(scen+" Go heap (in use)", "KiB/session", false, t.name, per(go0.heapInuse, go1.heapInuse), foreign)
		b.record(scen+" Go stacks", "KiB/session", false, t.name, per(go0.stackInuse, go1.stackInuse), foreign)
		b.record(scen+" goroutines", "per session", false, t.name, (go1.goroutines-go0.goroutines)/n, foreign)
		extra += fmt.Sprintf("; Go: heap alloc %.1f, heap in use %.1f, stacks %.1f KiB/session, %.1f goroutines/session, %.0f GCs meanwhile",
			per(go0.heapAlloc, go1.heapAlloc), per(go0.heapInuse, go1.heapInuse), per(go0.stackInuse, go1.stackInuse),
			(go1.goroutines-go0.goroutines)/n, go1.gcs-go0.gcs)
	}
	b.progress(scen, r, t, fmt.Sprintf("PSS %.1f KiB/session, RSS %.1f KiB/session (PSS %d → %d KiB)%s",
		pss, rss, before.pss, after.pss, extra), foreign)
	return nil
}

// idlePeer measures Dovecot's POP3: the PSS of the pop3 processes that
// serve the idle sessions (with process reuse, idle processes from before
// wait beside them: only those whose title names an idle user count).
func (b *bench) idlePeer(t *target, users []string, r int) error {
	var conns []*pop3client.Client
	foreign, err := b.measure(func() (err error) {
		conns, err = b.openAll(t, users)
		return err
	})
	if err != nil {
		return err
	}
	time.Sleep(idleSettle)
	mem, procs := groupMemory(b.peer.PID(), "pop3", "[idle")
	closeAll(conns)
	n := float64(len(users))
	pss := float64(mem.pss) / n
	rss := float64(mem.rss) / n
	b.record("idle", "KiB/session", false, t.name, pss, foreign)
	b.record("idle RSS", "KiB/session", false, t.name, rss, foreign)
	b.progress("idle", r, t, fmt.Sprintf("PSS %.1f KiB/session, RSS %.1f KiB/session (%d pop3 processes serving them)",
		pss, rss, procs), foreign)
	if procs != len(users) {
		b.rep.notes = append(b.rep.notes, fmt.Sprintf("idle on %s, run %d: %d pop3 processes for %d sessions", t.name, r+1, procs, len(users)))
	}
	// Wait for the sessions to end before the next measurement.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if _, left := groupMemory(b.peer.PID(), "pop3", "[idle"); left == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}
