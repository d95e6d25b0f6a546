package service_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/runtime/service"
	"github.com/corral-dev/corral/runtime/service/servicetest"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// The actor's tests drive one service over a fake sandbox, a fake clock
// and a fixed jitter: each restart's delay is known to the nanosecond, and
// nothing sleeps. Each waits on what the actor publishes (its events),
// never on time.

// jitter is the fixed random draw: with jitter j a delay d becomes
// d × (1 + j × (2×0.75 − 1)) = d × (1 + j/2).
const jitter = 0.75

type harness struct {
	t        *testing.T
	clock    *clockwork.FakeClock
	launcher *servicetest.Launcher
	store    *servicetest.Store
	events   *servicetest.Events
	alerts   *servicetest.Alerts
	probes   *servicetest.Probes
	actor    *service.Actor
	cancel   context.CancelFunc
	ended    chan struct{}
}

func newHarness(t *testing.T) *harness {
	clock := clockwork.NewFakeClockAt(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	return &harness{
		t: t, clock: clock, launcher: servicetest.NewLauncher(clock), store: servicetest.NewStore(),
		events: servicetest.NewEvents(), alerts: servicetest.NewAlerts(), probes: servicetest.NewProbes(),
	}
}

func (h *harness) deps() service.Deps {
	log := logrus.New()
	log.Out = io.Discard // the events say what happened
	return service.Deps{
		Launcher: h.launcher, Store: h.store, Events: h.events, Alerts: h.alerts,
		Clock: h.clock, Rand: func() float64 { return jitter }, Probe: h.probes.Probe, Log: log,
	}
}

// unit parses one service of a service file.
func unit(t *testing.T, yaml string) *spec.Unit {
	t.Helper()
	cfg, err := spec.Parse("test.yaml", []byte("services:\n  svc:\n"+yaml))
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Units[0]
}

// run starts the actor's goroutine; kill9 ends it as a daemon killed
// would (leaving the sandbox as it is).
func (h *harness) run(a *service.Actor) {
	ctx, cancel := context.WithCancel(context.Background())
	h.actor, h.cancel, h.ended = a, cancel, make(chan struct{})
	go func() {
		defer close(h.ended)
		a.Run(ctx)
	}()
	h.t.Cleanup(h.kill9)
}

func (h *harness) kill9() {
	h.cancel()
	<-h.ended
}

// start makes a stopped service of u, runs it and starts it; it returns
// the first sandbox, running.
func (h *harness) start(u *spec.Unit) *servicetest.Sandbox {
	h.run(service.New(u, h.t.TempDir(), service.Saved{}, h.deps()))
	if err := h.actor.Send(context.Background(), supervisor.EvStart, false); err != nil {
		h.t.Fatal(err)
	}
	sb := h.launcher.Next(h.t)
	h.waitTo(supervisor.Running)
	return sb
}

func (h *harness) waitTo(st supervisor.State) api.Event {
	h.t.Helper()
	return h.events.WaitTo(h.t, "svc", string(st))
}

// fail ends sb with exit code 1 and waits for the state that follows.
func (h *harness) fail(sb *servicetest.Sandbox, then supervisor.State) api.Event {
	h.t.Helper()
	sb.Exit(1)
	return h.waitTo(then)
}

// restartsAfter checks that no sandbox is launched before d has passed,
// and that one is at d; it returns it, running.
func (h *harness) restartsAfter(d time.Duration) *servicetest.Sandbox {
	h.t.Helper()
	h.clock.Advance(d - time.Nanosecond)
	h.launcher.None(h.t)
	if got := h.actor.Snapshot().Rec.State; got != supervisor.Backoff && got != supervisor.CrashLoop {
		h.t.Fatalf("state %s before the delay ran out", got)
	}
	h.clock.Advance(time.Nanosecond)
	sb := h.launcher.Next(h.t)
	h.waitTo(supervisor.Running)
	return sb
}

func scaled(d time.Duration, j float64) time.Duration {
	return time.Duration(float64(d) * (1 + j*(2*jitter-1)))
}

// TestBackoffGrowsWithJitterAndResetsAfterAStableRun: always restarts a
// failing service after initial × multiplier^n (capped at max), spread by
// the jitter, and starts again from initial after a run of reset_after.
func TestBackoffGrowsWithJitterAndResetsAfterAStableRun(t *testing.T) {
	h := newHarness(t)
	sb := h.start(unit(t, `    command: [/bin/true]
    restart:
      policy: always
      backoff: {initial: 1s, max: 4s, multiplier: 2, jitter: 0.5, reset_after: 1m}
      crash_loop: {failures: 100, window: 1m}
`))
	for i, base := range []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
		ev := h.fail(sb, supervisor.Backoff)
		want := scaled(base, 0.5)
		if next := h.actor.Snapshot().Rec.NextAttempt; next.Sub(h.clock.Now()) != want {
			t.Fatalf("restart %d: next attempt in %s, want %s (%s)", i+1, next.Sub(h.clock.Now()), want, ev.Reason)
		}
		sb = h.restartsAfter(want)
	}
	// A run as long as reset_after was stable: the delay starts over.
	h.clock.Advance(time.Minute)
	h.fail(sb, supervisor.Backoff)
	h.restartsAfter(scaled(time.Second, 0.5))
	v := h.actor.Snapshot()
	if v.Rec.Restarts != 5 || v.Restarts[api.ExitCode] != 5 {
		t.Errorf("restarts %d, by kind %v; want 5 of kind %s", v.Rec.Restarts, v.Restarts, api.ExitCode)
	}
}

