package main

import (
	"os"
	"testing"
)

// processMemory reads PSS, RSS and the part of PSS that maps files (the
// test binary itself, at least) from smaps_rollup.
func TestProcessMemory(t *testing.T) {
	m, err := processMemory(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if m.pss <= 0 || m.rss < m.pss || m.pssFile <= 0 || m.pssFile >= m.pss {
		t.Fatalf("memory %+v: want 0 < pssFile < pss <= rss", m)
	}
}
