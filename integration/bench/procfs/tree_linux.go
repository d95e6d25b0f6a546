package procfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/corral-dev/corral/internal/procstat"
)

// Comm is the process's name (its program's, up to 15 bytes), "" if it is
// gone. A process's name changes when it execs: a forked child has its
// parent's name until then.
func Comm(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// Children lists the children of every thread of pid, from
// /proc/PID/task/TID/children.
func Children(pid int) ([]int, error) {
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

// Alive reports whether pid is a process that has not exited: a zombie
// has, though it still has a /proc entry until its parent reaps it.
func Alive(pid int) bool {
	st, err := procstat.Read(pid)
	return err == nil && !st.Ended()
}

// WaitGone waits until none of pids is alive or the timeout passes, and
// returns those still alive.
func WaitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, p := range pids {
			if Alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		pids = left
		time.Sleep(5 * time.Millisecond)
	}
}

// DescendsFrom reports whether ancestor is pid's parent (depth 1), its
// grandparent (depth 2), and so on.
func DescendsFrom(pid, ancestor, depth int) bool {
	for i := 0; i < depth; i++ {
		st, err := procstat.Read(pid)
		if err != nil {
			return false
		}
		pid = st.PPID
	}
	return pid == ancestor
}