// TestRestartPolicies: which ends each policy restarts, and the state it
// leaves the others in.
func TestRestartPolicies(t *testing.T) {
	for _, tc := range []struct {
		policy  string
		code    int
		restart bool
		then    supervisor.State
	}{
		{"no", 0, false, supervisor.Stopped},
		{"no", 1, false, supervisor.Failed},
		{"on-failure", 0, false, supervisor.Stopped},
		{"on-failure", 1, true, supervisor.Backoff},
		{"always", 0, true, supervisor.Backoff},
		{"unless-stopped", 0, true, supervisor.Backoff},
	} {
		t.Run(fmt.Sprintf("%s exit %d", tc.policy, tc.code), func(t *testing.T) {
			h := newHarness(t)
			sb := h.start(unit(t, "    command: [/bin/true]\n    restart: {policy: "+tc.policy+", backoff: {initial: 1s, multiplier: 1, jitter: 0}}\n"))
			sb.Exit(tc.code)
			h.waitTo(tc.then)
			if tc.restart {
				h.restartsAfter(time.Second)
				return
			}
			h.clock.Advance(time.Hour)
			h.launcher.None(t)
		})
	}
}

// TestOnFailureGivesUpAfterN: on-failure:2 restarts twice, then the
// service is failed, with the reason.
func TestOnFailureGivesUpAfterN(t *testing.T) {
	h := newHarness(t)
	sb := h.start(unit(t, "    command: [/bin/true]\n    restart: {policy: \"on-failure:2\", backoff: {initial: 1s, multiplier: 1, jitter: 0}}\n"))
	for range 2 {
		h.fail(sb, supervisor.Backoff)
		sb = h.restartsAfter(time.Second)
	}
	ev := h.fail(sb, supervisor.Failed)
	if want := "gave up after 2 restarts"; !strings.Contains(ev.Reason, want) {
		t.Errorf("reason %q, want %q in it", ev.Reason, want)
	}
	h.clock.Advance(time.Hour)
	h.launcher.None(t)
}

// TestCrashLoopRetriesAtTheCappedDelay: failures as many as
// crash_loop.failures within its window make a crash loop, retried at
// backoff.max, and alerted.
func TestCrashLoopRetriesAtTheCappedDelay(t *testing.T) {
	h := newHarness(t)
	sb := h.start(unit(t, `    command: [/bin/true]
    restart:
      policy: always
      backoff: {initial: 1s, max: 30s, multiplier: 1, jitter: 0}
      crash_loop: {failures: 3, window: 1m}
`))
	for range 2 {
		h.fail(sb, supervisor.Backoff)
		sb = h.restartsAfter(time.Second)
	}
	ev := h.fail(sb, supervisor.CrashLoop)
	if !strings.Contains(ev.Reason, "crash loop: 3 failures within 1m0s") {
		t.Errorf("reason %q", ev.Reason)
	}
	h.alerts.WaitProblem(t, spec.AlertCrashLoop)
	h.restartsAfter(30 * time.Second)
}

