package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/corral-dev/corral/internal/procstat"
)

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

// SampleActivity reads the context switches of every thread of pids, and
// their CPU time (utime+stime).
func SampleActivity(pids []int) (Activity, error) {
	a := Activity{Switches: map[int]int64{}}
	for _, pid := range pids {
		sw, err := taskSwitches(pid)
		if err != nil {
			return a, err
		}
		for tid, n := range sw {
			a.Switches[tid] = n
		}
		st, err := procstat.Read(pid)
		if err != nil {
			return a, err
		}
		a.CPU += st.CPU()
	}
	return a, nil
}

// HostBusy is the CPU time all CPUs have spent busy since boot (user,
// nice, system, irq, softirq, steal from /proc/stat).
func HostBusy() (time.Duration, error) {
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
	return procstat.Ticks(busy), nil
}
