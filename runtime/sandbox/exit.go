package sandbox

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/spec"
)

// Exit is how a sandbox ended: its init's status plus what the cgroup
// counted, read before the cgroup was removed. An exit code alone cannot
// show an OOM kill of a child, or forks refused by the pids limit.
type Exit struct {
	// Code is init's exit status when it exited; Signal is the signal that
	// killed it otherwise (and Code is then 0).
	Code   int
	Signal syscall.Signal
	Stats  cgroup.Stats
	// MemoryLimit and PidsLimit are the limits the sandbox ran under
	// (0: none), for the report.
	MemoryLimit int64
	PidsLimit   int64
	// ExecErr is set when the init could not execute the command
	// (ErrCommandNotFound or ErrCommandNotExecutable).
	ExecErr error
	// Unwatched: it ended while no corral process watched it (found so by
	// Adopt); Ended is then when its init recorded the end, else zero.
	Unwatched bool
	Ended     time.Time
	// StatsErr says why Stats could not be read (the cgroup was removed
	// behind corral's back, say): an OOM kill or the pids limit would then
	// go unseen.
	StatsErr error
}

// Exit codes of a command that could not be run, as shells and docker
// run give them.
const (
	CodeStartFailed   = 125 // the sandbox (or corral) failed before the command
	CodeNotExecutable = 126 // found, but it could not be executed
	CodeNotFound      = 127 // not found
)

// StartFailedCode is the exit code for err, a failure to start a command
// (from Start, or an Exit's ExecErr): the one mapping of the three.
func StartFailedCode(err error) int {
	switch {
	case errors.Is(err, ErrCommandNotFound):
		return CodeNotFound
	case errors.Is(err, ErrCommandNotExecutable):
		return CodeNotExecutable
	}
	return CodeStartFailed
}

// ExitCode is the shell convention: the code, or 128+N if killed by signal N.
func (e Exit) ExitCode() int {
	if e.ExecErr != nil {
		if code := StartFailedCode(e.ExecErr); code != CodeStartFailed {
			return code
		}
		return CodeNotExecutable // the init found it but could not run it
	}
	if e.Signal != 0 {
		return 128 + int(e.Signal)
	}
	return e.Code
}

// Clean reports an exit with code 0 that no limit interfered with.
func (e Exit) Clean() bool {
	return e.ExecErr == nil && e.Signal == 0 && e.Code == 0 && !e.oomKilled() && e.Stats.PidsLimitHits == 0
}

// OOMKilled reports whether the OOM killer killed anything in the sandbox.
func (e Exit) OOMKilled() bool { return e.oomKilled() }

// oomKilled reports whether the OOM killer killed anything in the sandbox:
// one process, or on cgroup v2 with memory.oom.group all of them.
func (e Exit) oomKilled() bool {
	return e.Stats.OOMKills > 0 || e.Stats.OOMGroupKills > 0
}

// Reason says in words how the sandbox ended, naming the limit that was
// hit when one was.
func (e Exit) Reason() string {
	memLimit := "no memory limit"
	if e.MemoryLimit > 0 {
		memLimit = "memory limit " + spec.FormatBytes(e.MemoryLimit)
	}
	if e.ExecErr != nil {
		return "failed to start: " + e.ExecErr.Error()
	}
	var b strings.Builder
	switch {
	case e.Signal == syscall.SIGKILL && e.oomKilled():
		fmt.Fprintf(&b, "killed by the kernel OOM killer (%s)", memLimit)
		switch {
		case e.Stats.OOMGroupKills > 0:
			// The kernel counts each process of the group in oom_kill,
			// some twice: the count would say nothing.
			b.WriteString("; it killed the whole sandbox (memory.oom.group)")
		case e.Stats.OOMKills > 1:
			fmt.Fprintf(&b, "; %d processes were OOM-killed in all", e.Stats.OOMKills)
		}
	case e.Signal != 0:
		fmt.Fprintf(&b, "killed by signal %d (%s)", int(e.Signal), signalName(e.Signal))
	default:
		fmt.Fprintf(&b, "exited with code %d", e.Code)
	}
	if e.oomKilled() && !(e.Signal == syscall.SIGKILL) {
		what := plural(e.Stats.OOMKills, "process", "processes")
		if e.Stats.OOMGroupKills > 0 {
			what = "every process"
		}
		fmt.Fprintf(&b, "; the kernel OOM killer killed %s in the sandbox (%s)", what, memLimit)
	}
	if e.Stats.PidsLimitHits > 0 {
		fmt.Fprintf(&b, "; the pids limit (%d) was reached: %s refused", e.PidsLimit, plural(e.Stats.PidsLimitHits, "fork", "forks"))
	}
	if e.StatsErr != nil {
		b.WriteString("; its cgroup counters were unreadable, so an OOM kill or the pids limit would not show (was its cgroup removed?)")
	}
	return b.String()
}

func signalName(s syscall.Signal) string {
	if name := unix.SignalName(s); name != "" {
		return name
	}
	return "unknown signal"
}

func plural(n uint64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
