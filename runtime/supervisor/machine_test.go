package supervisor

import (
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/spec"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// noJitter makes the jitter factor exactly 1.
func noJitter() float64 { return 0.5 }

func testPolicy() Policy {
	return Policy{Restart: spec.DefaultRestart(), Stop: spec.DefaultStop(), RestartUnhealthy: true}
}

func kinds(acts []Action) []ActionKind {
	out := []ActionKind{}
	for _, a := range acts {
		out = append(out, a.Kind)
	}
	return out
}

// TestEveryStateAndEvent pins down the whole transition table.
func TestEveryStateAndEvent(t *testing.T) {
	S, P, T, K, X := ActStart, ActSignal, ActSetTimer, ActKill, ActStopTimer
	type want struct {
		state State
		acts  []ActionKind
	}
	table := map[State]map[EventKind]want{
		Stopped: {
			EvStart: {Starting, []ActionKind{S}}, EvStop: {Stopped, nil}, EvRestart: {Starting, []ActionKind{S}},
			EvStarted: {Stopped, nil}, EvStartFailed: {Stopped, nil}, EvExited: {Stopped, nil}, EvTimer: {Stopped, nil},
			EvReady: {Stopped, nil}, EvUnhealthy: {Stopped, nil},
		},
		Starting: {
			EvStart: {Starting, nil}, EvStop: {Starting, nil}, EvRestart: {Starting, nil},
			EvStarted: {Running, nil}, EvStartFailed: {Backoff, []ActionKind{T}}, EvExited: {Backoff, []ActionKind{T}}, EvTimer: {Starting, nil},
			EvReady: {Starting, nil}, EvUnhealthy: {Starting, nil},
		},
		Running: {
			EvStart: {Running, nil}, EvStop: {Stopping, []ActionKind{P, T}}, EvRestart: {Stopping, []ActionKind{P, T}},
			EvStarted: {Running, nil}, EvStartFailed: {Running, nil}, EvExited: {Backoff, []ActionKind{T}}, EvTimer: {Running, nil},
			EvReady: {Running, nil}, EvUnhealthy: {Stopping, []ActionKind{P, T}},
		},
		Backoff: {
			EvStart: {Starting, []ActionKind{X, S}}, EvStop: {Stopped, []ActionKind{X}}, EvRestart: {Starting, []ActionKind{X, S}},
			EvStarted: {Backoff, nil}, EvStartFailed: {Backoff, nil}, EvExited: {Backoff, nil}, EvTimer: {Starting, []ActionKind{S}},
			EvReady: {Backoff, nil}, EvUnhealthy: {Backoff, nil},
		},
		CrashLoop: {
			EvStart: {Starting, []ActionKind{X, S}}, EvStop: {Stopped, []ActionKind{X}}, EvRestart: {Starting, []ActionKind{X, S}},
			EvStarted: {CrashLoop, nil}, EvStartFailed: {CrashLoop, nil}, EvExited: {CrashLoop, nil}, EvTimer: {Starting, []ActionKind{S}},
			EvReady: {CrashLoop, nil}, EvUnhealthy: {CrashLoop, nil},
		},
		Stopping: {
			EvStart: {Stopping, nil}, EvStop: {Stopping, nil}, EvRestart: {Stopping, nil},
			EvStarted: {Stopping, nil}, EvStartFailed: {Stopping, nil}, EvExited: {Stopped, []ActionKind{X}}, EvTimer: {Stopping, []ActionKind{K}},
			EvReady: {Stopping, nil}, EvUnhealthy: {Stopping, nil},
		},
		Failed: {
			EvStart: {Starting, []ActionKind{S}}, EvStop: {Stopped, nil}, EvRestart: {Starting, []ActionKind{S}},
			EvStarted: {Failed, nil}, EvStartFailed: {Failed, nil}, EvExited: {Failed, nil}, EvTimer: {Failed, nil},
			EvReady: {Failed, nil}, EvUnhealthy: {Failed, nil},
		},
	}
	if len(table) != len(States) {
		t.Fatalf("table covers %d states, want %d", len(table), len(States))
	}
	for _, st := range States {
		for _, ek := range EventKinds {
			w, ok := table[st][ek]
			if !ok {
				t.Errorf("%s × %s: missing from the table", st, ek)
				continue
			}
			rec := Record{State: st, Desired: Up, StartedAt: t0, everStarted: true}
			if st == Stopping || st == Stopped {
				rec.Desired = Down
			}
			ev := Event{Kind: ek, Failed: true, Reason: "exited with code 1"}
			got, acts := Step(rec, ev, testPolicy(), t0.Add(time.Second), noJitter)
			if got.State != w.state || !reflect.DeepEqual(kinds(acts), append([]ActionKind{}, w.acts...)) {
				t.Errorf("%s × %s = %s %v, want %s %v", st, ek, got.State, kinds(acts), w.state, w.acts)
			}
		}
	}
}

func TestStopSignalsThenKillsAfterTimeout(t *testing.T) {
	p := testPolicy()
	p.Stop = spec.Stop{Signal: syscall.SIGINT, Timeout: 3 * time.Second}
	rec := Record{State: Running, Desired: Up, StartedAt: t0}
	rec, acts := Step(rec, Event{Kind: EvStop}, p, t0, noJitter)
	if rec.Desired != Down || len(acts) != 2 || acts[0].Signal != syscall.SIGINT || acts[1].Delay != 3*time.Second {
		t.Fatalf("stop: %+v %+v", rec, acts)
	}
	rec, acts = Step(rec, Event{Kind: EvTimer}, p, t0.Add(3*time.Second), noJitter)
	if len(acts) != 1 || acts[0].Kind != ActKill || !strings.Contains(rec.Message, "3s after SIGINT") {
		t.Fatalf("timeout: %+v %+v", rec, acts)
	}
	rec, _ = Step(rec, Event{Kind: EvExited, Failed: true, Reason: "killed by signal 9 (SIGKILL)"}, p, t0.Add(3*time.Second), noJitter)
	if rec.State != Stopped || rec.Message != "killed after the stop timeout (3s)" {
		t.Fatalf("after kill: %s %q", rec.State, rec.Message)
	}
	// A stop is never followed by a policy restart, even under always.
	p.Restart.Mode = spec.RestartAlways
	rec = Record{State: Running, Desired: Up, StartedAt: t0}
	rec, _ = Step(rec, Event{Kind: EvStop}, p, t0, noJitter)
	rec, acts = Step(rec, Event{Kind: EvExited, Reason: "exited with code 0"}, p, t0, noJitter)
	if rec.State != Stopped || rec.Message != "stopped by operator" || len(acts) != 1 {
		t.Fatalf("stop under always: %s %q %v", rec.State, rec.Message, acts)
	}
}

func TestOperatorRestartStartsAgainWithoutBackoff(t *testing.T) {
	rec := Record{State: Running, Desired: Up, StartedAt: t0, everStarted: true}
	rec, _ = Step(rec, Event{Kind: EvRestart}, testPolicy(), t0, noJitter)
	rec, acts := Step(rec, Event{Kind: EvExited, Reason: "killed by signal 15 (SIGTERM)", Failed: true}, testPolicy(), t0, noJitter)
	// The operator's restart is not the policy's: Restarts stays 0.
	if rec.State != Starting || !reflect.DeepEqual(kinds(acts), []ActionKind{ActStopTimer, ActStart}) || rec.Restarts != 0 || rec.Failures != 0 {
		t.Fatalf("restart: %+v %v", rec, kinds(acts))
	}
}

// TestOperatorStartsAreNotRestarts: Restarts counts what the restart
// policy did, not the operator's start after a stop or during a backoff.
func TestOperatorStartsAreNotRestarts(t *testing.T) {
	p := testPolicy() // on-failure
	rec := Record{State: Running, Desired: Up, StartedAt: t0, everStarted: true}
	rec, _ = Step(rec, Event{Kind: EvExited, Failed: true, Reason: "exited with code 1"}, p, t0.Add(time.Second), noJitter)
	rec, _ = Step(rec, Event{Kind: EvTimer}, p, t0.Add(2*time.Second), noJitter)
	if rec.State != Starting || rec.Restarts != 1 {
		t.Fatalf("policy restart: %+v, want starting with 1 restart", rec)
	}
	rec, _ = Step(rec, Event{Kind: EvStarted}, p, t0.Add(2*time.Second), noJitter)
	rec, _ = Step(rec, Event{Kind: EvStop}, p, t0.Add(3*time.Second), noJitter)
	rec, _ = Step(rec, Event{Kind: EvExited, Reason: "killed by signal 15 (SIGTERM)"}, p, t0.Add(3*time.Second), noJitter)
	rec, _ = Step(rec, Event{Kind: EvStart}, p, t0.Add(4*time.Second), noJitter)
	if rec.State != Starting || rec.Restarts != 1 {
		t.Fatalf("operator start: %+v, want starting, restarts still 1", rec)
	}
	rec, _ = Step(rec, Event{Kind: EvStarted}, p, t0.Add(4*time.Second), noJitter)
	rec, _ = Step(rec, Event{Kind: EvExited, Failed: true, Reason: "exited with code 1"}, p, t0.Add(5*time.Second), noJitter)
	rec, _ = Step(rec, Event{Kind: EvStart}, p, t0.Add(5*time.Second), noJitter) // during the backoff
	if rec.State != Starting || rec.Restarts != 1 {
		t.Fatalf("operator start in backoff: %+v, want starting, restarts still 1", rec)
	}
}

func TestStopWhileStartingStopsOnceRunning(t *testing.T) {
	rec := Record{State: Starting, Desired: Up}
	rec, _ = Step(rec, Event{Kind: EvStop}, testPolicy(), t0, noJitter)
	rec, acts := Step(rec, Event{Kind: EvStarted}, testPolicy(), t0, noJitter)
	if rec.State != Stopping || !reflect.DeepEqual(kinds(acts), []ActionKind{ActSignal, ActSetTimer}) {
		t.Fatalf("got %s %v", rec.State, kinds(acts))
	}
}

func TestPermanentStartErrorFailsAtOnce(t *testing.T) {
	rec := Record{State: Starting, Desired: Up}
	rec, acts := Step(rec, Event{Kind: EvStartFailed, Permanent: true, Reason: `command "/nope" not found`}, testPolicy(), t0, noJitter)
	if rec.State != Failed || len(acts) != 0 || rec.Message != `failed to start: command "/nope" not found` {
		t.Fatalf("got %s %q %v", rec.State, rec.Message, acts)
	}
}

// crash runs the service and makes it exit after ran, returning the
// record and the delay before the next start (0 if none).
func crash(t *testing.T, rec Record, p Policy, now time.Time, ran time.Duration, failed bool) (Record, time.Duration, time.Time) {
	t.Helper()
	if rec.State != Starting {
		t.Fatalf("crash from %s", rec.State)
	}
	rec, _ = Step(rec, Event{Kind: EvStarted}, p, now, noJitter)
	now = now.Add(ran)
	rec, acts := Step(rec, Event{Kind: EvExited, Failed: failed, Reason: "exited"}, p, now, noJitter)
	var delay time.Duration
	for _, a := range acts {
		if a.Kind == ActSetTimer {
			delay = a.Delay
			now = now.Add(delay)
			rec, _ = Step(rec, Event{Kind: EvTimer}, p, now, noJitter)
		}
	}
	return rec, delay, now
}

func TestBackoffGrowsCapsAndResetsAfterStableRun(t *testing.T) {
	p := testPolicy()
	p.Restart.CrashLoop.Failures = 100 // not under test here
	rec, _ := Step(Record{}, Event{Kind: EvStart}, p, t0, noJitter)
	now := t0
	var delays []time.Duration
	for i := 0; i < 10; i++ {
		var d time.Duration
		rec, d, now = crash(t, rec, p, now, time.Second, true)
		delays = append(delays, d)
	}
	want := []time.Duration{200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000}
	for i := range want {
		if delays[i] != want[i]*time.Millisecond {
			t.Fatalf("delays %v, want %v ms", delays, want)
		}
	}
	// A run longer than reset_after starts the delays over.
	rec, d, _ := crash(t, rec, p, now, p.Restart.Backoff.ResetAfter, true)
	if d != 200*time.Millisecond || rec.Restarts != 11 {
		t.Fatalf("after a stable run: delay %s restarts %d, want 200ms and 11", d, rec.Restarts)
	}
}

func TestJitterStaysWithinBounds(t *testing.T) {
	b := spec.Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 2, Jitter: 0.2}
	for _, r := range []float64{0, 0.25, 0.5, 0.999} {
		d := backoffDelay(b, 1, func() float64 { return r })
		if d < 1600*time.Millisecond || d > 2400*time.Millisecond {
			t.Errorf("rnd %g: delay %s outside 2s ± 20%%", r, d)
		}
	}
	if d := backoffDelay(spec.Backoff{Initial: time.Second, Max: time.Minute, Multiplier: 2}, 500, nil); d != time.Minute {
		t.Errorf("huge attempt: %s, want the cap", d)
	}
}

