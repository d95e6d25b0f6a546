package integration

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

// tickerCommand prints 1, 2, 3, ... one number every 50 ms: a gap or a
// repeat in its log is a lost or duplicated line, a restart from 1 a lost
// sandbox.
const tickerCommand = `["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo $i; sleep 0.05; done"]`

// alive reports whether pid names a live (not zombie) process.
func alive(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(data), ')')
	return i > 0 && len(data) > i+2 && data[i+2] != 'Z'
}

// tickerNumbers reads the numbers a ticker service logged, oldest first.
func (d *daemonProc) tickerNumbers(name string) []int {
	d.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.logDir, name, "output.log"))
	if err != nil {
		d.t.Fatal(err)
	}
	var nums []int
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 || f[1] != "stdout" {
			d.t.Fatalf("%s: unexpected log line %q", name, line)
		}
		n, err := strconv.Atoi(f[2])
		if err != nil {
			d.t.Fatalf("%s: unexpected log line %q", name, line)
		}
		nums = append(nums, n)
	}
	return nums
}

// linesBetween counts the log lines of a service stamped between from and to.
func (d *daemonProc) linesBetween(name string, from, to time.Time) int {
	d.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.logDir, name, "output.log"))
	if err != nil {
		d.t.Fatal(err)
	}
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		stamp, _, _ := strings.Cut(line, " ")
		if at, err := time.Parse(time.RFC3339Nano, stamp); err == nil && at.After(from) && at.Before(to) {
			n++
		}
	}
	return n
}

// lostTicks counts the numbers missing from, or repeated in, a ticker's
// log that should run 1, 2, ..., n.
func lostTicks(nums []int) int {
	lost := 0
	for i, n := range nums {
		if n != i+1 {
			lost++
		}
	}
	return lost
}

// assertAccounted checks the sandboxes the daemon runs against its
// services: at most one sandbox (one init) per service, the one ps shows,
// and no sandbox or libcontainer state of a service not in names. A
// sandbox being started or ended has short-lived processes of its own:
// only what persists for 3 seconds counts.
func (d *daemonProc) assertAccounted(names []string) {
	t := d.t
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		problems := d.accountingProblems(names)
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s\ndaemon log:\n%s", strings.Join(problems, "\n"), d.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (d *daemonProc) accountingProblems(names []string) []string {
	var problems []string
	for name, inits := range d.sandboxInits() {
		if !slices.Contains(names, name) {
			if len(inits) > 0 {
				problems = append(problems, fmt.Sprintf("sandbox %s runs (inits %v) but is not configured", name, inits))
			}
			continue
		}
		if len(inits) > 1 {
			var what []string
			for _, p := range inits {
				cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p))
				what = append(what, fmt.Sprintf("%d (parent %d) %q", p, parentPID(p), cmd))
			}
			problems = append(problems, fmt.Sprintf("service %s has %d sandboxes: inits %s", name, len(inits), strings.Join(what, ", ")))
		}
		if st := d.status(name); st.State == "running" && (len(inits) != 1 || inits[0] != st.PID) {
			problems = append(problems, fmt.Sprintf("service %s: ps shows pid %d, its cgroup holds inits %v", name, st.PID, inits))
		}
	}
	for _, sub := range []string{"libcontainer", "roots"} {
		entries, _ := os.ReadDir(filepath.Join(d.stateDir, sub))
		for _, e := range entries {
			// The shared built-in root's template is no service's.
			if !slices.Contains(names, e.Name()) && !(sub == "roots" && isRootTemplate(e.Name())) {
				problems = append(problems, fmt.Sprintf("state %s/%s of an unconfigured service is left", sub, e.Name()))
			}
		}
	}
	return problems
}