// TestStartFailures: a start error worth retrying is a failed run (backoff,
// counted as a start failure); one retrying cannot fix (command not found)
// fails the service at once, with the code 127 of a shell.
func TestStartFailures(t *testing.T) {
	h := newHarness(t)
	u := unit(t, "    command: [/bin/true]\n    restart: {policy: always, backoff: {initial: 1s, multiplier: 1, jitter: 0}}\n")
	h.launcher.Fail("svc", servicetest.ErrLaunch)
	h.run(service.New(u, t.TempDir(), service.Saved{}, h.deps()))
	if err := h.actor.Send(context.Background(), supervisor.EvStart, true); err != nil {
		t.Fatal(err)
	}
	h.waitTo(supervisor.Backoff)
	sb := h.restartsAfter(time.Second)
	v := h.actor.Snapshot()
	if len(v.Exits) != 1 || v.Exits[0].Kind != api.ExitStartFailed || v.Restarts[api.ExitStartFailed] != 1 {
		t.Fatalf("exits %+v, restarts %v", v.Exits, v.Restarts)
	}

	h.launcher.Fail("svc", fmt.Errorf("start: %w", sandbox.ErrCommandNotFound))
	h.fail(sb, supervisor.Backoff)
	h.clock.Advance(2 * time.Second)
	ev := h.waitTo(supervisor.Failed)
	v = h.actor.Snapshot()
	last := v.Exits[len(v.Exits)-1]
	if last.Code != sandbox.CodeNotFound || last.Kind != api.ExitStartFailed || !strings.Contains(ev.Reason, "failed to start") {
		t.Errorf("last exit %+v, reason %q", last, ev.Reason)
	}
	h.clock.Advance(time.Hour)
	h.launcher.None(t)
}

// TestStopTimeoutKills: a sandbox that outlives the stop signal is killed
// after stop.timeout, and its exit says so.
func TestStopTimeoutKills(t *testing.T) {
	h := newHarness(t)
	h.launcher.Prepare(func(sb *servicetest.Sandbox) { sb.Ignore(syscall.SIGTERM) })
	sb := h.start(unit(t, "    command: [/bin/true]\n    stop: {signal: SIGTERM, timeout: 5s}\n"))
	if err := h.actor.Send(context.Background(), supervisor.EvStop, true); err != nil {
		t.Fatal(err)
	}
	h.waitTo(supervisor.Stopping)
	h.clock.Advance(5*time.Second - time.Nanosecond)
	if sb.Killed() {
		t.Fatal("killed before the stop timeout")
	}
	h.clock.Advance(time.Nanosecond)
	h.waitTo(supervisor.Stopped)
	v := h.actor.Snapshot()
	if !sb.Killed() || !sb.Destroyed() || v.Exits[0].Kind != api.ExitStopTimeout || v.Rec.Desired != supervisor.Down {
		t.Errorf("killed %v destroyed %v, exit %+v, desired %s", sb.Killed(), sb.Destroyed(), v.Exits[0], v.Rec.Desired)
	}
	if sigs := sb.Signals(); !slices.Equal(sigs, []os.Signal{syscall.SIGTERM}) {
		t.Errorf("signals %v", sigs)
	}
}

