package procfs

import (
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/corral-dev/corral/internal/procstat"
)

// kthreadd is the parent of every kernel thread.
const kthreadd = 2

// SnapshotOthers reads /proc. Kernel threads are left out: they also work
// for the bench's own processes.
func SnapshotOthers() OthersSnapshot {
	procs := map[int]procstat.Stat{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if st, err := procstat.Read(pid); err == nil {
			procs[pid] = st
		}
	}
	self := os.Getpid()
	ours := func(pid int) bool {
		for depth := 0; pid > 1 && depth < 64; depth++ {
			if pid == self {
				return true
			}
			pid = procs[pid].PPID
		}
		return false
	}
	s := OthersSnapshot{At: time.Now(), cpu: map[procKey]time.Duration{}}
	for pid, st := range procs {
		if pid == kthreadd || st.PPID == kthreadd || ours(pid) {
			continue
		}
		s.cpu[procKey{pid, st.StartTime}] = st.CPU()
	}
	return s
}
