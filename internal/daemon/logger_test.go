package daemon

import (
	"bytes"
	"encoding/json"
	"runtime"
	"slices"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// lines decodes the JSON lines written so far.
func lines(t *testing.T, buf *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		if l == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		out = append(out, m)
	}
	buf.Reset()
	return out
}

// Fields given to With reach every line of that logger and of the loggers
// made from it, in order, and never a sibling's.
func TestLoggerWith(t *testing.T) {
	var buf bytes.Buffer
	log, atom, err := NewLogger(&buf, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	session := log.With(zap.String("session", "s1"))
	a := session.With(zap.String("user", "alice"))
	b := session.With(zap.String("user", "bob"), zap.Int("n", 2))
	a.Info("one", zap.String("extra", "x"))
	b.Info("two")
	session.Info("three")
	got := lines(t, &buf)
	if len(got) != 3 {
		t.Fatalf("%d lines: %v", len(got), got)
	}
	if l := got[0]; l["msg"] != "one" || l["session"] != "s1" || l["user"] != "alice" || l["extra"] != "x" {
		t.Errorf("line one: %v", l)
	}
	if l := got[1]; l["msg"] != "two" || l["session"] != "s1" || l["user"] != "bob" || l["n"] != 2.0 {
		t.Errorf("line two: %v", l)
	}
	if l := got[2]; l["msg"] != "three" || l["session"] != "s1" || l["user"] != nil {
		t.Errorf("line three: %v", l)
	}

	// The order of the line: With's fields, then the entry's.
	a.Info("order", zap.String("z", "last"))
	raw := buf.String()
	if i, j, k := strings.Index(raw, `"session"`), strings.Index(raw, `"user"`), strings.Index(raw, `"z"`); i < 0 || !(i < j && j < k) {
		t.Errorf("field order in %s", raw)
	}
	buf.Reset()

	// The level is still the process's, and still changes.
	a.Debug("hidden")
	if got := lines(t, &buf); len(got) != 0 {
		t.Fatalf("debug line written at level info: %v", got)
	}
	atom.SetLevel(zapcore.DebugLevel)
	a.Debug("shown")
	if got := lines(t, &buf); len(got) != 1 || got[0]["user"] != "alice" {
		t.Fatalf("debug line after the level change: %v", got)
	}
}

// With keeps a session's fields without zap's encoding buffer (1 KiB at
// least): what a logger With a session id and a user costs while the
// session idles.
func TestLoggerWithHoldsNoBuffer(t *testing.T) {
	log, _, err := NewLogger(&bytes.Buffer{}, "info", "json")
	if err != nil {
		t.Fatal(err)
	}
	// The heap is measured between two collections, and what an earlier
	// test left running (a server still shutting down) may allocate or free
	// meanwhile: many loggers, so that their share dominates, and the median
	// of three tries.
	const n, tries = 20000, 3
	per := make([]float64, tries)
	for i := range per {
		keep := make([]*zap.Logger, n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for j := range keep {
			keep[j] = log.With(zap.String("session", "s1"), zap.String("user", "alice"))
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(keep)
		per[i] = (float64(after.HeapAlloc) - float64(before.HeapAlloc)) / n
	}
	slices.Sort(per)
	median := per[tries/2]
	t.Logf("a logger With two fields: %.0f bytes (tries: %.0f)", median, per)
	if median > 512 {
		t.Fatalf("a logger With two fields holds %.0f bytes, want under 512", median)
	}
}
