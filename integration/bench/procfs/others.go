package procfs

import "time"

// procKey names a process across PID reuse: its PID and start time.
type procKey struct {
	pid   int
	start uint64
}

// OthersSnapshot is the CPU time of every user process that is neither the
// bench nor one of its descendants (the daemons, supervisors, sandboxes
// and services it runs), at one moment.
type OthersSnapshot struct {
	At  time.Time
	cpu map[procKey]time.Duration
}

// OthersCPU is the CPU time that other processes used between two
// snapshots: those alive at the end (a process that both started and
// ended in between is missed).
func OthersCPU(before, after OthersSnapshot) time.Duration {
	var d time.Duration
	for k, t := range after.cpu {
		d += t - before.cpu[k]
	}
	return d
}
