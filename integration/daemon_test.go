package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

func TestDaemonRestartsKilledServiceAfterBackoff(t *testing.T) {
	d := newDaemon(t, `
  sleeper:
    command: ["/bin/sleep", "1000"]
    restart: {policy: always, backoff: {initial: 500ms, jitter: 0}}
`).start()
	first := d.waitRunning("sleeper")
	killedAt := time.Now()
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	next := d.waitFor("sleeper", 10*time.Second, "running again", func(st *api.ServiceDetail) bool {
		return st.State == "running" && st.PID != 0 && st.PID != first.PID
	})
	took := time.Since(killedAt)
	t.Logf("replacement running %s after SIGKILL (backoff 500ms)", took)
	// Never before its backoff; the delay the daemon decided is exactly
	// it. How much later the replacement runs is a sandbox's start, which
	// on a slow host (the emulated cgroup-v2 VM) takes seconds: not
	// bounded here (make bench measures it).
	if took < 500*time.Millisecond {
		t.Errorf("replacement after %s; want no sooner than the 500ms backoff", took)
	}
	if delays := nextStartDelays(t, d.log(), "sleeper"); len(delays) != 1 || delays[0] != 500*time.Millisecond {
		t.Errorf("delays the daemon decided: %v; want one of 500ms", delays)
	}
	if next.Restarts != 1 || len(next.Exits) != 1 || next.Exits[0].Reason != "killed by signal 9 (SIGKILL)" {
		t.Errorf("restarts %d, exits %+v; want 1 restart after a SIGKILL", next.Restarts, next.Exits)
	}
	d.stop()
}

// startTimes returns when each sandbox of a service started, from the
// gaps between its exits (each exit records how long the sandbox ran).
func restartGaps(exits []api.Exit) []time.Duration {
	var gaps []time.Duration
	for i := 1; i < len(exits); i++ {
		startedNext := exits[i].Time.Add(-exits[i].Ran)
		gaps = append(gaps, startedNext.Sub(exits[i-1].Time))
	}
	return gaps
}

// nextStartDelays are the restart delays the daemon decided for a
// service, in order, as its log says them.
func nextStartDelays(t *testing.T, log, name string) []time.Duration {
	t.Helper()
	re := regexp.MustCompile(`reason="[^"]*next start in ([0-9.]+[a-zµ]+)" service=` + regexp.QuoteMeta(name) + ` `)
	var out []time.Duration
	for _, m := range re.FindAllStringSubmatch(log, -1) {
		d, err := time.ParseDuration(m[1])
		if err != nil {
			t.Fatalf("delay %q in the log: %v", m[1], err)
		}
		out = append(out, d)
	}
	return out
}

// TestDaemonBackoffGrowsAndResets: the real daemon applies the backoff it
// decides (the exact delays are the unit tests'): they grow while runs
// fail fast, start again from initial after a run of reset_after, and no
// restart comes before its delay. A restart may come later than its delay
// by a sandbox's start, which on a slow host takes long: that is not
// bounded here.
func TestDaemonBackoffGrowsAndResets(t *testing.T) {
	d := newDaemon(t, `
  crasher:
    command: ["/bin/sh", "-c", "exit 1"]
    restart:
      policy: on-failure
      backoff: {initial: 100ms, multiplier: 2, max: 10s, jitter: 0, reset_after: 1s}
      crash_loop: {failures: 100, window: 1m}
  steady:
    command: ["/bin/sh", "-c", "sleep 1.3; exit 1"]
    restart:
      policy: on-failure
      backoff: {initial: 100ms, multiplier: 4, max: 10s, jitter: 0, reset_after: 1s}
`).start()
	st := d.waitFor("crasher", 30*time.Second, "restarted 5 times", func(st *api.ServiceDetail) bool { return len(st.Exits) >= 5 })
	gaps := restartGaps(st.Exits)
	delays := nextStartDelays(t, d.log(), "crasher")
	t.Logf("crasher: delays %v, restart gaps %v", delays, gaps)
	want := []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 800 * time.Millisecond}
	if len(delays) < len(want) || !slices.Equal(delays[:len(want)], want) {
		t.Errorf("delays %v, want %v first (exponential backoff)", delays, want)
	}
	for i, w := range want {
		if gaps[i] < w {
			t.Errorf("restart %d came %s after the exit, before its delay %s", i+1, gaps[i], w)
		}
	}
	// Each run of steady outlasts reset_after: the delay never grows.
	st = d.waitFor("steady", 30*time.Second, "restarted 3 times", func(st *api.ServiceDetail) bool { return len(st.Exits) >= 3 })
	gaps = restartGaps(st.Exits)
	delays = nextStartDelays(t, d.log(), "steady")
	t.Logf("steady: delays %v, restart gaps %v", delays, gaps)
	for i, dl := range delays {
		if dl != 100*time.Millisecond {
			t.Errorf("steady delay %d = %s, want the initial 100ms each time (reset after a stable run)", i, dl)
		}
	}
	for i, g := range gaps {
		if g < 100*time.Millisecond {
			t.Errorf("steady restart %d came %s after the exit, before its delay", i+1, g)
		}
	}
	d.stop()
}