// TestDaemonKill9LeavesSandboxesRunningAndTheNextDaemonAdoptsThem: the
// daemon's death touches no sandbox, their output keeps reaching the
// logs, and the next daemon shows them with their PIDs and start times,
// and stops, restarts and supervises them as its own.
func TestDaemonKill9LeavesSandboxesRunningAndTheNextDaemonAdoptsThem(t *testing.T) {
	d := newDaemon(t, `
  ticker:
    command: `+tickerCommand+`
  idle:
    command: ["/bin/sleep", "1000"]
    resources: {memory: 64M}
`).start()
	before := map[string]*api.ServiceDetail{"ticker": d.waitRunning("ticker"), "idle": d.waitRunning("idle")}
	d.kill9()
	killedAt := time.Now()
	time.Sleep(time.Second)
	for name, st := range before {
		if !alive(st.PID) {
			t.Fatalf("%s: sandbox init %d died with the daemon", name, st.PID)
		}
	}

	restartAt := time.Now()
	d.restart()
	for name, was := range before {
		st := d.waitFor(name, 5*time.Second, "adopted", func(st *api.ServiceDetail) bool { return st.State == "running" })
		if st.PID != was.PID || !st.StartedAt.Equal(was.StartedAt) {
			t.Fatalf("%s: after the restart pid %d started %s; before pid %d started %s", name, st.PID, st.StartedAt, was.PID, was.StartedAt)
		}
		if st.MemoryUsage == 0 || st.PidsCurrent == 0 {
			t.Errorf("%s: no live counters for an adopted sandbox: %+v", name, st.Service)
		}
	}
	t.Logf("adopted 2 running sandboxes %s after the daemon's start", time.Since(restartAt).Round(time.Millisecond))
	if st := d.status("idle"); st.MemoryLimit != 64<<20 {
		t.Errorf("idle: memory limit %d after adoption", st.MemoryLimit)
	}

	// The lines printed while no daemon ran are in the log, none lost.
	nums := d.tickerNumbers("ticker")
	if lost := lostTicks(nums); lost != 0 || len(nums) < 10 {
		t.Fatalf("ticker log: %d lines, %d lost or repeated", len(nums), lost)
	}
	if n := d.linesBetween("ticker", killedAt, restartAt); n < 10 {
		t.Errorf("only %d log lines from the second the daemon was down", n)
	}
	if r := d.ctl("logs", "--tail", "5", "ticker"); r.code != 0 || strings.Count(r.stdout, "\n") != 5 {
		t.Errorf("corral logs of an adopted sandbox: %s", r)
	}

	// Supervision resumes: a crash of an adopted sandbox is restarted.
	if err := syscall.Kill(before["ticker"].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := d.waitFor("ticker", 10*time.Second, "restarted", func(st *api.ServiceDetail) bool {
		return st.State == "running" && st.PID != before["ticker"].PID && len(st.Exits) > 0
	})
	if e := st.Exits[len(st.Exits)-1]; e.Signal != 9 || !strings.Contains(e.Reason, "signal 9") {
		t.Errorf("exit of the killed adopted sandbox: %+v", e)
	}
	// restart and stop work on the other.
	if r := d.ctl("restart", "idle"); r.code != 0 {
		t.Fatalf("corral restart: %s", r)
	}
	d.waitFor("idle", 15*time.Second, "restarted", func(st *api.ServiceDetail) bool {
		return st.State == "running" && st.PID != before["idle"].PID
	})
	if r := d.ctl("stop", "idle"); r.code != 0 {
		t.Fatalf("corral stop: %s", r)
	}
	st = d.waitFor("idle", 15*time.Second, "stopped", func(st *api.ServiceDetail) bool { return st.State == "stopped" })
	if e := st.Exits[len(st.Exits)-1]; e.Kind != api.ExitOperator || !strings.HasPrefix(e.Reason, "stopped by operator") {
		t.Errorf("exit after corral stop: %+v; want it classed as the operator's", e)
	}
	d.assertAccounted([]string{"ticker", "idle"})
	d.stop()
}

// TestDaemonReportsTheRealExitOfASandboxThatEndedWhileItWasDown: the
// sandbox's init recorded the exit; the next daemon reports it, with its
// time, and applies the restart policy to it.
func TestDaemonReportsTheRealExitOfASandboxThatEndedWhileItWasDown(t *testing.T) {
	d := newDaemon(t, `
  code42:
    command: ["/bin/sh", "-c", "sleep 1; exit 42"]
    restart: on-failure
  segv:
    command: ["/bin/sh", "-c", "sleep 1; kill -SEGV $$"]
    restart: no
`).start()
	d.waitRunning("code42")
	d.waitRunning("segv")
	d.kill9()
	time.Sleep(2 * time.Second)
	d.restart()

	st := d.waitFor("code42", 10*time.Second, "restarted", func(st *api.ServiceDetail) bool {
		return len(st.Exits) > 0 && st.Restarts >= 1
	})
	e := st.Exits[0]
	if e.Code != 42 || !strings.Contains(e.Reason, "exited with code 42") || !strings.Contains(e.Reason, "while no daemon was running") {
		t.Errorf("code42: exit %+v", e)
	}
	if e.Ran < 900*time.Millisecond || e.Ran > 1900*time.Millisecond {
		t.Errorf("code42: ran %s, want about 1s: the exit time is when it ended, not when it was found", e.Ran)
	}
	st = d.waitFor("segv", 10*time.Second, "failed", func(st *api.ServiceDetail) bool { return st.State == "failed" })
	if e := st.Exits[0]; e.Signal != int(syscall.SIGSEGV) || e.Code != 128+11 || !strings.Contains(e.Reason, "SIGSEGV") {
		t.Errorf("segv: exit %+v", e)
	}
	d.assertAccounted([]string{"code42", "segv"})
	d.stop()
}

// TestDaemonKill9DuringStart: a daemon killed while it starts services
// leaves no half-made sandbox behind the next one, and no service twice.
func TestDaemonKill9DuringStart(t *testing.T) {
	var services strings.Builder
	var names []string
	for i := range 6 {
		names = append(names, fmt.Sprintf("s%d", i))
		fmt.Fprintf(&services, "  s%d:\n    command: [\"/bin/sleep\", \"1000\"]\n", i)
	}
	d := newDaemon(t, services.String())
	for _, delay := range []time.Duration{0, 10 * time.Millisecond, 30 * time.Millisecond, 60 * time.Millisecond, 120 * time.Millisecond} {
		d.start()
		time.Sleep(delay)
		d.kill9()
		d.restart()
		for _, n := range names {
			d.waitRunning(n)
		}
		d.assertAccounted(names)
		d.stop()
	}
}

// TestDaemonKill9DuringStop: the operator's stop, under way when the
// daemon died, is finished by the next daemon, and the service stays
// stopped across further crashes until the operator starts it.
func TestDaemonKill9DuringStop(t *testing.T) {
	d := newDaemon(t, `
  stubborn:
    command: ["/bin/sh", "-c", "trap '' TERM; echo trapped; while :; do sleep 0.1; done"]
    restart: always
    stop: {timeout: 2s}
`).start()
	pid := d.waitRunning("stubborn").PID
	d.waitLogged("stubborn", "trapped")
	if r := d.ctl("stop", "stubborn"); r.code != 0 {
		t.Fatalf("corral stop: %s", r)
	}
	d.waitFor("stubborn", 5*time.Second, "stopping", func(st *api.ServiceDetail) bool { return st.State == "stopping" })
	d.kill9()
	if !alive(pid) {
		t.Fatal("the sandbox died with the daemon")
	}
	d.restart()
	st := d.waitFor("stubborn", 10*time.Second, "stopped", func(st *api.ServiceDetail) bool { return st.State == "stopped" })
	if st.Desired != "down" || len(st.Exits) == 0 || st.Exits[len(st.Exits)-1].Signal != 9 {
		t.Fatalf("after the stop: %+v", st)
	}
	if alive(pid) {
		t.Fatal("the stopped sandbox still runs")
	}
	d.kill9()
	d.restart()
	time.Sleep(300 * time.Millisecond)
	if st := d.status("stubborn"); st.State != "stopped" {
		t.Fatalf("a service the operator stopped is %s after a daemon crash", st.State)
	}
	if r := d.ctl("start", "stubborn"); r.code != 0 {
		t.Fatalf("corral start: %s", r)
	}
	d.waitRunning("stubborn")
	d.assertAccounted([]string{"stubborn"})
	d.stop()
}

// TestDaemonKill9DuringReload: whatever part of a reload the dead daemon
// carried out, the next one reaches the new configuration: the changed
// service runs its new command, the removed one is stopped, the added one
// runs.
func TestDaemonKill9DuringReload(t *testing.T) {
	for _, delay := range []time.Duration{0, 20 * time.Millisecond, 80 * time.Millisecond} {
		t.Run(delay.String(), func(t *testing.T) {
			d := newDaemon(t, `
  changed:
    command: ["/bin/sleep", "1000"]
  removed:
    command: ["/bin/sleep", "1000"]
`).start()
			d.waitRunning("changed")
			d.waitRunning("removed")
			d.write(`
  changed:
    command: ["/bin/sleep", "2000"]
  added:
    command: ["/bin/sleep", "1000"]
`)
			if err := d.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
			time.Sleep(delay)
			d.kill9()
			d.restart()
			d.waitFor("changed", 15*time.Second, "running its new command", func(st *api.ServiceDetail) bool {
				return st.State == "running" && slices.Equal(st.Command, []string{"/bin/sleep", "2000"}) &&
					slices.Equal(procCmdline(st.PID), []string{"/bin/sleep", "2000"})
			})
			d.waitRunning("added")
			deadline := time.Now().Add(15 * time.Second)
			for len(d.sandboxInits()["removed"]) > 0 {
				if time.Now().After(deadline) {
					t.Fatalf("the removed service's sandbox still runs; log:\n%s", d.log())
				}
				time.Sleep(20 * time.Millisecond)
			}
			d.assertAccounted([]string{"changed", "added"})
			d.stop()
		})
	}
}

// procCmdline is the command line of the command run by the sandbox init
// pid: that of its one child.
func procCmdline(pid int) []string {
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
	if err != nil {
		return nil
	}
	f := strings.Fields(string(children))
	if len(f) != 1 {
		return nil
	}
	data, err := os.ReadFile("/proc/" + f[0] + "/cmdline")
	if err != nil {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// TestDaemonSurvivesManyKill9Cycles kills the daemon at random moments 30
// times, with 20 services, and counts what was lost: sandboxes that died,
// log lines missing, exits misreported, sandboxes run twice. All must be
// zero.
func TestDaemonSurvivesManyKill9Cycles(t *testing.T) {
	const cycles, tickers, flappers = 30, 16, 4
	var services strings.Builder
	var names, tickerNames, flapperNames []string
	for i := range tickers {
		n := fmt.Sprintf("tick%02d", i)
		names, tickerNames = append(names, n), append(tickerNames, n)
		fmt.Fprintf(&services, "  %s:\n    command: %s\n", n, tickerCommand)
	}
	for i := range flappers {
		// Restarted all the time, so that kills land in its starts too.
		n := fmt.Sprintf("flap%d", i)
		names, flapperNames = append(names, n), append(flapperNames, n)
		fmt.Fprintf(&services, "  %s:\n    command: [\"/bin/sh\", \"-c\", \"sleep 0.%d; exit 3\"]\n"+
			"    restart: {policy: always, backoff: {initial: 50ms, max: 100ms}, crash_loop: {failures: 100000}}\n", n, 3+i)
	}
	d := newDaemon(t, services.String()).start()
	pids := map[string]int{}
	for _, n := range tickerNames {
		pids[n] = d.waitRunning(n).PID
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	flapRestarts, flapByKind := map[string]int{}, map[string]uint64{}
	var lostSandboxes int
	var adoptTimes []time.Duration
	for range cycles {
		time.Sleep(time.Duration(rnd.IntN(400)) * time.Millisecond)
		d.kill9()
		for _, n := range tickerNames {
			if !alive(pids[n]) {
				lostSandboxes++
				t.Errorf("%s: sandbox %d died with the daemon", n, pids[n])
			}
		}
		began := time.Now()
		d.restart()
		for _, n := range tickerNames {
			st := d.waitRunning(n)
			if st.PID != pids[n] {
				lostSandboxes++
				t.Errorf("%s: pid %d after the restart, was %d", n, st.PID, pids[n])
				pids[n] = st.PID
			}
		}
		adoptTimes = append(adoptTimes, time.Since(began))
		d.assertAccounted(names)
		// The flappers' accounting survives each daemon: never counted
		// back. (How many restarts fit in a cycle depends on the
		// machine's speed; that supervision goes on is checked below.)
		for _, n := range flapperNames {
			st := d.status(n)
			if st.Restarts < flapRestarts[n] || st.RestartsByKind[api.ExitCode] < flapByKind[n] {
				t.Errorf("%s: restarts went back across a daemon: %d (by kind exit %d), were %d (%d)",
					n, st.Restarts, st.RestartsByKind[api.ExitCode], flapRestarts[n], flapByKind[n])
			}
			flapRestarts[n], flapByKind[n] = st.Restarts, st.RestartsByKind[api.ExitCode]
		}
	}
	var lostLines, badExits int
	for _, n := range tickerNames {
		lostLines += lostTicks(d.tickerNumbers(n))
	}
	for _, n := range flapperNames {
		st := d.status(n)
		for _, e := range st.Exits {
			if e.Code != 3 || e.Signal != 0 || !strings.HasPrefix(e.Reason, "exited with code 3") {
				badExits++
				t.Errorf("%s: exit %+v", n, e)
			}
		}
		// Supervised by the last daemon too: it keeps restarting, and
		// the counters (the metrics') go on from where they were.
		d.waitFor(n, 30*time.Second, "restarted 3 more times", func(now *api.ServiceDetail) bool {
			return now.Restarts >= st.Restarts+3 && now.RestartsByKind[api.ExitCode] >= st.RestartsByKind[api.ExitCode]+3
		})
	}
	slices.Sort(adoptTimes)
	t.Logf("%d kill -9 cycles, %d services: daemon start to all %d tickers adopted: median %s, max %s",
		cycles, len(names), tickers, adoptTimes[len(adoptTimes)/2].Round(time.Millisecond), adoptTimes[len(adoptTimes)-1].Round(time.Millisecond))
	t.Logf("lost: %d sandboxes, %d log lines, %d exits misreported", lostSandboxes, lostLines, badExits)
	if lostSandboxes+lostLines+badExits != 0 {
		t.Fatalf("lost %d sandboxes, %d log lines, %d exits", lostSandboxes, lostLines, badExits)
	}
	d.stop()
}

// TestTornStateIsRecoveredFromWhatRuns: with the daemon dead, a sandbox's
// record and the service's saved state are corrupted (as a torn write or
// a bad disk would leave them); the next daemon reports it, rebuilds the
// record from what runs and adopts the sandbox: nothing is killed.
func TestTornStateIsRecoveredFromWhatRuns(t *testing.T) {
	d := newDaemon(t, `
  ticker:
    command: `+tickerCommand+`
`).start()
	before := d.waitRunning("ticker")
	d.kill9()
	for _, f := range []string{"sandboxes/ticker.json", "daemon/services/ticker.json"} {
		if err := os.WriteFile(filepath.Join(d.stateDir, f), []byte(`{"name": "tick`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	d.restart()
	st := d.waitRunning("ticker")
	if st.PID != before.PID || !alive(before.PID) {
		t.Fatalf("after corrupt state: pid %d, was %d (alive %v)", st.PID, before.PID, alive(before.PID))
	}
	log := d.log()
	for _, want := range []string{"sandbox record corrupt; rebuilt it from libcontainer's state", "saved service state unreadable"} {
		if !strings.Contains(log, want) {
			t.Errorf("daemon log lacks %q:\n%s", want, log)
		}
	}
	// The adopted sandbox is supervised as any other: stop works, and
	// everything goes.
	if r := d.ctl("stop", "ticker"); r.code != 0 {
		t.Fatalf("corral stop: %s", r)
	}
	d.waitFor("ticker", 15*time.Second, "stopped", func(st *api.ServiceDetail) bool { return st.State == "stopped" })
	if lost := lostTicks(d.tickerNumbers("ticker")); lost != 0 {
		t.Errorf("%d ticks lost", lost)
	}
	d.stop()
}
