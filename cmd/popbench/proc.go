package main

// Reading /proc: memory of processes (PSS and RSS from smaps_rollup) and CPU
// time, ours and the machine's, to tell how much of the machine other work
// took while a scenario ran.

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// memInfo is a process's memory in KiB. pssFile is the part of pss that
// maps files (bbolt's database is mmapped): the kernel may drop it at will,
// anonymous memory it cannot.
type memInfo struct{ pss, rss, pssFile int64 }

// processMemory reads /proc/PID/smaps_rollup.
func processMemory(pid int) (memInfo, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return memInfo{}, err
	}
	defer f.Close()
	var m memInfo
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Pss:":
			m.pss = v
		case "Rss:":
			m.rss = v
		case "Pss_File:":
			m.pssFile = v
		}
	}
	return m, sc.Err()
}

// procStat is what /proc/PID/stat says of a process.
type procStat struct {
	pid, pgrp int
	comm      string
	cpu       int64 // utime + stime, clock ticks
	childCPU  int64 // cutime + cstime: reaped children
}

func readStat(pid string) (procStat, bool) {
	data, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	open, close := bytes.IndexByte(data, '('), bytes.LastIndexByte(data, ')')
	if open < 0 || close < open {
		return procStat{}, false
	}
	f := strings.Fields(string(data[close+1:]))
	if len(f) < 15 {
		return procStat{}, false
	}
	num := func(i int) int64 { v, _ := strconv.ParseInt(f[i], 10, 64); return v }
	p, _ := strconv.Atoi(pid)
	return procStat{
		pid:      p,
		pgrp:     int(num(2)),
		comm:     string(data[open+1 : close]),
		cpu:      num(11) + num(12),
		childCPU: num(13) + num(14),
	}, true
}

// allProcs lists every process.
func allProcs() []procStat {
	ents, _ := os.ReadDir("/proc")
	out := make([]procStat, 0, len(ents))
	for _, e := range ents {
		if e.Name()[0] < '0' || e.Name()[0] > '9' {
			continue
		}
		if st, ok := readStat(e.Name()); ok {
			out = append(out, st)
		}
	}
	return out
}

// groupMemory sums the PSS and RSS of the processes of process group pgid
// whose name is comm and whose command line (Dovecot's process title, with
// verbose_proctitle: "dovecot/pop3 [user 127.0.0.1 …]") contains title,
// and counts them.
func groupMemory(pgid int, comm, title string) (memInfo, int) {
	var sum memInfo
	n := 0
	for _, p := range allProcs() {
		if p.pgrp != pgid || p.comm != comm {
			continue
		}
		if title != "" {
			cl, err := os.ReadFile("/proc/" + strconv.Itoa(p.pid) + "/cmdline")
			if err != nil || !bytes.Contains(cl, []byte(title)) {
				continue
			}
		}
		m, err := processMemory(p.pid)
		if err != nil {
			continue // gone meanwhile
		}
		sum.pss += m.pss
		sum.rss += m.rss
		sum.pssFile += m.pssFile
		n++
	}
	return sum, n
}

// cpuSample is the machine's busy time and the part of it that the
// benchmark's own processes used, in clock ticks.
type cpuSample struct {
	machineBusy int64
	ours        int64
}

// sampleCPU reads /proc/stat and the CPU time of this process and of the
// process groups in groups (Dovecot masters and popbridge: the master's
// reaped children count through cutime).
func sampleCPU(groups []int) cpuSample {
	var s cpuSample
	if data, err := os.ReadFile("/proc/stat"); err == nil {
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line) // cpu user nice system idle iowait irq softirq steal ...
		for i := 1; i < len(f); i++ {
			if i == 4 || i == 5 { // idle, iowait
				continue
			}
			if i > 8 { // guest time is already in user
				break
			}
			v, _ := strconv.ParseInt(f[i], 10, 64)
			s.machineBusy += v
		}
	}
	in := make(map[int]bool, len(groups))
	for _, g := range groups {
		in[g] = true
	}
	self := os.Getpid()
	for _, p := range allProcs() {
		if p.pid == self { // and the popbridge processes it has reaped
			s.ours += p.cpu + p.childCPU
			continue
		}
		if in[p.pgrp] {
			s.ours += p.cpu
			if p.pid == p.pgrp { // a group leader reaps its group
				s.ours += p.childCPU
			}
		}
	}
	return s
}

// foreignShare is the share of the machine (0..1 of all cores) that other
// processes used between a and b.
func foreignShare(a, b cpuSample, elapsedTicks float64, cores int) float64 {
	if elapsedTicks <= 0 {
		return 0
	}
	foreign := float64((b.machineBusy - a.machineBusy) - (b.ours - a.ours))
	if foreign < 0 {
		foreign = 0
	}
	return foreign / (elapsedTicks * float64(cores))
}

// machine describes the computer for the report.
type machine struct {
	cpu, kernel, goVersion, dovecot, popbridge, date string
	cores                                            int
	memGiB                                           float64
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotalGiB() float64 {
	data, _ := os.ReadFile("/proc/meminfo")
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				kb, _ := strconv.ParseFloat(f[0], 64)
				return kb / (1 << 20)
			}
		}
	}
	return 0
}

func kernelRelease() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(data))
}

// idleShare is the share of the machine that was idle during d.
func idleShare(d time.Duration) float64 {
	read := func() (idle, total int64) {
		data, _ := os.ReadFile("/proc/stat")
		line, _, _ := strings.Cut(string(data), "\n")
		f := strings.Fields(line)
		for i := 1; i < len(f) && i <= 8; i++ {
			v, _ := strconv.ParseInt(f[i], 10, 64)
			total += v
			if i == 4 || i == 5 {
				idle += v
			}
		}
		return idle, total
	}
	i0, t0 := read()
	time.Sleep(d)
	i1, t1 := read()
	if t1 == t0 {
		return 0
	}
	return float64(i1-i0) / float64(t1-t0)
}

func loadAvg() string {
	data, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Stat(filepath.Clean(path))
	return err == nil
}

// groupTicks is the CPU time, in clock ticks, of the processes of each
// process group in groups (0 for none), the children a group leader has
// reaped included.
func groupTicks(groups ...int) []int64 {
	out := make([]int64, len(groups))
	for _, p := range allProcs() {
		for i, g := range groups {
			if g == 0 || p.pgrp != g {
				continue
			}
			out[i] += p.cpu
			if p.pid == p.pgrp {
				out[i] += p.childCPU
			}
		}
	}
	return out
}