func TestDaemonOnFailureGivesUpAndAlwaysRestartsCleanExit(t *testing.T) {
	d := newDaemon(t, `
  limited:
    command: ["/bin/sh", "-c", "exit 3"]
    restart: {policy: "on-failure:3", backoff: {initial: 50ms, jitter: 0}}
  finisher:
    command: ["/bin/sh", "-c", "sleep 0.1; exit 0"]
    restart: {policy: always, backoff: {initial: 50ms, jitter: 0}}
  oneshot:
    command: ["/bin/true"]
    restart: on-failure
`).start()
	st := d.waitFor("limited", 15*time.Second, "failed", func(st *api.ServiceDetail) bool { return st.State == "failed" })
	if st.Restarts != 3 || len(st.Exits) != 4 || !strings.Contains(st.Message, "gave up after 3 restarts (restart policy on-failure:3)") {
		t.Errorf("on-failure:3: restarts %d, exits %d, message %q", st.Restarts, len(st.Exits), st.Message)
	}
	d.waitFor("finisher", 10*time.Second, "restarted after clean exits", func(st *api.ServiceDetail) bool {
		return st.Restarts >= 3 && len(st.Exits) > 0 && st.Exits[0].Reason == "exited with code 0"
	})
	st = d.waitFor("oneshot", 10*time.Second, "stopped", func(st *api.ServiceDetail) bool { return st.State == "stopped" })
	if st.Restarts != 0 {
		t.Errorf("on-failure restarted a clean exit %d times", st.Restarts)
	}
	d.stop()
}

func TestDaemonCommandNotFoundFailsAtOnce(t *testing.T) {
	d := newDaemon(t, `
  broken:
    command: ["/no/such/program"]
    restart: always
`).start()
	st := d.waitFor("broken", 10*time.Second, "failed", func(st *api.ServiceDetail) bool { return st.State == "failed" })
	if st.Restarts != 0 || !strings.Contains(st.Message, "command not found") {
		t.Errorf("restarts %d, message %q; want failed at once, saying the command was not found", st.Restarts, st.Message)
	}
	if n := len(st.Exits); n != 1 || st.Exits[0].Kind != api.ExitStartFailed || st.Exits[0].Code != 127 ||
		!strings.Contains(st.Exits[0].Reason, "failed to start") || !strings.Contains(st.Exits[0].Reason, "/no/such/program") {
		t.Errorf("exits %+v; want one start_failed exit naming the command", st.Exits)
	}
	texts := []string{st.Message}
	for _, e := range st.Exits {
		texts = append(texts, e.Reason)
	}
	for _, said := range texts {
		if n := strings.Count(said, "failed to start"); n != 1 {
			t.Errorf("%q says 'failed to start' %d times, want once", said, n)
		}
	}
	time.Sleep(500 * time.Millisecond)
	if st := d.status("broken"); st.Restarts != 0 || st.State != "failed" {
		t.Errorf("a missing command was retried: %+v", st.Service)
	}
	d.stop()
}

