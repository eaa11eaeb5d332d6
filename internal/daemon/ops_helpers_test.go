package daemon

// Helpers for ops_test.go and proxyproto_test.go: the daemon in-process
// with the hooks of Options (reloads through the channel SIGHUP feeds, a
// wrapped store, a clock), its logs captured, and its metrics scraped.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/popbridge/popbridge/internal/config"
	"github.com/popbridge/popbridge/internal/testenv/dovecot"
	"github.com/popbridge/popbridge/internal/testenv/e2e"
	"github.com/popbridge/popbridge/uidmap"
)

type opsServer struct {
	t        *testing.T
	cfgPath  string
	logs     *e2e.SyncBuffer
	metrics  string // host:port of the metrics endpoint, "" without
	d        *daemon
	reloadc  chan struct{}
	reloaded chan error
	cancel   context.CancelFunc
	done     chan error
	stopOnce sync.Once
	stopErr  error
}

type opsOptions struct {
	wrapStore func(uidmap.Store) uidmap.Store
	now       func() time.Time
}

// version is what the daemon under test reports as popbridge's.
const version = "test-version"

// freeAddr returns a loopback address nothing listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	return dovecot.FreeAddr(t, "127.0.0.1")
}

// startOps writes cfgYAML to a file and runs the daemon on it, in-process,
// until the test ends.
func startOps(t *testing.T, cfgYAML string, o opsOptions) *opsServer {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.yaml")
	if err := os.WriteFile(path, []byte(cfgYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &e2e.SyncBuffer{}
	log, level, err := NewLogger(logs, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &opsServer{t: t, cfgPath: path, logs: logs, reloadc: make(chan struct{}), reloaded: make(chan error, 1),
		cancel: cancel, done: make(chan error, 1)}
	started := make(chan struct{})
	opts := Options{
		ConfigPath: path, Level: &level, Version: version,
		Reload:    s.reloadc,
		reloaded:  func(err error) { s.reloaded <- err },
		wrapStore: o.wrapStore,
		now:       o.now,
		started: func(d *daemon, metricsAddr string) {
			s.d, s.metrics = d, metricsAddr
			close(started)
		},
	}
	go func() { s.done <- Run(ctx, cfg, log, opts) }()
	select {
	case <-started:
	case err := <-s.done:
		cancel()
		t.Fatalf("serve ended at start: %v\n%s", err, logs.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not start:\n%s", logs.String())
	}
	t.Cleanup(func() {
		if err := s.stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return s
}

// stop shuts popbridge down (as SIGTERM does) and waits until serve has
// returned.
func (s *opsServer) stop() error {
	s.stopOnce.Do(func() {
		s.cancel()
		select {
		case s.stopErr = <-s.done:
		case <-time.After(30 * time.Second):
			s.stopErr = fmt.Errorf("serve did not return after its context ended")
		}
	})
	return s.stopErr
}

// writeConfig replaces the configuration file.
func (s *opsServer) writeConfig(cfgYAML string) {
	s.t.Helper()
	if err := os.WriteFile(s.cfgPath, []byte(cfgYAML), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// reload sends what SIGHUP sends and returns the reload's result.
func (s *opsServer) reload() error {
	s.t.Helper()
	select {
	case s.reloadc <- struct{}{}:
	case <-time.After(10 * time.Second):
		s.t.Fatal("serve does not take reloads")
	}
	select {
	case err := <-s.reloaded:
		return err
	case <-time.After(10 * time.Second):
		s.t.Fatal("reload did not finish")
	}
	return nil
}

// get fetches a path of the metrics endpoint.
func (s *opsServer) get(path string) (int, string) {
	s.t.Helper()
	resp, err := http.Get("http://" + s.metrics + path)
	if err != nil {
		s.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// scrape returns every sample of /metrics by series, e.g.
// `popbridge_logins_total{result="ok"}`.
func (s *opsServer) scrape() metricSamples {
	s.t.Helper()
	code, body := s.get("/metrics")
	if code != http.StatusOK {
		s.t.Fatalf("/metrics: %d %s", code, body)
	}
	m := metricSamples{}
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			s.t.Fatalf("metrics line %q: %v", line, err)
		}
		m[line[:i]] = v
	}
	return m
}

type metricSamples map[string]float64

// want checks a sample's value; cmp is "==", ">=" or "<=".
func (m metricSamples) want(t *testing.T, series, cmp string, value float64) {
	t.Helper()
	got, ok := m[series]
	switch {
	case !ok:
		t.Errorf("no sample %s", series)
	case cmp == "==" && got != value, cmp == ">=" && got < value, cmp == "<=" && got > value:
		t.Errorf("%s = %v, want %s %v", series, got, cmp, value)
	}
}

// logEntries parses the JSON log lines written so far.
func (s *opsServer) logEntries() []map[string]any {
	s.t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(s.logs.String(), "\n") {
		if line == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			s.t.Fatalf("log line is not JSON: %q", line)
		}
		out = append(out, e)
	}
	return out
}

// logged returns the log entries with message msg.
func (s *opsServer) logged(msg string) []map[string]any {
	var out []map[string]any
	for _, e := range s.logEntries() {
		if e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

// failingStore is a state store whose Load fails while failing is set.
type failingStore struct {
	uidmap.Store
	failing *atomic.Bool
}

func (f failingStore) Load(ctx context.Context, key uidmap.Key) (*uidmap.Maildrop, error) {
	if f.failing.Load() {
		return nil, fmt.Errorf("test: the store is broken")
	}
	return f.Store.Load(ctx, key)
}

// testClock is a clock that tests move on by hand.
type testClock struct{ ns atomic.Int64 }

func newTestClock() *testClock {
	c := &testClock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}

func (c *testClock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) advance(d time.Duration) { c.ns.Add(int64(d)) }