// TestOperatorRestartIsNotCounted: corral restart and start are the
// operator's: they do not count as restarts (as docker's RestartCount).
func TestOperatorRestartIsNotCounted(t *testing.T) {
	h := newHarness(t)
	h.start(unit(t, "    command: [/bin/true]\n"))
	if err := h.actor.Send(context.Background(), supervisor.EvRestart, true); err != nil {
		t.Fatal(err)
	}
	h.launcher.Next(t)
	h.waitTo(supervisor.Running)
	v := h.actor.Snapshot()
	if v.Rec.Restarts != 0 || len(v.Restarts) != 0 || v.Exits[0].Kind != api.ExitOperator {
		t.Errorf("restarts %d %v, exits %+v", v.Rec.Restarts, v.Restarts, v.Exits)
	}
}

// TestHealthDrivenRestart: a service with a check is starting until the
// check passes, running once it does, and after retries failures in a
// row is stopped and restarted, the exit and the restart of kind
// unhealthy, and alerted.
func TestHealthDrivenRestart(t *testing.T) {
	h := newHarness(t)
	u := unit(t, `    command: [/bin/true]
    restart: {policy: always, backoff: {initial: 1s, multiplier: 1, jitter: 0}}
    health:
      exec: [/bin/check]
      interval: 1h
      timeout: 1h
      retries: 2
      start_period: 0s
      on_unhealthy: restart
`)
	h.run(service.New(u, t.TempDir(), service.Saved{}, h.deps()))
	if err := h.actor.Send(context.Background(), supervisor.EvStart, false); err != nil {
		t.Fatal(err)
	}
	sb := h.launcher.Next(t)
	servicetest.WaitView(t, h.actor, "waiting for the check", func(v service.View) bool { return v.Rec.AwaitingReady() })
	h.probes.Give(t, "svc", true)
	h.waitTo(supervisor.Running)
	if v := h.actor.Snapshot(); v.Health != service.HealthHealthy {
		t.Fatalf("health %q", v.Health)
	}
	for range 2 {
		h.clock.Advance(time.Hour)
		h.probes.Give(t, "svc", false)
	}
	h.waitTo(supervisor.Stopping)
	h.alerts.WaitProblem(t, spec.AlertUnhealthy)
	h.waitTo(supervisor.Backoff)
	h.clock.Advance(time.Second)
	h.launcher.Next(t)
	servicetest.WaitView(t, h.actor, "the new sandbox waiting for its check", func(v service.View) bool { return v.Rec.AwaitingReady() })
	h.probes.Give(t, "svc", true)
	h.waitTo(supervisor.Running)
	v := h.actor.Snapshot()
	if v.Exits[0].Kind != api.ExitUnhealthy || v.Restarts[api.ExitUnhealthy] != 1 || v.Rec.Restarts != 1 || !sb.Destroyed() {
		t.Errorf("exit %+v, restarts %d %v", v.Exits[0], v.Rec.Restarts, v.Restarts)
	}
}

// TestNotifyReadiness: a notify service is starting until its sandbox
// says READY=1; STATUS= is shown as it comes.
func TestNotifyReadiness(t *testing.T) {
	h := newHarness(t)
	u := unit(t, "    command: [/bin/true]\n    notify: true\n")
	h.run(service.New(u, t.TempDir(), service.Saved{}, h.deps()))
	if err := h.actor.Send(context.Background(), supervisor.EvStart, false); err != nil {
		t.Fatal(err)
	}
	sb := h.launcher.Next(t)
	h.waitTo(supervisor.Starting)
	sb.Say(sandbox.Note{Status: "loading", HasStatus: true})
	servicetest.WaitView(t, h.actor, "status loading", func(v service.View) bool { return v.NotifyStatus == "loading" })
	if v := h.actor.Snapshot(); !v.Rec.AwaitingReady() {
		t.Fatalf("state %s, awaiting ready %v after a STATUS only", v.Rec.State, v.Rec.AwaitingReady())
	}
	sb.Say(sandbox.Note{Ready: true})
	h.waitTo(supervisor.Running)
}

