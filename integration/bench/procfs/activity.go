package procfs

import "time"

// Activity is what a set of processes has done so far: context switches
// per thread and CPU time.
type Activity struct {
	Switches map[int]int64 // by thread id
	CPU      time.Duration
}

// Wakeups is the number of context switches between two samples: a thread
// in both counts its increase, a thread born in between all of its own. A
// thread that ended in between is lost, and counted in ended.
func Wakeups(before, after Activity) (n int64, ended int) {
	for tid, c := range after.Switches {
		n += c - before.Switches[tid]
	}
	for tid := range before.Switches {
		if _, ok := after.Switches[tid]; !ok {
			ended++
		}
	}
	return n, ended
}
