package main

// -perf DIR: after the timed runs of a scenario, one more run of the ceiling
// and of popbridge each under `perf record -a -g` (the whole machine: the
// client, popbridge, Dovecot and the kernel), summarised by process and, for
// popbridge, by function. These runs are not in the results.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// profiled runs f under perf record and writes NAME.data, NAME-by-process.txt
// and NAME-popbridge.txt into the -perf directory.
func (b *bench) profiled(name string, f func() error) error {
	dir := b.o.perf
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	data := filepath.Join(dir, name+".data")
	var out bytes.Buffer
	cmd := exec.Command("perf", "record", "-a", "-g", "-F", "499", "-o", data)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("perf record: %w", err)
	}
	time.Sleep(500 * time.Millisecond) // perf sets up its buffers
	ferr := f()
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil && !strings.Contains(err.Error(), "interrupt") {
		return fmt.Errorf("perf record: %v: %s", err, out.String())
	}
	if ferr != nil {
		return ferr
	}
	reports := []struct {
		suffix string
		args   []string
	}{
		{"by-process", []string{"--sort", "comm,dso"}},
		{"popbridge", []string{"--comm", "popbridge", "--sort", "symbol"}},
		{"popbridge-callers", []string{"--comm", "popbridge", "--sort", "symbol", "--children", "-g", "caller,0.5,callee,function,percent"}},
	}
	for _, r := range reports {
		args := append([]string{"report", "-i", data, "--stdio", "--percent-limit", "0.5"}, r.args...)
		if r.suffix != "popbridge-callers" {
			args = append(args, "--no-children", "-g", "none")
		}
		rep, err := exec.Command("perf", args...).Output()
		if err != nil {
			return fmt.Errorf("perf report: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+r.suffix+".txt"), rep, 0o644); err != nil {
			return err
		}
	}
	if err := b.syscalls(name, f); err != nil {
		return err
	}
	b.logf("profile of %s in %s", name, dir)
	return nil
}

// syscalls runs f once more under perf record of the read and write system
// calls of the whole machine (perf's own excluded) and writes per process
// name how many there were and how many octets they moved, into
// NAME-syscalls.txt: the size of the writes is where streaming spends its
// time.
func (b *bench) syscalls(name string, f func() error) error {
	data := filepath.Join(b.o.perf, name+"-syscalls.data")
	args := []string{"record", "-a", "-o", data}
	for _, sc := range []string{"read", "write", "readv", "writev", "recvfrom", "sendto"} {
		args = append(args, "-e", "syscalls:sys_exit_"+sc, "--exclude-perf")
	}
	var out bytes.Buffer
	cmd := exec.Command("perf", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("perf record: %w", err)
	}
	time.Sleep(500 * time.Millisecond)
	ferr := f()
	cmd.Process.Signal(syscall.SIGINT)
	if err := cmd.Wait(); err != nil && !strings.Contains(err.Error(), "interrupt") {
		return fmt.Errorf("perf record: %v: %s", err, out.String())
	}
	if ferr != nil {
		return ferr
	}
	script, err := exec.Command("perf", "script", "-i", data, "-F", "comm,event,trace").Output()
	if err != nil {
		return fmt.Errorf("perf script: %w", err)
	}
	type count struct{ calls, octets int64 }
	type key struct{ comm, dir string }
	counts := map[key]*count{}
	var keys []key
	for _, line := range strings.Split(string(script), "\n") {
		// "  popbridge syscalls:sys_exit_write: 0x1000"
		i := strings.Index(line, " syscalls:sys_exit_")
		if i < 0 {
			continue
		}
		comm := strings.TrimSpace(line[:i])
		ev, ret, _ := strings.Cut(line[i+len(" syscalls:sys_exit_"):], ": ")
		dir := "read"
		if strings.HasPrefix(ev, "write") || ev == "sendto" {
			dir = "write"
		}
		var n int64
		fmt.Sscanf(strings.TrimSpace(ret), "0x%x", &n)
		k := key{comm, dir}
		c := counts[k]
		if c == nil {
			c = &count{}
			counts[k] = c
			keys = append(keys, k)
		}
		c.calls++
		if n > 0 && n < 1<<40 { // negative errors show as huge numbers
			c.octets += n
		}
	}
	var rep strings.Builder
	fmt.Fprintf(&rep, "%-16s %-5s %10s %14s %10s\n", "process", "call", "calls", "octets", "avg")
	for _, k := range keys {
		c := counts[k]
		if c.calls < 100 {
			continue
		}
		fmt.Fprintf(&rep, "%-16s %-5s %10d %14d %10.0f\n", k.comm, k.dir, c.calls, c.octets, float64(c.octets)/float64(c.calls))
	}
	os.Remove(data)
	return os.WriteFile(filepath.Join(b.o.perf, name+"-syscalls.txt"), []byte(rep.String()), 0o644)
}

// profileScenario profiles one more run of the ceiling and of popbridge.
func (b *bench) profileScenario(name string, f func(t *target) error) error {
	if b.o.perf == "" {
		return nil
	}
	if _, err := exec.LookPath("perf"); err != nil {
		b.logf("-perf: perf not found (apt-get install linux-perf)")
		return nil
	}
	for _, t := range b.targets[:2] {
		if err := b.profiled(name+"-"+t.name, func() error { return f(t) }); err != nil {
			return err
		}
	}
	return nil
}