func TestOnFailureMaxRetriesGivesUp(t *testing.T) {
	p := testPolicy()
	p.Restart.Mode, p.Restart.MaxRetries = spec.RestartOnFailure, 3
	p.Restart.Backoff.Initial = 0
	p.Restart.CrashLoop.Failures = 100
	rec, _ := Step(Record{}, Event{Kind: EvStart}, p, t0, noJitter)
	now := t0
	for i := 0; i < 3; i++ {
		rec, _, now = crash(t, rec, p, now, time.Second, true)
		if rec.State != Starting {
			t.Fatalf("failure %d: state %s, want a restart", i+1, rec.State)
		}
	}
	rec, _, _ = crash(t, rec, p, now, time.Second, true)
	if rec.State != Failed || rec.Restarts != 3 || !strings.Contains(rec.Message, "gave up after 3 restarts (restart policy on-failure:3)") {
		t.Fatalf("after 4 failures: %s restarts=%d %q", rec.State, rec.Restarts, rec.Message)
	}
	// on-failure does not restart a clean exit.
	rec, _ = Step(Record{}, Event{Kind: EvStart}, p, t0, noJitter)
	rec, _, _ = crash(t, rec, p, t0, time.Second, false)
	if rec.State != Stopped {
		t.Fatalf("clean exit under on-failure: %s", rec.State)
	}
}