func TestDaemonStopKillsTermIgnoringServiceAfterTimeout(t *testing.T) {
	d := newDaemon(t, `
  stubborn:
    command: ["/bin/sh", "-c", "trap '' TERM; echo trapped; while :; do sleep 0.05; done"]
    stop: {signal: SIGTERM, timeout: 1s}
    restart: always
`).start()
	d.waitLogged("stubborn", "trapped") // a TERM before the trap would end it
	began := time.Now()
	if r := d.ctl("stop", "stubborn"); r.code != 0 {
		t.Fatalf("corral stop: %s", r)
	}
	st := d.waitFor("stubborn", 10*time.Second, "stopped", func(st *api.ServiceDetail) bool { return st.State == "stopped" })
	took := time.Since(began)
	if took < time.Second || took > 4*time.Second {
		t.Errorf("stopped after %s; want just after the 1s timeout", took)
	}
	if st.Message != "killed after the stop timeout (1s)" || len(sandboxPidsOf(t, d.cgroup, "stubborn")) != 0 {
		t.Errorf("message %q; want the kill after the timeout reported, and no process left", st.Message)
	}
	if e := st.Exits[len(st.Exits)-1]; e.Kind != api.ExitStopTimeout || !strings.HasPrefix(e.Reason, "killed after the stop timeout (1s)") {
		t.Errorf("exit %+v; want it classed as killed after the stop timeout", e)
	}
	// always does not undo an operator's stop.
	time.Sleep(300 * time.Millisecond)
	if st := d.status("stubborn"); st.State != "stopped" {
		t.Errorf("state %s after an operator stop under restart: always", st.State)
	}
	if r := d.ctl("start", "stubborn"); r.code != 0 {
		t.Fatalf("corral start: %s", r)
	}
	d.waitRunning("stubborn")
	d.stop()
}