// TestOOMKillsOfAChildAreCountedAsTheyHappen: the OOM killer killing a
// child of a sandbox that runs on is counted, saved and alerted then; the
// sandbox's end adds only the kills not counted yet.
func TestOOMKillsOfAChildAreCountedAsTheyHappen(t *testing.T) {
	h := newHarness(t)
	sb := h.start(unit(t, "    command: [/bin/true]\n    restart: {policy: always, backoff: {initial: 1s, multiplier: 1, jitter: 0}}\n"))
	sb.OOM(2)
	o := h.alerts.WaitProblem(t, spec.AlertOOM)
	if !strings.Contains(o.Reason, "killed 2 processes") {
		t.Errorf("alert reason %q", o.Reason)
	}
	v := servicetest.WaitView(t, h.actor, "2 OOM kills", func(v service.View) bool { return v.OOMKills == 2 })
	if v.Rec.State != supervisor.Running || v.PID == 0 {
		t.Errorf("state %s pid %d: the sandbox runs on", v.Rec.State, v.PID)
	}
	if saved, _ := h.store.Load("svc"); saved.OOMKills != 2 || saved.SandboxOOMKills != 2 {
		t.Errorf("saved %+v", saved)
	}
	sb.End(sandbox.Exit{Signal: syscall.SIGKILL, Stats: cgroup.Stats{OOMKills: 3}})
	h.waitTo(supervisor.Backoff)
	if v := h.actor.Snapshot(); v.OOMKills != 3 || v.Exits[0].Kind != api.ExitOOM {
		t.Errorf("OOM kills %d, exit %+v", v.OOMKills, v.Exits[0])
	}
}

// TestHistorySurvivesKill9AndAdoption: a daemon killed with kill -9
// leaves the sandbox running and its saved state; the next one adopts the
// sandbox with the restart counts and the last exits as they were, and
// counts on from there.
func TestHistorySurvivesKill9AndAdoption(t *testing.T) {
	h := newHarness(t)
	u := unit(t, "    command: [/bin/true]\n    restart: {policy: always, backoff: {initial: 1s, multiplier: 1, jitter: 0}}\n")
	sb := h.start(u)
	for range 3 {
		h.fail(sb, supervisor.Backoff)
		sb = h.restartsAfter(time.Second)
	}
	before := h.actor.Snapshot()
	h.kill9()
	if sb.Destroyed() || len(sb.Signals()) != 0 {
		t.Fatal("kill -9 of the daemon touched the sandbox")
	}

	saved, err := h.store.Load("svc")
	if err != nil {
		t.Fatal(err)
	}
	h.run(service.Adopt(u, t.TempDir(), saved, service.Adoption{Sandbox: sb, Running: true}, h.deps()))
	after := h.actor.Snapshot()
	if after.Rec.State != supervisor.Running || after.Rec.Restarts != 3 || after.Restarts[api.ExitCode] != 3 ||
		len(after.Exits) != 3 || !after.Exits[2].Time.Equal(before.Exits[2].Time) || after.PID != before.PID {
		t.Fatalf("adopted: state %s, restarts %d %v, exits %d, pid %d (was %d)",
			after.Rec.State, after.Rec.Restarts, after.Restarts, len(after.Exits), after.PID, before.PID)
	}
	h.fail(sb, supervisor.Backoff)
	h.restartsAfter(time.Second)
	if v := h.actor.Snapshot(); v.Rec.Restarts != 4 || v.Restarts[api.ExitCode] != 4 {
		t.Errorf("after adoption: restarts %d %v, want 4", v.Rec.Restarts, v.Restarts)
	}
}

// TestAdoptedSandboxThatEndedMeanwhile: a sandbox that ended while no
// daemon ran is reported with that end and restarted by its policy.
func TestAdoptedSandboxThatEndedMeanwhile(t *testing.T) {
	h := newHarness(t)
	u := unit(t, "    command: [/bin/true]\n    restart: {policy: always, backoff: {initial: 1s, multiplier: 1, jitter: 0}}\n")
	sb := servicetest.NewSandbox(u, 42, h.clock.Now().Add(-time.Minute))
	sb.End(sandbox.Exit{Code: 3, Unwatched: true, Ended: h.clock.Now().Add(-time.Second)})
	h.run(service.Adopt(u, t.TempDir(), service.Saved{}, service.Adoption{Sandbox: sb}, h.deps()))
	h.waitTo(supervisor.Backoff)
	v := h.actor.Snapshot()
	if len(v.Exits) != 1 || v.Exits[0].Code != 3 || !strings.Contains(v.Exits[0].Reason, "while no daemon was running") || v.Exits[0].Ran != 59*time.Second {
		t.Fatalf("exits %+v", v.Exits)
	}
	h.restartsAfter(time.Second)
}