func TestAlwaysRestartsAfterCleanExit(t *testing.T) {
	for _, mode := range []string{spec.RestartAlways, spec.RestartUnlessStopped} {
		p := testPolicy()
		p.Restart.Mode = mode
		rec, _ := Step(Record{}, Event{Kind: EvStart}, p, t0, noJitter)
		rec, d, _ := crash(t, rec, p, t0, time.Second, false)
		if rec.State != Starting || d != 200*time.Millisecond {
			t.Errorf("%s, exit 0: %s after %s, want a restart after 200ms", mode, rec.State, d)
		}
	}
	p := testPolicy()
	p.Restart.Mode = spec.RestartNo
	rec, _ := Step(Record{}, Event{Kind: EvStart}, p, t0, noJitter)
	if rec, _, _ = crash(t, rec, p, t0, time.Second, true); rec.State != Failed {
		t.Errorf("no, exit 1: %s, want failed", rec.State)
	}
}

func TestZeroBackoffRestartsOnTheExitItself(t *testing.T) {
	p := testPolicy()
	p.Restart.Backoff.Initial = 0
	rec, _ := Step(Record{}, Event{Kind: EvStart}, p, t0, noJitter)
	rec, _ = Step(rec, Event{Kind: EvStarted}, p, t0, noJitter)
	rec, acts := Step(rec, Event{Kind: EvExited, Failed: true, Reason: "killed by signal 9 (SIGKILL)"}, p, t0.Add(time.Second), noJitter)
	if rec.State != Starting || !reflect.DeepEqual(kinds(acts), []ActionKind{ActStart}) {
		t.Fatalf("got %s %v, want Starting [start] with no timer", rec.State, kinds(acts))
	}
}

