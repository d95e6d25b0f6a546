package supervisor

import (
	"fmt"
	"syscall"
	"time"

	"github.com/corral-dev/corral/spec"
)

// State is a service's supervision state.
type State string

// Service states.
const (
	Stopped   State = "stopped"   // not running, and not meant to be until told
	Starting  State = "starting"  // its sandbox is being made
	Running   State = "running"   // its sandbox runs
	Backoff   State = "backoff"   // ended; waits for its next start
	CrashLoop State = "crashloop" // failed too often; retried at the capped delay
	Stopping  State = "stopping"  // told to stop; waits for the sandbox to end
	Failed    State = "failed"    // ended, and the policy (or the error) says not to retry
)

// Unstarted is the state of a service this daemon has not started, nor
// found running: the zero Record's. It is shown as Stopped.
const Unstarted State = ""

// Shown is the state as people see it: Unstarted is Stopped.
func (s State) Shown() State {
	if s == Unstarted {
		return Stopped
	}
	return s
}

// States lists every state, for tests and documentation.
var States = []State{Stopped, Starting, Running, Backoff, CrashLoop, Stopping, Failed}

// Desired is what the operator wants of a service.
type Desired string

const (
	Up   Desired = "up"
	Down Desired = "down"
)

// Record is everything the supervisor knows of one service. The zero
// value is a stopped service nobody asked to run.
type Record struct {
	State   State
	Desired Desired
	// Message says why the service is in its state, for people.
	Message string
	// Restarts counts sandbox starts after the first.
	Restarts int
	// Attempt is the backoff exponent: restarts since the last stable run.
	Attempt int
	// Failures counts failed runs since the last stable one (on-failure:N).
	Failures int
	// RecentFailures are the times of failures within the crash-loop window.
	RecentFailures []time.Time
	StartedAt      time.Time
	NextAttempt    time.Time
	// everStarted tells a first start from a restart.
	everStarted bool
	// killed: the stop timeout ran out and the sandbox was killed.
	killed bool
	// up: in Starting, the sandbox runs and the service has yet to say it
	// is ready (a health check or notify).
	up bool
	// unhealthy: why the sandbox is being stopped for failing its health
	// check ("" if it is not).
	unhealthy string
}

// Killed reports whether the sandbox being stopped was killed at the stop
// timeout.
func (rec Record) Killed() bool { return rec.killed }

// Unhealthy says why the sandbox being stopped failed its health check
// ("" if it is not stopped for that).
func (rec Record) Unhealthy() string { return rec.unhealthy }

// AwaitingReady reports a sandbox that runs but has not said it is ready.
func (rec Record) AwaitingReady() bool { return rec.State == Starting && rec.up }

// EventKind says what happened.
type EventKind int

// Events.
const (
	EvStart       EventKind = iota // operator: start
	EvStop                         // operator: stop
	EvRestart                      // operator: restart
	EvStarted                      // the sandbox is running
	EvStartFailed                  // the sandbox could not be started
	EvExited                       // the sandbox ended
	EvTimer                        // the one timer fired
	EvReady                        // the service said it is ready (health check passed, READY=1)
	EvUnhealthy                    // the health check failed Retries times in a row
)

// EventKinds lists every event kind, for tests.
var EventKinds = []EventKind{EvStart, EvStop, EvRestart, EvStarted, EvStartFailed, EvExited, EvTimer, EvReady, EvUnhealthy}

func (k EventKind) String() string {
	return [...]string{"start", "stop", "restart", "started", "start-failed", "exited", "timer", "ready", "unhealthy"}[k]
}

// Event is one input to the state machine.
type Event struct {
	Kind EventKind
	// Failed: the exit counts as a failure (non-zero code, signal, OOM).
	Failed bool
	// Reason describes the exit or the start error, for people.
	Reason string
	// Permanent: a start error that retrying cannot fix (command not
	// found, invalid configuration, permission denied), reported as
	// EvStartFailed, or as EvExited when the sandbox's init found it.
	Permanent bool
	// At is when it happened, if known better than the step's now (an
	// EvStarted carries the sandbox's own start time).
	At time.Time
}

