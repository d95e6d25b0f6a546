package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// userHZ is the unit of utime and stime in /proc/PID/stat: USER_HZ, which
// the kernel fixes at 100 on every architecture Go supports.
const userHZ = 100

// pssKB is the proportional set size of a process from
// /proc/PID/smaps_rollup: its private pages plus its share of the pages it
// shares, so that summing it over processes counts a shared page once.
func pssKB(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "Pss:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no Pss in /proc/%d/smaps_rollup", pid)
}

// sumPSS is the total PSS of pids, in bytes.
func sumPSS(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		kb, err := pssKB(pid)
		if err != nil {
			return 0, fmt.Errorf("PSS of %d: %w", pid, err)
		}
		total += kb << 10
	}
	return total, nil
}

// procStat holds the fields of /proc/PID/stat the bench uses.
type procStat struct {
	state byte
	ppid  int
	// ticks is utime+stime, in 1/userHZ s; childTicks cutime+cstime,
	// the CPU time of its children that have exited and been waited for.
	ticks, childTicks int64
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	// The command name (field 2) may hold spaces and parentheses: the
	// fields that follow start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(data[i+1:]))
	// f[0] is field 3 (state); utime, stime, cutime and cstime are
	// fields 14 to 17.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	var t [4]int64
	for i := range t {
		if t[i], err = strconv.ParseInt(f[11+i], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
	}
	return procStat{state: f[0][0], ppid: ppid, ticks: t[0] + t[1], childTicks: t[2] + t[3]}, nil
}

// alive reports whether pid is a process that has not exited: a zombie
// has, though it still has a /proc entry until its parent reaps it.
func alive(pid int) bool {
	st, err := readStat(pid)
	return err == nil && st.state != 'Z' && st.state != 'X'
}

func comm(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// childrenOf lists the children of every thread of pid, from
// /proc/PID/task/TID/children.
func childrenOf(pid int) ([]int, error) {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue // the thread has ended
		}
		for _, f := range strings.Fields(string(data)) {
			if k, err := strconv.Atoi(f); err == nil {
				kids = append(kids, k)
			}
		}
	}
	return kids, nil
}

// taskSwitches maps each thread of pid to its context switches so far,
// voluntary plus involuntary: each is a time the thread stopped running,
// so each of its sleeps that ended is one wake-up.
func taskSwitches(pid int) (map[int]int64, error) {
	dirs, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil {
		return nil, err
	}
	if len(dirs) == 0 {
		return nil, fmt.Errorf("process %d: no threads (gone?)", pid)
	}
	out := map[int]int64{}
	for _, d := range dirs {
		tid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(d, "status"))
		if err != nil {
			continue // the thread has ended
		}
		var n int64
		sc := bufio.NewScanner(bytes.NewReader(data))
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if ok && (k == "voluntary_ctxt_switches" || k == "nonvoluntary_ctxt_switches") {
				c, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
				if err != nil {
					return nil, fmt.Errorf("%s/status: %s: %w", d, k, err)
				}
				n += c
			}
		}
		out[tid] = n
	}
	return out, nil
}

// activity is what a set of processes has done so far: context switches
// per thread and CPU time.
type activity struct {
	switches map[int]int64 // by thread id
	ticks    int64
}

func sampleActivity(pids []int) (activity, error) {
	a := activity{switches: map[int]int64{}}
	for _, pid := range pids {
		sw, err := taskSwitches(pid)
		if err != nil {
			return a, err
		}
		for tid, n := range sw {
			a.switches[tid] = n
		}
		st, err := readStat(pid)
		if err != nil {
			return a, err
		}
		a.ticks += st.ticks
	}
	return a, nil
}

// wakeups is the number of context switches between two samples: a thread
// in both counts its increase, a thread born in between all of its own. A
// thread that ended in between is lost, and counted in ended.
func wakeups(before, after activity) (n int64, ended int) {
	for tid, c := range after.switches {
		n += c - before.switches[tid]
	}
	for tid := range before.switches {
		if _, ok := after.switches[tid]; !ok {
			ended++
		}
	}
	return n, ended
}

// hostBusyTicks is the CPU time all CPUs have spent busy since boot
// (user, nice, system, irq, softirq, steal from /proc/stat), in 1/userHZ s.
func hostBusyTicks() (int64, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	var busy int64
	for _, i := range []int{1, 2, 3, 6, 7, 8} { // user nice system - - irq softirq steal
		v, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	return busy, nil
}

// procKey names a process across PID reuse: its PID and start time.
type procKey struct {
	pid   int
	start string
}

// othersSnapshot is the CPU time of every user process that is neither the
// bench nor one of its descendants (the daemons, supervisors, sandboxes
// and services it runs), at one moment.
type othersSnapshot struct {
	at    time.Time
	ticks map[procKey]int64
}

// snapshotOthers reads /proc. Kernel threads are left out: they also work
// for the bench's own processes.
func snapshotOthers() othersSnapshot {
	type proc struct {
		ppid  int
		start string
		ticks int64
	}
	procs := map[int]proc{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		data, err := os.ReadFile(filepath.Join(d, "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(data[i+1:]))
		if len(f) < 20 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		ut, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		procs[pid] = proc{ppid: ppid, start: f[19], ticks: ut + st}
	}
	self := os.Getpid()
	ours := func(pid int) bool {
		for depth := 0; pid > 1 && depth < 64; depth++ {
			if pid == self {
				return true
			}
			pid = procs[pid].ppid
		}
		return false
	}
	s := othersSnapshot{at: time.Now(), ticks: map[procKey]int64{}}
	for pid, p := range procs {
		if pid == 2 || p.ppid == 2 || ours(pid) {
			continue
		}
		s.ticks[procKey{pid, p.start}] = p.ticks
	}
	return s
}

// othersCPU is the CPU time, in seconds, that other processes used
// between two snapshots: those alive at the end (a process that both
// started and ended in between is missed).
func othersCPU(before, after othersSnapshot) float64 {
	var ticks int64
	for k, t := range after.ticks {
		ticks += t - before.ticks[k]
	}
	return float64(ticks) / userHZ
}