func TestCrashLoopIsVisibleAndKeepsRetryingAtCap(t *testing.T) {
	p := testPolicy() // 5 failures in 60s
	rec, _ := Step(Record{}, Event{Kind: EvStart}, p, t0, noJitter)
	now := t0
	for i := 1; i <= 4; i++ {
		rec, _, now = crash(t, rec, p, now, 10*time.Millisecond, true)
	}
	rec, _ = Step(rec, Event{Kind: EvStarted}, p, now, noJitter)
	rec, acts := Step(rec, Event{Kind: EvExited, Failed: true, Reason: "exited with code 1"}, p, now.Add(10*time.Millisecond), noJitter)
	if rec.State != CrashLoop || acts[0].Delay != p.Restart.Backoff.Max {
		t.Fatalf("5th failure: %s %v, want crashloop retried after the cap", rec.State, acts)
	}
	if !strings.Contains(rec.Message, "crash loop: 5 failures within 1m0s") || rec.NextAttempt != now.Add(10*time.Millisecond+p.Restart.Backoff.Max) {
		t.Fatalf("message %q next %s", rec.Message, rec.NextAttempt)
	}
	// It never goes quiet: the timer still starts it.
	rec, acts = Step(rec, Event{Kind: EvTimer}, p, rec.NextAttempt, noJitter)
	if rec.State != Starting || acts[0].Kind != ActStart {
		t.Fatalf("crashloop timer: %s %v", rec.State, acts)
	}
	// Failures older than the window no longer count.
	rec, _ = Step(rec, Event{Kind: EvStarted}, p, now.Add(2*time.Minute), noJitter)
	rec, _ = Step(rec, Event{Kind: EvExited, Failed: true}, p, now.Add(2*time.Minute+time.Second), noJitter)
	if rec.State != Backoff {
		t.Fatalf("failure after the window: %s, want backoff", rec.State)
	}
}