// ActionKind says what to do.
type ActionKind int

// Actions.
const (
	ActStart     ActionKind = iota // make and start a sandbox; report EvStarted or EvStartFailed
	ActSignal                      // send Signal to the sandbox's init
	ActKill                        // SIGKILL every process of the sandbox
	ActSetTimer                    // (re)arm the one timer to fire after Delay
	ActStopTimer                   // disarm the timer
)

// Action is one thing for the service's goroutine to do, in order.
type Action struct {
	Kind   ActionKind
	Signal syscall.Signal
	Delay  time.Duration
}

// Policy is what the machine needs of a service's configuration.
type Policy struct {
	Restart spec.Restart
	Stop    spec.Stop
	// Readiness: a started sandbox stays Starting until EvReady.
	Readiness bool
	// RestartUnhealthy: EvUnhealthy stops the sandbox, and its end is a
	// failure for the restart policy; otherwise it is only reported.
	RestartUnhealthy bool
}

// Step maps a record and an event to the next record and the actions that
// carry the change out. Events that make no sense in a state (a stale
// timer, a second start) leave the record as it is.
func Step(rec Record, ev Event, p Policy, now time.Time, rnd func() float64) (Record, []Action) {
	switch ev.Kind {
	case EvStart, EvRestart:
		return operatorStart(rec, ev.Kind == EvRestart, p, now)
	case EvStop:
		return operatorStop(rec, p)
	case EvStarted:
		return started(rec, ev, p, now)
	case EvStartFailed:
		if rec.State != Starting {
			return rec, nil
		}
		if ev.Permanent {
			rec.State, rec.Message = Failed, "failed to start: "+ev.Reason
			return rec, nil
		}
		// A transient start failure is a failed run of no length.
		rec.StartedAt = now
		ev.Failed = true
		return ended(rec, ev, p, now, rnd)
	case EvExited:
		return ended(rec, ev, p, now, rnd)
	case EvTimer:
		return timer(rec, p, now)
	case EvReady:
		if rec.State == Starting && rec.up {
			rec.State, rec.up, rec.Message = Running, false, ""
		}
		return rec, nil
	case EvUnhealthy:
		if rec.State != Running && !rec.AwaitingReady() || !p.RestartUnhealthy {
			return rec, nil
		}
		rec.up = false
		rec, acts := beginStop(rec, p, "unhealthy: "+ev.Reason+"; stopping it")
		rec.unhealthy = ev.Reason
		return rec, acts
	}
	return rec, nil
}

func operatorStart(rec Record, restart bool, p Policy, now time.Time) (Record, []Action) {
	rec.Desired = Up
	switch rec.State {
	case Stopped, Failed, Unstarted:
		// The operator asked: start with a clean slate.
		rec.Attempt, rec.Failures, rec.RecentFailures = 0, 0, nil
		return startNow(rec, false)
	case Backoff, CrashLoop:
		rec.NextAttempt = time.Time{}
		rec, acts := startNow(rec, false)
		return rec, append([]Action{{Kind: ActStopTimer}}, acts...)
	case Running:
		if restart {
			return beginStop(rec, p, "restarting (operator)")
		}
	case Starting:
		if restart && rec.up {
			rec.up = false
			return beginStop(rec, p, "restarting (operator)")
		}
	}
	// Starting: already on its way. Stopping: Desired up makes it start
	// again once the sandbox has ended.
	return rec, nil
}

