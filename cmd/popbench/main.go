package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options is everything a benchmark run depends on.
type options struct {
	scenarios []string
	runs      int
	quick     bool
	keep      bool
	popbridge string // an existing binary; "" builds one
	baseline  string // another popbridge binary, measured beside it as popbridge-baseline; "" for none
	peer      bool   // run Dovecot's POP3 over imapc when installed
	chart     string
	markdown  string
	command   string // as given, for the report
	maxOther  float64
	// stockDovecot keeps Dovecot's default process settings (a new
	// login process and a new mail process for every session).
	stockDovecot bool
	perf         string // directory for perf profiles, "" for none
	raceBuild    bool   // build popbridge with -race (the test, under go test -race)

	listSizes          []int
	retrCount          int
	retrSize           int
	workers            int
	duration           time.Duration
	sessUsers, sessMsg int
	idle               int
	idleMem            int // idle sessions in front of imapmemserver; 0 for none
	idleMsgs           int

	out io.Writer // the table
	log io.Writer // progress
}

var allScenarios = []string{"list", "retr", "sessions", "idle"}

// sizes fills in the sizes of a full or a quick run where the flags left
// them at zero.
func (o *options) sizes() {
	def := func(p *int, full, quick int) {
		if *p == 0 {
			*p = full
			if o.quick {
				*p = quick
			}
		}
	}
	if len(o.listSizes) == 0 {
		o.listSizes = []int{10000, 50000}
		if o.quick {
			o.listSizes = []int{1000, 2000}
		}
	}
	def(&o.retrCount, 2000, 200)
	def(&o.retrSize, 100<<10, 100<<10)
	def(&o.workers, 50, 10)
	def(&o.sessUsers, 200, 40)
	def(&o.sessMsg, 100, 50)
	def(&o.idle, 1000, 100)
	if o.idleMem < 0 {
		o.idleMem = 0
	} else {
		def(&o.idleMem, 10000, 1000)
	}
	def(&o.idleMsgs, 10, 10)
	if o.duration == 0 {
		o.duration = 20 * time.Second
		if o.quick {
			o.duration = 5 * time.Second
		}
	}
	if o.runs == 0 {
		o.runs = 5
	}
}

func main() {
	var o options
	var scen, lists string
	flag.StringVar(&scen, "scenarios", strings.Join(allScenarios, ","), "scenarios to run: list,retr,sessions,idle")
	flag.IntVar(&o.runs, "runs", 5, "runs of each scenario and target (the median is reported)")
	flag.BoolVar(&o.quick, "quick", false, "small sizes for a smoke run (1,000 and 2,000 messages, 200 × 100 KB, 10 workers × 5 s, 100 idle)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary directory (configurations, logs, mail, state)")
	flag.StringVar(&o.popbridge, "popbridge", "", "use this popbridge binary instead of building ./cmd/popbridge")
	flag.StringVar(&o.baseline, "baseline", "", "also measure this popbridge binary (e.g. a build of the commit before a change), as the target popbridge-baseline, in the same runs")
	flag.BoolVar(&o.peer, "dovecot-pop3", true, "also measure Dovecot's POP3 over imapc (when dovecot-pop3d is installed)")
	flag.StringVar(&o.chart, "chart", "", "write a PNG bar chart of the ratios to this file (e.g. docs/benchmarks.png)")
	flag.StringVar(&o.markdown, "markdown", "", "write the results as markdown to this file (e.g. docs/benchmarks.md); an existing file keeps its text outside the generated section")
	flag.BoolVar(&o.stockDovecot, "stock-dovecot", false, "run both Dovecots with their default process settings (a login and a mail process started per session) instead of the documented high-performance tuning")
	flag.Float64Var(&o.maxOther, "max-other", 0.2, "measure again (up to twice) when other processes used more than this share of the machine meanwhile (0: never)")
	flag.StringVar(&o.perf, "perf", "", "after the timed runs, profile one more run of popbridge and of the ceiling per scenario with `perf record -a -g` into this directory")
	flag.StringVar(&lists, "list-sizes", "", "list scenario mailbox sizes, comma-separated (default 10000,50000; -quick 1000,2000)")
	flag.IntVar(&o.retrCount, "retr-messages", 0, "messages of the retr mailbox (default 2000; -quick 200)")
	flag.IntVar(&o.retrSize, "retr-size", 0, "octets per retr message (default 102400)")
	flag.IntVar(&o.workers, "workers", 0, "concurrent sessions of the sessions scenario (default 50; -quick 10)")
	flag.DurationVar(&o.duration, "duration", 0, "how long each sessions measurement runs (default 20s; -quick 5s)")
	flag.IntVar(&o.sessUsers, "session-users", 0, "users of the sessions scenario (default 200; -quick 40)")
	flag.IntVar(&o.sessMsg, "session-messages", 0, "messages per user of the sessions scenario (default 100; -quick 50)")
	flag.IntVar(&o.idle, "idle", 0, "idle sessions of the idle scenario (default 1000; -quick 100)")
	flag.IntVar(&o.idleMem, "idle-memserver", 0, "idle sessions of the idle scenario's second part, in front of go-imap's in-memory server (default 10000; -quick 1000; -1 for none)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "popbench: unexpected arguments %q\n", flag.Args())
		os.Exit(2)
	}
	var err error
	if o.scenarios, err = parseScenarios(scen); err == nil {
		o.listSizes, err = parseInts(lists)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "popbench:", err)
		os.Exit(2)
	}
	o.out, o.log = os.Stdout, os.Stderr
	o.command = strings.Join(append([]string{"go run ./cmd/popbench"}, os.Args[1:]...), " ")

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if _, err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "popbench:", err)
		os.Exit(1)
	}
}

func parseScenarios(s string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		found := false
		for _, known := range allScenarios {
			if name == known {
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (known: %s)", name, strings.Join(allScenarios, ", "))
		}
		out = append(out, name)
	}
	if len(out) == 0 {
		return nil, errors.New("no scenario given")
	}
	return out, nil
}

func parseInts(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(strings.ReplaceAll(f, "_", ""))
		if f == "" {
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("bad size %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// checkPrerequisites explains what is missing to run at all.
func checkPrerequisites() error {
	if !exists(dovecotBin) {
		return fmt.Errorf("%s not found: install Dovecot with `apt-get install dovecot-imapd dovecot-pop3d`", dovecotBin)
	}
	if os.Geteuid() != 0 {
		return errors.New("popbench runs Dovecot and must run as root (mail is stored as the user mail, uid 8)")
	}
	return nil
}

// raiseFileLimit lifts the limit on open files for popbench and the
// servers it starts (10,000 idle sessions are 20,000 sockets in popbridge,
// and as many in popbench with its in-memory upstream): to wantFiles when
// root may, else the soft limit to the hard one. Calling Setrlimit also
// stops os/exec from restoring the original limit in children.
func raiseFileLimit() {
	const wantFiles = 1 << 17
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Max < wantFiles {
		up := syscall.Rlimit{Cur: wantFiles, Max: wantFiles}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &up) == nil {
			return
		}
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	}
}
