package procfs

import (
	"fmt"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/procstat"
)

// CPUClock reads a process's CPU time. The precise source is its CPU
// clock, CPUCLOCK_SCHED of the whole thread group (what
// clock_getcpuclockid(3) gives): /proc/PID/schedstat would be the main
// thread's alone, and a Go daemon does its work on many. Where that clock
// cannot be read, utime+stime stand in.
type CPUClock struct {
	pid   int
	ticks bool
}

const (
	processClockName = "the process's CPU clock (clock_gettime, ns, all its threads)"
	ticksClockName   = "utime+stime of /proc/PID/stat (10 ms ticks): the process's CPU clock was unreadable"
)

// NewCPUClock is the CPU clock of process pid.
func NewCPUClock(pid int) *CPUClock {
	c := &CPUClock{pid: pid}
	var ts unix.Timespec
	c.ticks = unix.ClockGettime(c.id(), &ts) != nil
	return c
}

// id is MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED).
func (c *CPUClock) id() int32 { return int32((^c.pid)<<3 | 2) }

// Precise reports whether the clock is the process's CPU clock rather
// than utime+stime.
func (c *CPUClock) Precise() bool { return !c.ticks }

// Name says where the times come from, for the report.
func (c *CPUClock) Name() string {
	if c.ticks {
		return ticksClockName
	}
	return processClockName
}

// Read is the process's CPU time so far.
func (c *CPUClock) Read() (time.Duration, error) {
	if c.ticks {
		st, err := procstat.Read(c.pid)
		if err != nil {
			return 0, err
		}
		return st.CPU(), nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(c.id(), &ts); err != nil {
		return 0, fmt.Errorf("CPU clock of process %d: %w", c.pid, err)
	}
	return time.Duration(ts.Nano()), nil
}