func TestCommandNotFoundAfterStartFailsWithoutRestart(t *testing.T) {
	p := testPolicy()
	p.Restart.Mode = spec.RestartAlways
	rec := Record{State: Running, Desired: Up, StartedAt: t0}
	// The exit's reason (the sandbox's) already says it failed to start:
	// the message does not say it twice.
	reason := `failed to start: command "/nope" not found`
	rec, acts := Step(rec, Event{Kind: EvExited, Failed: true, Permanent: true, Reason: reason}, p, t0, noJitter)
	if rec.State != Failed || len(acts) != 0 || rec.Message != reason {
		t.Fatalf("got %s %q %v, want failed at once with %q", rec.State, rec.Message, acts, reason)
	}
}

func TestTransientStartFailureIsRetriedUnderOnFailure(t *testing.T) {
	p := testPolicy() // on-failure
	rec := Record{State: Starting, Desired: Up}
	rec, acts := Step(rec, Event{Kind: EvStartFailed, Reason: "cgroup busy"}, p, t0, noJitter)
	if rec.State != Backoff || len(acts) != 1 || acts[0].Kind != ActSetTimer {
		t.Fatalf("got %s %v, want a retry after the backoff", rec.State, kinds(acts))
	}
}

// TestResumeKeepsAccountingAcrossDaemons: a service adopted by a new
// daemon keeps its backoff exponent and failure count, and its next exit
// is a restart, not a first start.
func TestResumeKeepsAccountingAcrossDaemons(t *testing.T) {
	before := Record{State: Running, Desired: Up, Restarts: 3, Attempt: 2, Failures: 2,
		RecentFailures: []time.Time{t0.Add(-time.Second)}, StartedAt: t0, everStarted: true}
	saved := before.Save()
	rec := Resume(saved, t0, false)
	if rec.State != Running || rec.Desired != Up || rec.StartedAt != t0 || rec.Attempt != 2 || rec.Failures != 2 {
		t.Fatalf("resumed record %+v", rec)
	}
	rec, acts := Step(rec, Event{Kind: EvExited, Failed: true, Reason: "exited with code 3"}, testPolicy(), t0.Add(time.Second), noJitter)
	if rec.State != Backoff || rec.Attempt != 3 || rec.Failures != 3 || !reflect.DeepEqual(kinds(acts), []ActionKind{ActSetTimer}) {
		t.Fatalf("after exit: %+v %v", rec, kinds(acts))
	}
	// The backoff exponent came along: the delay is the third, not the first.
	if want := testPolicy().Restart.Backoff.Initial * 4; acts[0].Delay != want {
		t.Errorf("delay %s, want %s", acts[0].Delay, want)
	}
	rec, acts = Step(rec, Event{Kind: EvTimer}, testPolicy(), t0.Add(10*time.Second), noJitter)
	if rec.Restarts != 4 || !reflect.DeepEqual(kinds(acts), []ActionKind{ActStart}) {
		t.Fatalf("restart after resume: %+v %v", rec, kinds(acts))
	}
}