// TestAdoptionWithAPendingStop: the operator's stop under way when the
// daemon died is carried out, not taken for a failure to restart.
func TestAdoptionWithAPendingStop(t *testing.T) {
	h := newHarness(t)
	u := unit(t, "    command: [/bin/true]\n    restart: always\n")
	sb := servicetest.NewSandbox(u, 42, h.clock.Now())
	saved := service.Saved{Saved: supervisor.Saved{Desired: supervisor.Down}}
	h.run(service.Adopt(u, t.TempDir(), saved, service.Adoption{Sandbox: sb, Running: true}, h.deps()))
	h.waitTo(supervisor.Stopped)
	h.clock.Advance(time.Hour)
	h.launcher.None(t)
}

// TestUpdateInPlaceAndRestart: a reload that changes only limits updates
// them in place; one that reshapes the sandbox restarts it with the new
// unit, not counted as a restart.
func TestUpdateInPlaceAndRestart(t *testing.T) {
	h := newHarness(t)
	sb := h.start(unit(t, "    command: [/bin/true]\n    resources: {memory: 64M}\n"))
	bigger := unit(t, "    command: [/bin/true]\n    resources: {memory: 128M}\n")
	if err := h.actor.Update(context.Background(), bigger, t.TempDir(), false); err != nil {
		t.Fatal(err)
	}
	if got := sb.Resources().Memory; got != 128<<20 {
		t.Errorf("memory limit %d after the update", got)
	}
	h.launcher.None(t)

	other := unit(t, "    command: [/bin/other]\n    resources: {memory: 128M}\n")
	if err := h.actor.Update(context.Background(), other, t.TempDir(), true); err != nil {
		t.Fatal(err)
	}
	next := h.launcher.Next(t)
	h.waitTo(supervisor.Running)
	if !sb.Destroyed() || next.Unit.Service.Command[0] != "/bin/other" {
		t.Errorf("old destroyed %v, new command %v", sb.Destroyed(), next.Unit.Service.Command)
	}
	if v := h.actor.Snapshot(); v.Rec.Restarts != 0 || !slices.Equal(v.Command, []string{"/bin/other"}) {
		t.Errorf("restarts %d, command %v", v.Rec.Restarts, v.Command)
	}
}

// TestRemoveForgetsTheSavedState: a service removed from the
// configuration is stopped, its goroutine ends, and its saved state goes.
func TestRemoveForgetsTheSavedState(t *testing.T) {
	h := newHarness(t)
	sb := h.start(unit(t, "    command: [/bin/true]\n"))
	if !h.store.Has("svc") {
		t.Fatal("nothing saved of a running service")
	}
	if err := h.actor.Remove(context.Background(), true, true); err != nil {
		t.Fatal(err)
	}
	<-h.ended
	if !slices.Equal(h.launcher.Released(), []string{"svc"}) {
		t.Errorf("released %v, want the service's ID block released", h.launcher.Released())
	}
	if !sb.Destroyed() || h.store.Has("svc") || !h.actor.Snapshot().Done {
		t.Errorf("destroyed %v, saved %v, done %v", sb.Destroyed(), h.store.Has("svc"), h.actor.Snapshot().Done)
	}
}

// TestFailingStoreDoesNotStopSupervision: a state dir that cannot be
// written is logged; the service is still supervised.
func TestFailingStoreDoesNotStopSupervision(t *testing.T) {
	h := newHarness(t)
	h.store.Err = errors.New("disk full")
	sb := h.start(unit(t, "    command: [/bin/true]\n    restart: {policy: always, backoff: {initial: 1s, multiplier: 1, jitter: 0}}\n"))
	h.fail(sb, supervisor.Backoff)
	h.restartsAfter(time.Second)
}
