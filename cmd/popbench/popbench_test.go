package main

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestQuickList runs the list scenario end to end on a tiny mailbox, once:
// Dovecot, popbridge (built here), Dovecot's POP3 over imapc when
// installed, the table, the chart and the markdown, so that the benchmark
// cannot silently rot.
func TestQuickList(t *testing.T) {
	fail := t.Skipf
	if os.Getenv("CI") != "" {
		fail = t.Fatalf
	}
	if !exists(dovecotBin) {
		fail("%s not found: install Dovecot with `apt-get install dovecot-imapd dovecot-pop3d`", dovecotBin)
	}
	if os.Geteuid() != 0 {
		fail("popbench runs Dovecot and needs root (mail is stored as the user mail, uid 8)")
	}
	dir := t.TempDir()
	var out, log bytes.Buffer
	o := options{
		scenarios: []string{"list"},
		quick:     true,
		runs:      1,
		listSizes: []int{300},
		peer:      true,
		chart:     filepath.Join(dir, "bench.png"),
		markdown:  filepath.Join(dir, "bench.md"),
		raceBuild: raceEnabled, // shares the compiled packages of `go test -race`
		out:       &out,
		log:       &log,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rep, err := run(ctx, o)
	t.Logf("progress:\n%s", log.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("table:\n%s", out.String())

	want := []string{targetCeiling, targetBridge}
	if exists(pop3Bin) {
		want = append(want, targetPeer)
	}
	for _, name := range want {
		s := rep.find("list 300", name)
		if s == nil || len(s.values) != 1 || !(s.values[0] > 0) {
			t.Errorf("list 300 on %s: %+v", name, s)
		}
		if !strings.Contains(out.String(), name) {
			t.Errorf("the table does not name %s", name)
		}
	}
	if !strings.Contains(out.String(), "≤ 1.3× ceiling") {
		t.Errorf("the table does not show the list goal:\n%s", out.String())
	}

	f, err := os.Open(o.chart)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("chart: %v", err)
	}
	md, err := os.ReadFile(o.markdown)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{mdBegin, mdEnd, "| list 300 | popbridge |", "### Machine", "bench.png"} {
		if !strings.Contains(string(md), s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}

	// Writing again keeps the text outside the generated section.
	edited := strings.Replace(string(md), mdEnd+"\n", mdEnd+"\n\nA reading of the results.\n", 1)
	if err := os.WriteFile(o.markdown, []byte("Intro.\n\n"+edited[strings.Index(edited, mdBegin):]), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := rep.writeMarkdown(o.markdown); err != nil {
		t.Fatal(err)
	}
	md, _ = os.ReadFile(o.markdown)
	if !strings.HasPrefix(string(md), "Intro.\n") || !strings.Contains(string(md), "A reading of the results.") ||
		strings.Count(string(md), mdBegin) != 1 {
		t.Errorf("rewriting lost the text around the generated section:\n%s", md)
	}
}