// TestResumeKeepsWaitingForReadiness: a service with readiness adopted
// before it said it was ready is still starting (and becomes running on
// EvReady); one that had said so is running.
func TestResumeKeepsWaitingForReadiness(t *testing.T) {
	p := testPolicy()
	p.Readiness = true
	starting := Record{State: Starting, Desired: Up, StartedAt: t0, everStarted: true, up: true}
	rec := Resume(starting.Save(), t0, true)
	if rec.State != Starting || !rec.AwaitingReady() {
		t.Fatalf("adopted before ready: %+v, want starting and awaiting ready", rec)
	}
	rec, _ = Step(rec, Event{Kind: EvReady}, p, t0.Add(time.Second), noJitter)
	if rec.State != Running {
		t.Fatalf("after ready: %s, want running", rec.State)
	}
	if again := Resume(rec.Save(), t0, true); again.State != Running {
		t.Fatalf("adopted after ready: %s, want running", again.State)
	}
	// Without readiness the saved flag does not matter.
	if rec := Resume(starting.Save(), t0, false); rec.State != Running {
		t.Fatalf("adopted without readiness: %s, want running", rec.State)
	}
}

// TestResumeOfAStopInProgressStops: the operator's stop, under way when
// the daemon died, is carried out by the next one.
func TestResumeOfAStopInProgressStops(t *testing.T) {
	rec := Resume(Saved{Desired: Down, Restarts: 1}, t0, false)
	rec, acts := Step(rec, Event{Kind: EvStop}, testPolicy(), t0, noJitter)
	if rec.State != Stopping || !reflect.DeepEqual(kinds(acts), []ActionKind{ActSignal, ActSetTimer}) {
		t.Fatalf("got %+v %v", rec, kinds(acts))
	}
	rec, _ = Step(rec, Event{Kind: EvExited, Reason: "killed by signal 15 (SIGTERM)", Failed: true}, testPolicy(), t0, noJitter)
	if rec.State != Stopped || rec.Desired != Down {
		t.Fatalf("got %+v", rec)
	}
	if got := Restore(rec.Save()); got.State != "" || got.Desired != Down || got.Restarts != 1 {
		t.Fatalf("restored %+v", got)
	}
}