func operatorStop(rec Record, p Policy) (Record, []Action) {
	rec.Desired = Down
	switch rec.State {
	case Running:
		return beginStop(rec, p, "stopping (operator)")
	case Backoff, CrashLoop:
		rec.State, rec.Message, rec.NextAttempt = Stopped, "stopped by operator", time.Time{}
		return rec, []Action{{Kind: ActStopTimer}}
	case Failed:
		rec.State = Stopped
		return rec, nil
	case Starting:
		if rec.up {
			rec.up = false
			return beginStop(rec, p, "stopping (operator)")
		}
	}
	// Starting: stopped as soon as it runs. Stopping, Stopped: nothing.
	return rec, nil
}

func started(rec Record, ev Event, p Policy, now time.Time) (Record, []Action) {
	if rec.State != Starting {
		return rec, nil
	}
	if !ev.At.IsZero() {
		now = ev.At
	}
	rec.State, rec.StartedAt, rec.Message, rec.killed = Running, now, "", false
	if rec.Desired == Down {
		return beginStop(rec, p, "stopping (operator)")
	}
	if p.Readiness {
		rec.State, rec.up, rec.Message = Starting, true, "waiting for the service to be ready"
	}
	return rec, nil
}

func beginStop(rec Record, p Policy, msg string) (Record, []Action) {
	rec.State, rec.Message, rec.killed, rec.unhealthy = Stopping, msg, false, ""
	return rec, []Action{
		{Kind: ActSignal, Signal: p.Stop.Signal},
		{Kind: ActSetTimer, Delay: p.Stop.Timeout},
	}
}

// startNow starts a sandbox. counted: a restart that the restart policy
// (or a failed health check) made, which Restarts counts; the operator's
// starts and restarts are not (as docker's RestartCount).
func startNow(rec Record, counted bool) (Record, []Action) {
	if counted && rec.everStarted {
		rec.Restarts++
	}
	rec.everStarted = true
	rec.State, rec.Message, rec.up, rec.unhealthy = Starting, "", false, ""
	return rec, []Action{{Kind: ActStart}}
}

func timer(rec Record, p Policy, now time.Time) (Record, []Action) {
	switch rec.State {
	case Backoff, CrashLoop:
		rec.NextAttempt = time.Time{}
		return startNow(rec, true)
	case Stopping:
		rec.killed = true
		rec.Message = fmt.Sprintf("killing every process: still running %s after %s", p.Stop.Timeout, signalName(p.Stop.Signal))
		return rec, []Action{{Kind: ActKill}}
	}
	return rec, nil
}

// ended handles the end of a sandbox: after a stop, as the operator
// wanted; otherwise, as the restart policy says.
func ended(rec Record, ev Event, p Policy, now time.Time, rnd func() float64) (Record, []Action) {
	if rec.State == Stopping && rec.unhealthy != "" && rec.Desired == Up {
		// Stopped for failing its health check: a failed run, for the
		// restart policy, its backoff and the crash-loop count.
		ev.Failed, ev.Permanent = true, false
		ev.Reason = "unhealthy: " + rec.unhealthy + "; " + ev.Reason
		rec.State, rec.unhealthy = Running, ""
		rec, acts := ended(rec, ev, p, now, rnd)
		return rec, append([]Action{{Kind: ActStopTimer}}, acts...)
	}
	switch rec.State {
	case Stopping:
		how := "stopped by operator"
		if rec.killed {
			how = fmt.Sprintf("killed after the stop timeout (%s)", p.Stop.Timeout)
		}
		if rec.Desired == Up { // the operator's restart
			rec, acts := startNow(rec, false)
			return rec, append([]Action{{Kind: ActStopTimer}}, acts...)
		}
		rec.State, rec.Message = Stopped, how
		return rec, []Action{{Kind: ActStopTimer}}
	case Running, Starting:
	default:
		return rec, nil
	}
	if ev.Permanent {
		// The command could not even be executed (reported by the
		// sandbox's init after it started): retrying cannot help. The
		// exit's reason already says it failed to start.
		rec.State, rec.Message = Failed, ev.Reason
		return rec, nil
	}
	ran := now.Sub(rec.StartedAt)
	d := decide(&rec, p.Restart, ev.Failed, ran, now, rnd)
	switch {
	case d.GiveUp:
		rec.State, rec.Message = Failed, ev.Reason+"; "+d.Reason
		return rec, nil
	case !d.Restart:
		rec.State, rec.Message = Stopped, ev.Reason
		if ev.Failed {
			rec.State = Failed
		}
		return rec, nil
	case d.Delay == 0 && !d.CrashLoop:
		// Driven by the exit itself: no timer, no poll.
		rec, acts := startNow(rec, true)
		rec.Message = ev.Reason + "; restarted"
		return rec, acts
	}
	rec.State = Backoff
	if d.CrashLoop {
		rec.State = CrashLoop
	}
	rec.NextAttempt = now.Add(d.Delay)
	rec.Message = ev.Reason + "; next start in " + d.Delay.Round(time.Millisecond).String()
	if d.CrashLoop {
		rec.Message = ev.Reason + "; " + d.Reason + "; next start in " + d.Delay.Round(time.Millisecond).String()
	}
	return rec, []Action{{Kind: ActSetTimer, Delay: d.Delay}}
}