// TestOperatorStartsAreNotRestarts: the operator's restart, stop and
// start leave the RESTARTS of ps at 0; a restart of the policy counts.
func TestOperatorStartsAreNotRestarts(t *testing.T) {
	d := newDaemon(t, `
  web:
    command: ["/bin/sleep", "1000"]
    restart: always
    stop: {signal: SIGKILL, timeout: 1s}
`).start()
	first := d.waitRunning("web").PID
	if r := d.ctl("restart", "web"); r.code != 0 {
		t.Fatalf("corral restart: %s", r)
	}
	second := d.waitFor("web", 10*time.Second, "running again", func(st *api.ServiceDetail) bool {
		return st.State == "running" && st.PID != 0 && st.PID != first
	}).PID
	for _, verb := range []string{"stop", "start"} {
		if r := d.ctl(verb, "web"); r.code != 0 {
			t.Fatalf("corral %s: %s", verb, r)
		}
	}
	st := d.waitFor("web", 10*time.Second, "running again", func(st *api.ServiceDetail) bool {
		return st.State == "running" && st.PID != 0 && st.PID != second
	})
	if st.Restarts != 0 {
		t.Errorf("restarts %d after the operator's restart, stop and start; want 0", st.Restarts)
	}
	if r := d.ctl("ps"); !strings.Contains(r.stdout, "running") || strings.Fields(strings.Split(r.stdout, "\n")[1])[4] != "0" {
		t.Errorf("ps: want web running with 0 restarts:\n%s", r.stdout)
	}
	// The policy's restart after the service ends counts.
	if err := syscall.Kill(st.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	d.waitFor("web", 10*time.Second, "restarted by its policy", func(st *api.ServiceDetail) bool {
		return st.State == "running" && st.Restarts == 1
	})
	d.stop()
}

func sandboxPidsOf(t *testing.T, parent, name string) []int {
	t.Helper()
	pids, err := host.Procs(filepath.Join(parent, name))
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

func TestDaemonUnlessStoppedSurvivesDaemonRestart(t *testing.T) {
	d := newDaemon(t, `
  kept:
    command: ["/bin/sleep", "1000"]
    restart: unless-stopped
  other:
    command: ["/bin/sleep", "1000"]
    restart: always
`).start()
	d.waitRunning("kept")
	if r := d.ctl("stop", "kept", "other"); r.code != 0 {
		t.Fatalf("corral stop: %s", r)
	}
	d.waitFor("kept", 15*time.Second, "stopped", func(st *api.ServiceDetail) bool { return st.State == "stopped" })
	d.stop()

	d.start()
	d.waitRunning("other") // always: back on a daemon start
	time.Sleep(300 * time.Millisecond)
	if st := d.status("kept"); st.State != "stopped" {
		t.Fatalf("unless-stopped service is %s after a daemon restart; want it to stay stopped", st.State)
	}
	if r := d.ctl("start", "kept"); r.code != 0 {
		t.Fatalf("corral start: %s", r)
	}
	d.waitRunning("kept")
	d.stop()
	d.start()
	d.waitRunning("kept") // the operator started it again: it runs after a restart
	d.stop()
}

func TestDaemonDependencyOrderOnStartAndStop(t *testing.T) {
	shared := sharedDir(t)
	order := filepath.Join(shared, "order")
	// Each sandbox is a host user of its own (its ID block): the file
	// they all append to is open to all of them.
	if err := os.WriteFile(order, nil, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(order, 0o666); err != nil {
		t.Fatal(err)
	}
	svc := func(name, deps string) string {
		return `
  ` + name + `:
    command: ["/bin/sh", "-c", "trap 'echo stop-` + name + ` >> /shared/order; exit 0' TERM; echo start-` + name + ` >> /shared/order; while :; do sleep 0.05; done"]
    mounts: ["` + shared + `:/shared:rw"]
    depends_on: [` + deps + `]`
	}
	d := newDaemon(t, svc("c", "b")+svc("b", "a")+svc("a", "")+svc("solo", "")+"\n").start()
	for _, n := range []string{"a", "b", "c", "solo"} {
		d.waitRunning(n)
	}
	// Running means the command was forked, not that the shell has set
	// its trap yet: a stop before that kills it without a word. Each sets
	// its trap, then writes its start line: wait for all four.
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(order)
		if strings.Count(string(data), "start-") == 4 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not every service wrote its start line: %q", data)
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.stop()
	data, err := os.ReadFile(order)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Fields(string(data)) {
		if l != "start-solo" && l != "stop-solo" {
			lines = append(lines, l)
		}
	}
	want := "start-a start-b start-c stop-c stop-b stop-a"
	if got := strings.Join(lines, " "); got != want {
		t.Errorf("order %q, want %q", got, want)
	}
	if !strings.Contains(string(data), "stop-solo") {
		t.Errorf("the independent service was not stopped gracefully: %q", data)
	}
}

func TestDaemonReloadAppliesOnlyTheDifference(t *testing.T) {
	base := `
  keep:
    command: ["/bin/sleep", "1000"]
  gone:
    command: ["/bin/sleep", "1000"]
  changed:
    command: ["/bin/sleep", "1000"]
    env: {VERSION: "1"}
  limits:
    command: ["/bin/sleep", "1000"]
    resources: {memory: 64M}
`
	d := newDaemon(t, base).start()
	pids := map[string]int{}
	for _, n := range []string{"keep", "gone", "changed", "limits"} {
		pids[n] = d.waitRunning(n).PID
	}
	// A no-op reload touches nothing.
	if r := d.ctl("reload"); r.code != 0 {
		t.Fatalf("no-op reload: %s", r)
	}
	next := `
  keep:
    command: ["/bin/sleep", "1000"]
  changed:
    command: ["/bin/sleep", "1000"]
    env: {VERSION: "2"}
  limits:
    command: ["/bin/sleep", "1000"]
    resources: {memory: 128M}
  added:
    command: ["/bin/sleep", "1000"]
`
	d.write(next)
	r := d.ctl("reload", "--dry-run")
	for _, want := range []string{"add:", "added", "remove:", "gone", "restart:", "changed", "update limits in place:", "limits", "unchanged:", "keep"} {
		wantContains(t, "reload --dry-run", r.stdout, want)
	}
	if st := d.status("gone"); st.State != "running" {
		t.Fatalf("dry run changed something: gone is %s", st.State)
	}
	if r := d.ctl("reload"); r.code != 0 {
		t.Fatalf("reload: %s", r)
	}
	d.waitRunning("added")
	if st := d.status("keep"); st.PID != pids["keep"] {
		t.Errorf("unchanged service restarted: pid %d -> %d", pids["keep"], st.PID)
	}
	if st := d.status("limits"); st.PID != pids["limits"] {
		t.Errorf("limit change restarted the service: pid %d -> %d", pids["limits"], st.PID)
	}
	limit, err := os.ReadFile(filepath.Join(host.Mounts["memory"], d.cgroup, "limits", map[bool]string{true: "memory.max", false: "memory.limit_in_bytes"}[host.Mode.String() == "cgroup v2"]))
	if err != nil || strings.TrimSpace(string(limit)) != "134217728" {
		t.Errorf("memory limit after reload = %q (%v), want 134217728 set in place", limit, err)
	}
	d.waitFor("changed", 10*time.Second, "restarted with the new config", func(st *api.ServiceDetail) bool {
		return st.State == "running" && st.PID != 0 && st.PID != pids["changed"]
	})
	if _, err := api.NewClient(filepath.Join(d.stateDir, "corral.sock")).Status(t.Context(), "gone"); err == nil {
		t.Error("removed service still known to the daemon")
	}
	if len(sandboxPidsOf(t, d.cgroup, "gone")) != 0 {
		t.Error("removed service's processes still run")
	}
	d.stop()
}

func TestDaemonInvalidReloadKeepsEverythingRunning(t *testing.T) {
	d := newDaemon(t, `
  web:
    command: ["/bin/sleep", "1000"]
`).start()
	pid := d.waitRunning("web").PID
	d.write(`
  web:
    command: ["/bin/sleep", "1000"]
    resources: {memory: 64X}
    colour: blue
`)
	r := d.ctl("reload")
	if r.code == 0 {
		t.Fatalf("invalid reload accepted: %s", r)
	}
	for _, want := range []string{"corral.yaml:8", "services.web.resources.memory", `invalid size "64X"`, "colour", "running configuration is unchanged"} {
		wantContains(t, "reload error", r.stderr, want)
	}
	if st := d.status("web"); st.PID != pid || st.State != "running" {
		t.Errorf("after a refused reload: %s pid %d, want running pid %d", st.State, st.PID, pid)
	}
	d.stop()
}

func TestDaemonLogs(t *testing.T) {
	d := newDaemon(t, `
  talker:
    command: ["/bin/sh", "-c", "echo one; echo two >&2; echo three; while :; do sleep 0.2; echo tick; done"]
`).start()
	d.waitRunning("talker")
	time.Sleep(300 * time.Millisecond)
	r := d.ctl("logs", "--tail", "100", "talker")
	if r.code != 0 {
		t.Fatalf("corral logs: %s", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	// stdout and stderr are separate pipes: their relative order is not
	// kept, each stream's own order is.
	if len(lines) < 3 || !strings.Contains(r.stdout, " stderr two\n") ||
		!strings.HasSuffix(lines[0], " stdout one") || strings.Index(r.stdout, "stdout three") < strings.Index(r.stdout, "stdout one") {
		t.Fatalf("logs:\n%s", r.stdout)
	}
	if _, err := time.Parse(time.RFC3339Nano, strings.Fields(lines[0])[0]); err != nil {
		t.Errorf("log line without a timestamp: %q", lines[0])
	}
	if r := d.ctl("logs", "--tail", "1", "talker"); strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("--tail 1 printed:\n%s", r.stdout)
	}
	if r := d.ctl("logs", "nosuch"); r.code == 0 || !strings.Contains(r.stderr, `"nosuch"`) {
		t.Errorf("logs of an unknown service: %s", r)
	}
	d.stop()
}

// TestLogsFollowStartsWithARecentTail: `logs -f` prints the last 10 lines
// of the history, then follows (as journalctl -f), unless --tail says.
func TestLogsFollowStartsWithARecentTail(t *testing.T) {
	d := newDaemon(t, `
  counter:
    command: ["/bin/sh", "-c", "i=1; while [ $i -le 30 ]; do echo line$i; i=$((i+1)); done; sleep 1000"]
`).start()
	d.waitRunning("counter")
	d.waitLogged("counter", "line30")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cmd := exec.CommandContext(ctx, corralBin, "--state-dir", d.stateDir, "logs", "-f", "counter")
	var out syncBuffer
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), " line30\n") {
		if time.Now().After(deadline) {
			t.Fatalf("logs -f printed no line30 within 10s:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	_ = cmd.Wait()
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 10 || !strings.HasSuffix(lines[0], " line21") {
		t.Errorf("logs -f printed %d lines before following, from %q; want the last 10, from line21", len(lines), lines[0])
	}
	d.stop()
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestValidateReportsEveryError(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte(`services:
  a:
    command: ["/bin/true"]
    resources: {memory: lots}
    depends_on: [b]
  b:
    command: ["/bin/true"]
    restart: sometimes
    depends_on: [a]
  c:
    command: "/bin/true"
`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := corral(t, "validate", bad)
	if r.code != 1 {
		t.Fatalf("validate: want exit 1; got %s", r)
	}
	for _, want := range []string{"bad.yaml:4", "resources.memory", "bad.yaml:8", "restart", "a -> b -> a", "bad.yaml:11", "command"} {
		wantContains(t, "validate", r.stderr, want)
	}
	good := filepath.Join("..", "examples", "corral.yaml")
	if r := corral(t, "validate", good); r.code != 0 {
		t.Errorf("validate examples/corral.yaml: %s", r)
	}
}

// TestValidateIssue12: what a new user saw accepted or reported twice
// is each one error naming the file, the place and the field, and what is
// allowed.
func TestValidateIssue12(t *testing.T) {
	file := filepath.Join(t.TempDir(), "corral.yaml")
	if err := os.WriteFile(file, []byte(`services:
  a:
    command: ["/bin/true"]
    stop: {timeout: -1s}
  b:
    command: ["/bin/true"]
    depends_on: [{service: a, condition: healthy}]
  c:
    command: ["/bin/true"]
    health: {tcp: {port: 99999}}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	r := corral(t, "validate", file)
	want := []string{
		file + ":4:21: services.a.stop.timeout: duration -1s is not longer than 0: use a duration such as 10s",
		file + ":7:18: services.b.depends_on[0]: condition healthy, but a has no health check and no notify: give it one, or use condition started",
		file + ":10:26: services.c.health.tcp.port: 99999 is not a port: use 1 to 65535",
	}
	if got := strings.Split(strings.TrimSpace(r.stderr), "\n"); r.code != 1 || !slices.Equal(got, want) {
		t.Errorf("validate: got %s\nwant exit 1 and exactly:\n%s", r, strings.Join(want, "\n"))
	}
}

// TestClientExitCodes: the client's exit codes as the README gives them:
// 3 not found, 4 no daemon, 125 a usage error, 1 a caller who is not root.
func TestClientExitCodes(t *testing.T) {
	d := newDaemon(t, `
  s:
    command: ["/bin/sleep", "1000"]
`).start()
	d.waitRunning("s")
	nobody := func(args ...string) result {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, corralBin, append([]string{"--state-dir", d.stateDir}, args...)...)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		return finish(t, cmd)
	}
	for _, c := range []struct {
		what string
		r    result
		code int
		want string
	}{
		{"status of an unknown service", d.ctl("status", "nope"), 3, `not found: service "nope"`},
		{"ps without a daemon", corral(t, "--state-dir", filepath.Join(t.TempDir(), "none"), "ps"), 4, "cannot reach corral daemon"},
		{"logs without its argument", d.ctl("logs"), 125, "accepts 1 arg(s), received 0"},
		{"a bad flag", d.ctl("ps", "--bogus"), 125, "ps: unknown flag: --bogus"},
		{"ps by a caller who is not root", nobody("ps"), 1, "permission denied (only root may control it)"},
	} {
		if c.r.code != c.code || !strings.Contains(c.r.stderr, c.want) {
			t.Errorf("%s: got %s\nwant exit %d saying %q", c.what, c.r, c.code, c.want)
		}
	}
	d.stop()
}

func TestSecondDaemonOnSameStateDirRefused(t *testing.T) {
	d := newDaemon(t, `
  s:
    command: ["/bin/sleep", "1000"]
`).start()
	d.waitRunning("s")
	r := corral(t, "--state-dir", d.stateDir, "daemon", "--config", d.config)
	if r.code == 0 || !strings.Contains(r.stderr, "another corral daemon is using this state dir") {
		t.Errorf("second daemon: %s", r)
	}
	d.waitRunning("s")
	d.stop()
}
