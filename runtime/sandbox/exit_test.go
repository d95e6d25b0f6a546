package sandbox

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/corral-dev/corral/runtime/cgroup"
)

func TestExit(t *testing.T) {
	const mem64 = 64 << 20
	for _, tc := range []struct {
		desc   string
		exit   Exit
		reason string
		code   int
		clean  bool
	}{
		{
			desc:   "exit 0",
			exit:   Exit{Code: 0, MemoryLimit: mem64, PidsLimit: 1024},
			reason: "exited with code 0",
			code:   0,
			clean:  true,
		},
		{
			desc:   "exit 3",
			exit:   Exit{Code: 3},
			reason: "exited with code 3",
			code:   3,
		},
		{
			desc:   "exit 255",
			exit:   Exit{Code: 255},
			reason: "exited with code 255",
			code:   255,
		},
		{
			desc:   "SIGKILL without OOM",
			exit:   Exit{Signal: syscall.SIGKILL, MemoryLimit: mem64},
			reason: "killed by signal 9 (SIGKILL)",
			code:   137,
		},
		{
			desc:   "SIGTERM",
			exit:   Exit{Signal: syscall.SIGTERM},
			reason: "killed by signal 15 (SIGTERM)",
			code:   143,
		},
		{
			desc:   "SIGSYS from seccomp",
			exit:   Exit{Signal: syscall.SIGSYS},
			reason: "killed by signal 31 (SIGSYS)",
			code:   159,
		},
		{
			desc:   "a signal without a name",
			exit:   Exit{Signal: syscall.Signal(40)},
			reason: "killed by signal 40 (unknown signal)",
			code:   168,
		},
		{
			desc:   "OOM-killed init",
			exit:   Exit{Signal: syscall.SIGKILL, MemoryLimit: mem64, Stats: cgroup.Stats{OOMKills: 1}},
			reason: "killed by the kernel OOM killer (memory limit 64MiB)",
			code:   137,
		},
		{
			desc:   "OOM-killed init and others",
			exit:   Exit{Signal: syscall.SIGKILL, MemoryLimit: 3 << 29, Stats: cgroup.Stats{OOMKills: 3}},
			reason: "killed by the kernel OOM killer (memory limit 1.5GiB); 3 processes were OOM-killed in all",
			code:   137,
		},
		{
			desc:   "OOM kill without a memory limit",
			exit:   Exit{Signal: syscall.SIGKILL, Stats: cgroup.Stats{OOMKills: 1}},
			reason: "killed by the kernel OOM killer (no memory limit)",
			code:   137,
		},
		{
			desc:   "the whole sandbox OOM-killed (cgroup v2, memory.oom.group)",
			exit:   Exit{Signal: syscall.SIGKILL, MemoryLimit: mem64, Stats: cgroup.Stats{OOMKills: 4, OOMGroupKills: 1}},
			reason: "killed by the kernel OOM killer (memory limit 64MiB); it killed the whole sandbox (memory.oom.group)",
			code:   137,
		},
		{
			desc:   "a group kill alone is an OOM kill",
			exit:   Exit{Signal: syscall.SIGKILL, Stats: cgroup.Stats{OOMGroupKills: 1}},
			reason: "killed by the kernel OOM killer (no memory limit); it killed the whole sandbox (memory.oom.group)",
			code:   137,
		},
		{
			desc:   "exit 0 after a group kill is not clean",
			exit:   Exit{Code: 0, MemoryLimit: mem64, Stats: cgroup.Stats{OOMGroupKills: 1}},
			reason: "exited with code 0; the kernel OOM killer killed every process in the sandbox (memory limit 64MiB)",
			code:   0,
		},
		{
			desc:   "exit 0 after a child was OOM-killed",
			exit:   Exit{Code: 0, MemoryLimit: mem64, Stats: cgroup.Stats{OOMKills: 1}},
			reason: "exited with code 0; the kernel OOM killer killed 1 process in the sandbox (memory limit 64MiB)",
			code:   0,
		},
		{
			desc:   "exit 1 after children were OOM-killed",
			exit:   Exit{Code: 1, MemoryLimit: mem64, Stats: cgroup.Stats{OOMKills: 2}},
			reason: "exited with code 1; the kernel OOM killer killed 2 processes in the sandbox (memory limit 64MiB)",
			code:   1,
		},
		{
			desc:   "SIGTERM after a child was OOM-killed",
			exit:   Exit{Signal: syscall.SIGTERM, MemoryLimit: mem64, Stats: cgroup.Stats{OOMKills: 1}},
			reason: "killed by signal 15 (SIGTERM); the kernel OOM killer killed 1 process in the sandbox (memory limit 64MiB)",
			code:   143,
		},
		{
			desc:   "exit 0 with one fork refused",
			exit:   Exit{Code: 0, PidsLimit: 16, Stats: cgroup.Stats{PidsLimitHits: 1}},
			reason: "exited with code 0; the pids limit (16) was reached: 1 fork refused",
			code:   0,
		},
		{
			desc:   "exit 2 with forks refused",
			exit:   Exit{Code: 2, PidsLimit: 1024, Stats: cgroup.Stats{PidsLimitHits: 5}},
			reason: "exited with code 2; the pids limit (1024) was reached: 5 forks refused",
			code:   2,
		},
		{
			desc:   "OOM and pids limit together",
			exit:   Exit{Signal: syscall.SIGKILL, MemoryLimit: mem64, PidsLimit: 8, Stats: cgroup.Stats{OOMKills: 1, PidsLimitHits: 2}},
			reason: "killed by the kernel OOM killer (memory limit 64MiB); the pids limit (8) was reached: 2 forks refused",
			code:   137,
		},
		{
			desc:   "SIGKILL with the cgroup gone",
			exit:   Exit{Signal: syscall.SIGKILL, StatsErr: errors.New("cgroup deleted")},
			reason: "killed by signal 9 (SIGKILL); its cgroup counters were unreadable, so an OOM kill or the pids limit would not show (was its cgroup removed?)",
			code:   137,
		},
		{
			desc:   "other counters do not matter",
			exit:   Exit{Code: 0, Stats: cgroup.Stats{MemoryUsage: 1 << 30, PidsCurrent: 7, CPUThrottled: 5, ThrottledPeriods: 9}},
			reason: "exited with code 0",
			code:   0,
			clean:  true,
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := tc.exit.Reason(); got != tc.reason {
				t.Errorf("Reason() = %q\nwant       %q", got, tc.reason)
			}
			if got := tc.exit.ExitCode(); got != tc.code {
				t.Errorf("ExitCode() = %d, want %d", got, tc.code)
			}
			if got := tc.exit.Clean(); got != tc.clean {
				t.Errorf("Clean() = %v, want %v", got, tc.clean)
			}
		})
	}
}

func TestPlural(t *testing.T) {
	for _, tc := range []struct {
		n    uint64
		want string
	}{
		{0, "0 forks"},
		{1, "1 fork"},
		{2, "2 forks"},
		{1000, "1000 forks"},
	} {
		if got := plural(tc.n, "fork", "forks"); got != tc.want {
			t.Errorf("plural(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

// TestStartFailedCode: the one mapping of start failures to 125/126/127,
// wrapped errors included, and Exit.ExitCode uses it.
func TestStartFailedCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want int
	}{
		{fmt.Errorf("start: %w", ErrCommandNotFound), CodeNotFound},
		{fmt.Errorf("start: %w", ErrCommandNotExecutable), CodeNotExecutable},
		{errors.New("cgroup busy"), CodeStartFailed},
	} {
		if got := StartFailedCode(tc.err); got != tc.want {
			t.Errorf("StartFailedCode(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
	if got := (Exit{ExecErr: ErrCommandNotFound}).ExitCode(); got != CodeNotFound {
		t.Errorf("exit of a missing command: %d", got)
	}
}
