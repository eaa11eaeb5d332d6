package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// series is what one target measured in one scenario, one value per run.
type series struct {
	scenario     string
	unit         string
	higherBetter bool
	target       string
	values       []float64
	foreign      []float64 // share of the machine other processes used, per run
}

func (s *series) median() float64 {
	if len(s.values) == 0 {
		return math.NaN()
	}
	v := slices.Clone(s.values)
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

func (s *series) spread() (lo, hi float64) {
	return slices.Min(s.values), slices.Max(s.values)
}

func (s *series) maxForeign() float64 {
	if len(s.foreign) == 0 {
		return 0
	}
	return slices.Max(s.foreign)
}

// report is the outcome of a benchmark run.
type report struct {
	opts                  options
	list                  []*series
	notes                 []string
	machine               machine
	peer                  bool
	started, finished     time.Time
	loadBefore, loadAfter string
	idleBefore            float64 // share of the machine idle in the seconds before the run
	retried               int     // measurements taken again after a disturbance
	phases                []*phaseSeries
	idleMemScenario       string // the name of the imapmemserver idle scenario, if it ran
}

// phaseSeries is one phase of a scenario on a target, per run.
type phaseSeries struct {
	scenario, target, name string
	ms                     []float64
}

func (r *report) addPhases(scenario, target string, phases []phase) {
	for _, p := range phases {
		var ps *phaseSeries
		for _, x := range r.phases {
			if x.scenario == scenario && x.target == target && x.name == p.name {
				ps = x
			}
		}
		if ps == nil {
			ps = &phaseSeries{scenario: scenario, target: target, name: p.name}
			r.phases = append(r.phases, ps)
		}
		ps.ms = append(ps.ms, float64(p.d)/1e6)
	}
}

// breakdown describes where the time of scenario went on target: the
// median of each phase, in order.
func (r *report) breakdown(scenario, target string) string {
	var parts []string
	for _, p := range r.phases {
		if p.scenario == scenario && p.target == target {
			s := series{values: p.ms}
			parts = append(parts, fmt.Sprintf("%s %s ms", p.name, fmtValue(s.median())))
		}
	}
	return strings.Join(parts, " · ")
}

func (r *report) series(scenario, unit string, higherBetter bool, target string) *series {
	for _, s := range r.list {
		if s.scenario == scenario && s.target == target {
			return s
		}
	}
	s := &series{scenario: scenario, unit: unit, higherBetter: higherBetter, target: target}
	r.list = append(r.list, s)
	return s
}

// sorted returns the series by scenario (in the order they first ran) and
// target (ceiling, popbridge, Dovecot).
func (r *report) sorted() []*series {
	order := map[string]int{}
	for _, s := range r.list {
		if _, ok := order[s.scenario]; !ok {
			order[s.scenario] = len(order)
		}
	}
	rank := map[string]int{targetCeiling: 0, targetBridge: 1, targetBase: 2, targetPeer: 3}
	out := slices.Clone(r.list)
	slices.SortStableFunc(out, func(a, b *series) int {
		if d := order[a.scenario] - order[b.scenario]; d != 0 {
			return d
		}
		return rank[a.target] - rank[b.target]
	})
	return out
}

func (r *report) find(scenario, target string) *series {
	for _, s := range r.list {
		if s.scenario == scenario && s.target == target {
			return s
		}
	}
	return nil
}

// ratio is the target's median over the ceiling's (NaN without a ceiling).
func (r *report) ratio(s *series) float64 {
	c := r.find(s.scenario, targetCeiling)
	if c == nil || len(c.values) == 0 || len(s.values) == 0 {
		return math.NaN()
	}
	return s.median() / c.median()
}

// eachBreakdown calls f for each scenario and target with phases.
func (r *report) eachBreakdown(f func(scenario, target, text string)) {
	done := map[[2]string]bool{}
	for _, s := range r.sorted() {
		k := [2]string{s.scenario, s.target}
		if done[k] {
			continue
		}
		done[k] = true
		if text := r.breakdown(s.scenario, s.target); text != "" {
			f(s.scenario, s.target, text)
		}
	}
}

// idleGoalKiB is the bound on popbridge's memory per idle session.
const idleGoalKiB = 48.0

// goal is one of the targets for popbridge.
type goal struct {
	scenario string
	text     string
	met      func(median, ratio float64) bool
}

func (r *report) goals() []goal {
	var g []goal
	if n := len(r.opts.listSizes); n > 0 {
		g = append(g, goal{"list " + fmtCount(slices.Max(r.opts.listSizes)), "≤ 1.3× ceiling", func(_, q float64) bool { return q <= 1.3 }})
	}
	g = append(g,
		goal{"retr", "≥ 0.9× ceiling", func(_, q float64) bool { return q >= 0.9 }},
		goal{"sessions", "≥ 0.9× ceiling", func(_, q float64) bool { return q >= 0.9 }},
		goal{"idle", fmt.Sprintf("≤ %g KiB/session", idleGoalKiB), func(m, _ float64) bool { return m <= idleGoalKiB }},
	)
	if r.idleMemScenario != "" {
		g = append(g, goal{r.idleMemScenario, fmt.Sprintf("≤ %g KiB/session", idleGoalKiB), func(m, _ float64) bool { return m <= idleGoalKiB }})
	}
	return g
}

// verdict returns the goal's text and whether popbridge's series meets it
// ("" when the series has no goal).
func (r *report) verdict(s *series) (text string, met bool) {
	if s.target != targetBridge {
		return "", false
	}
	for _, g := range r.goals() {
		if g.scenario == s.scenario {
			return g.text, g.met(s.median(), r.ratio(s))
		}
	}
	return "", false
}

func fmtValue(v float64) string {
	switch {
	case math.IsNaN(v):
		return "n/a"
	case math.Abs(v) >= 100:
		return fmt.Sprintf("%.0f", v)
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func fmtRatio(q float64) string {
	if math.IsNaN(q) {
		return "—"
	}
	return fmt.Sprintf("%.2f×", q)
}

func metOrNot(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

// write prints the table and writes the chart and the markdown.
func (r *report) write() error {
	r.writeTable(r.opts.out)
	if r.opts.chart != "" {
		if err := r.writeChart(r.opts.chart); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		fmt.Fprintf(r.opts.log, "popbench: wrote %s\n", r.opts.chart)
	}
	if r.opts.markdown != "" {
		if err := r.writeMarkdown(r.opts.markdown); err != nil {
			return fmt.Errorf("markdown: %w", err)
		}
		fmt.Fprintf(r.opts.log, "popbench: wrote %s\n", r.opts.markdown)
	}
	return nil
}

func (r *report) writeTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tunit\ttarget\tmedian\tmin–max\tratio to ceiling\tgoal\t")
	prev := ""
	for _, s := range r.sorted() {
		if prev != "" && s.scenario != prev {
			fmt.Fprintln(tw, "\t\t\t\t\t\t\t")
		}
		prev = s.scenario
		lo, hi := s.spread()
		goal := ""
		if text, met := r.verdict(s); text != "" {
			goal = text + ": " + metOrNot(met)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s–%s\t%s\t%s\t\n", s.scenario, s.unit, s.target,
			fmtValue(s.median()), fmtValue(lo), fmtValue(hi), fmtRatio(r.ratio(s)), goal)
	}
	tw.Flush()
	if len(r.phases) > 0 {
		fmt.Fprintln(w, "\nwhere the time went (median of each phase):")
		r.eachBreakdown(func(scenario, target, text string) {
			fmt.Fprintf(w, "  %-15s %-18s %s\n", scenario, target, text)
		})
	}
	for _, n := range r.notes {
		fmt.Fprintln(w, "note:", n)
	}
}

const (
	mdBegin = "<!-- popbench: begin of the generated section (go run ./cmd/popbench -markdown FILE rewrites it) -->"
	mdEnd   = "<!-- popbench: end of the generated section -->"
)

// writeMarkdown writes the generated section into path: between the markers
// of an existing file (the rest of the file, e.g. a reading of the
// results, stays), or as a new file.
func (r *report) writeMarkdown(path string) error {
	var b bytes.Buffer
	r.markdownSection(&b, path)
	section := mdBegin + "\n" + b.String() + mdEnd + "\n"
	old, err := os.ReadFile(path)
	var out string
	switch {
	case err == nil && strings.Contains(string(old), mdBegin) && strings.Contains(string(old), mdEnd):
		s := string(old)
		i, j := strings.Index(s, mdBegin), strings.Index(s, mdEnd)+len(mdEnd)
		if j < len(s) && s[j] == '\n' {
			j++
		}
		out = s[:i] + section + s[j:]
	default:
		out = "# Benchmarks\n\n" + section
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

func (r *report) markdownSection(w io.Writer, mdPath string) {
	o := r.opts
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	p("")
	p("Measured %s with `%s` (%s in all).", r.machine.date, r.command(), r.finished.Sub(r.started).Round(time.Second))
	p("")
	p("| scenario | target | median | min–max (%d runs) | ratio to the IMAP ceiling | issue's target |", o.runs)
	p("|---|---|--:|--:|--:|---|")
	for _, s := range r.sorted() {
		lo, hi := s.spread()
		goal := ""
		if text, met := r.verdict(s); text != "" {
			goal = text + ": **" + metOrNot(met) + "**"
		}
		p("| %s | %s | %s %s | %s–%s | %s | %s |", s.scenario, s.target, fmtValue(s.median()), s.unit,
			fmtValue(lo), fmtValue(hi), fmtRatio(r.ratio(s)), goal)
	}
	p("")
	p("Ratios are target ÷ ceiling: for times (ms) lower is better, for throughputs (MB/s, sessions/s) higher is better.")
	if len(r.phases) > 0 {
		p("")
		p("Where the time went, as the client saw it (median of each phase over the runs; for retr summed over the messages: the wait for each message's first byte, and the rest):")
		p("")
		p("| scenario | target | phases |")
		p("|---|---|---|")
		r.eachBreakdown(func(scenario, target, text string) { p("| %s | %s | %s |", scenario, target, text) })
	}
	if o.chart != "" {
		rel, err := filepath.Rel(filepath.Dir(mdPath), o.chart)
		if err != nil {
			rel = o.chart
		}
		p("")
		p("![ratios to the IMAP ceiling, and memory per idle session](%s)", filepath.ToSlash(rel))
	}
	p("")
	p("### What was measured")
	p("")
	p("- **list**: connect, USER, PASS, STAT, UIDL, LIST, timed to the last byte of LIST, on mailboxes of %s messages of 1.5–6 KB; the ceiling does LOGIN, SELECT, `UID FETCH 1:* (UID RFC822.SIZE)`.", joinCounts(o.listSizes))
	p("- **retr**: RETR of every message of a %s × %d KB mailbox in one session, one after the other, timed from the first RETR to the last byte (MB/s of message octets); the ceiling sends one `UID FETCH uid (BODY.PEEK[])` at a time and reads the literal. **retr vs batched** sets the same popbridge numbers against the batched ceiling: every message in one `UID FETCH 1:* (BODY.PEEK[])`, which no POP3 command can ask for.", fmtCount(o.retrCount), o.retrSize>>10)
	p("- **sessions**: %d workers for %v each, each a loop of full sessions (connect, USER, PASS, STAT, UIDL, RETR of 3 random messages, QUIT) on %d users of %d messages of 4–40 KB (a worker has users of its own: popbridge locks maildrops); the ceiling does LOGIN, SELECT, `UID FETCH 1:* (UID RFC822.SIZE)`, 3 × `BODY.PEEK[]`, LOGOUT. p50/p99 are session latencies. **sessions CPU** is the CPU time per session of the proxy's processes (popbridge's, or the second Dovecot's for Dovecot POP3) and of the upstream Dovecot's (all its processes), from /proc in clock ticks: on one machine what the proxy uses is taken from the upstream, and these two say where the time goes whatever the speed of a run.", o.workers, o.duration, o.sessUsers, o.sessMsg)
	p("- **idle**: %s logged-in idle POP3 sessions (distinct users of %d messages). popbridge: the growth of its process's PSS (and RSS, the part of PSS that maps files, and the Go heap in use from its /metrics), divided by the sessions; a fresh popbridge process for each run. Dovecot: the PSS of its per-session `pop3` processes. The IMAP side (one upstream `imap` process per session) is the same for both and not counted.", fmtCount(o.idle), o.idleMsgs)
	if r.idleMemScenario != "" {
		p("- **%s**: the same for popbridge alone, with go-imap's in-memory IMAP server (imapmemserver, inside popbench) as the upstream, since %s Dovecot processes would not fit the machine: a warm-up process names every user's messages first, then each run is a fresh popbridge process.", r.idleMemScenario, fmtCount(o.idleMem))
	}
	if o.baseline != "" {
		p("- **popbridge-baseline** (`-baseline`) is another popbridge binary, run beside popbridge with the same configuration and a state file of its own, in the same runs and rotation.")
	}
	p("- Each run measures every target once, in a rotating order; the table shows the median of %d runs. Before timing, every target logged in once on every mailbox: popbridge's first login on a mailbox names its messages (UIDLs into its state file), Dovecot's builds its indexes (the ceiling's) and its imapc cache (Dovecot POP3's).", o.runs)
	p("- One machine runs everything: the benchmark's clients, popbridge, both Dovecots. The upstream is Dovecot with maildir on local disk, no TLS anywhere; popbridge with `upstream.tls: none`, `policy.on_dele: keep`, `policy.mark_seen: false`, `state.driver: bolt`, `log.level: warn`; Dovecot's POP3 with `mail_location = imapc:~/imapc`, `imapc_features = rfc822.size`, `pop3_no_flag_updates = yes`.")
	if o.stockDovecot {
		p("- Both Dovecots with their default process settings (`-stock-dovecot`): a new login process and a new mail process for every session.")
	} else {
		p("- Both Dovecots with Dovecot's documented tuning for many short sessions: login processes in high-performance mode (`service_count = 0`, `process_min_avail = 2`) and mail processes reused (`service_count = 0`, `process_min_avail = 8`; all users share one UID). With the defaults (`-stock-dovecot`) starting two processes for every session dominates short sessions and hides the bridges' own costs.")
	}
	p("")
	p("### Machine")
	p("")
	m := r.machine
	p("- CPU: %s, %d cores; memory %.1f GiB; Linux %s", m.cpu, m.cores, m.memGiB, m.kernel)
	p("- %s (popbench), popbridge `%s`, Dovecot %s", m.goVersion, m.popbridge, m.dovecot)
	p("- before the run the machine was %.0f%% idle (over %v; load average %s)", r.idleBefore*100, idleWindow(o.quick), r.loadBefore)
	var disturbed []string
	seen := map[string]bool{}
	for _, s := range r.sorted() {
		// p50, p99 and CPU come from the sessions measurements, the idle
		// details from the idle ones.
		if seen[s.scenario] || strings.Contains(s.scenario, " p") || strings.HasPrefix(s.scenario, "sessions CPU") ||
			strings.HasPrefix(s.scenario, "idle ") && s.scenario != r.idleMemScenario {
			continue
		}
		seen[s.scenario] = true
		var all []float64
		for _, t := range r.list {
			if t.scenario == s.scenario {
				all = append(all, t.foreign...)
			}
		}
		if len(all) > 0 {
			slices.Sort(all)
			disturbed = append(disturbed, fmt.Sprintf("%s %.0f%% (max %.0f%%)", s.scenario, all[len(all)/2]*100, all[len(all)-1]*100))
		}
	}
	p("- other processes' share of the machine during the measurements, median (max): %s", strings.Join(disturbed, ", "))
	if r.retried > 0 {
		p("- %d measurements were taken again because other processes used more than %.0f%% of the machine meanwhile", r.retried, r.opts.maxOther*100)
	}
	for _, n := range r.notes {
		p("- %s", n)
	}
	p("")
}

func joinCounts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = fmtCount(n)
	}
	return strings.Join(s, " and ")
}

// command is the command line that reproduces the run.
func (r *report) command() string {
	if r.opts.command != "" {
		return r.opts.command
	}
	return "go run ./cmd/popbench"
}