func signalName(s syscall.Signal) string {
	names := map[syscall.Signal]string{
		syscall.SIGTERM: "SIGTERM", syscall.SIGINT: "SIGINT", syscall.SIGQUIT: "SIGQUIT",
		syscall.SIGHUP: "SIGHUP", syscall.SIGKILL: "SIGKILL", syscall.SIGUSR1: "SIGUSR1", syscall.SIGUSR2: "SIGUSR2",
	}
	if n, ok := names[s]; ok {
		return n
	}
	return fmt.Sprintf("signal %d", int(s))
}

// Saved is the part of a Record that outlives the daemon: the operator's
// wish and the accounting of restarts and failures, so that a crash loop
// stays a crash loop across a daemon restart.
type Saved struct {
	Desired        Desired     `json:"desired,omitempty"`
	Restarts       int         `json:"restarts,omitempty"`
	Attempt        int         `json:"attempt,omitempty"`
	Failures       int         `json:"failures,omitempty"`
	RecentFailures []time.Time `json:"recent_failures,omitempty"`
	// Ready: the running sandbox had said it is ready (a service with
	// readiness that was running, not starting).
	Ready bool `json:"ready,omitempty"`
}

// Save is what of rec to keep for the next daemon.
func (rec Record) Save() Saved {
	return Saved{
		Desired: rec.Desired, Restarts: rec.Restarts, Attempt: rec.Attempt,
		Failures: rec.Failures, RecentFailures: rec.RecentFailures,
		Ready: rec.State == Running,
	}
}

// Resume is the record of a service whose sandbox, started at startedAt,
// a new daemon adopted: it is running, as the earlier daemon left it, or
// still starting if it has readiness and had not said it was ready. Feed
// it EvExited if the sandbox ended meanwhile, EvStop if the operator's
// stop was under way.
func Resume(s Saved, startedAt time.Time, readiness bool) Record {
	rec := Record{
		State: Running, Desired: s.Desired, Message: "adopted after a daemon restart",
		Restarts: s.Restarts, Attempt: s.Attempt, Failures: s.Failures,
		RecentFailures: s.RecentFailures, StartedAt: startedAt, everStarted: true,
	}
	if readiness && !s.Ready {
		rec.State, rec.up = Starting, true
		rec.Message = "adopted after a daemon restart; waiting for it to say it is ready"
	}
	if rec.Desired == "" {
		rec.Desired = Up
	}
	return rec
}

// Restore is the record of a service a new daemon finds not running, as
// saved by an earlier one: stopped, counts kept.
func Restore(s Saved) Record {
	return Record{
		Desired: s.Desired, Restarts: s.Restarts, Attempt: s.Attempt, Failures: s.Failures,
		RecentFailures: s.RecentFailures, everStarted: s.Restarts > 0,
	}
}