// TestReadinessKeepsStartingUntilReady: with a health check or notify, a
// running sandbox shows starting until the service says it is ready; an
// operator's stop meanwhile stops it.
func TestReadinessKeepsStartingUntilReady(t *testing.T) {
	p := testPolicy()
	p.Readiness = true
	rec, _ := Step(Record{}, Event{Kind: EvStart}, p, t0, noJitter)
	rec, acts := Step(rec, Event{Kind: EvStarted}, p, t0, noJitter)
	if rec.State != Starting || !rec.AwaitingReady() || len(acts) != 0 || rec.StartedAt != t0 {
		t.Fatalf("after start: %+v %v", rec, kinds(acts))
	}
	ready, _ := Step(rec, Event{Kind: EvReady}, p, t0, noJitter)
	if ready.State != Running || ready.AwaitingReady() {
		t.Fatalf("after ready: %+v", ready)
	}
	stopped, acts := Step(rec, Event{Kind: EvStop}, p, t0, noJitter)
	if stopped.State != Stopping || !reflect.DeepEqual(kinds(acts), []ActionKind{ActSignal, ActSetTimer}) {
		t.Fatalf("stop while awaiting ready: %+v %v", stopped, kinds(acts))
	}
	// Never ready and then unhealthy: stopped and restarted as a failure.
	rec, acts = Step(rec, Event{Kind: EvUnhealthy, Reason: "connection refused"}, p, t0, noJitter)
	if rec.State != Stopping || rec.Unhealthy() != "connection refused" || len(acts) != 2 {
		t.Fatalf("unhealthy while awaiting ready: %+v %v", rec, kinds(acts))
	}
}

// TestUnhealthyRestartIsAFailureWithBackoff: a sandbox stopped for its
// health check comes back through the restart policy, with backoff, and
// counts for the crash loop; with on_unhealthy none nothing happens.
func TestUnhealthyRestartIsAFailureWithBackoff(t *testing.T) {
	p := testPolicy()
	rec := Record{State: Running, Desired: Up, StartedAt: t0, everStarted: true}
	rec, acts := Step(rec, Event{Kind: EvUnhealthy, Reason: "HTTP 500"}, p, t0.Add(time.Second), noJitter)
	if rec.State != Stopping || !strings.Contains(rec.Message, "unhealthy: HTTP 500") || !reflect.DeepEqual(kinds(acts), []ActionKind{ActSignal, ActSetTimer}) {
		t.Fatalf("unhealthy: %+v %v", rec, kinds(acts))
	}
	// The service exits 0 on SIGTERM: still a failure.
	rec, acts = Step(rec, Event{Kind: EvExited, Failed: false, Reason: "exited with code 0"}, p, t0.Add(2*time.Second), noJitter)
	if rec.State != Backoff || rec.Failures != 1 || len(rec.RecentFailures) != 1 || !reflect.DeepEqual(kinds(acts), []ActionKind{ActStopTimer, ActSetTimer}) {
		t.Fatalf("after the unhealthy stop: %+v %v", rec, kinds(acts))
	}
	if !strings.HasPrefix(rec.Message, "unhealthy: HTTP 500; exited with code 0; next start in") {
		t.Errorf("message %q", rec.Message)
	}
	// on_unhealthy: none.
	p.RestartUnhealthy = false
	rec = Record{State: Running, Desired: Up, StartedAt: t0, everStarted: true}
	if got, acts := Step(rec, Event{Kind: EvUnhealthy, Reason: "HTTP 500"}, p, t0, noJitter); got.State != Running || len(acts) != 0 {
		t.Fatalf("on_unhealthy none: %+v %v", got, kinds(acts))
	}
}
