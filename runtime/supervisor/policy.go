// Package supervisor decides what happens to a service: a pure state
// machine that maps (record, event, now) to a new record and the actions to
// carry out, and the restart policy it applies. Nothing here makes a
// syscall or reads the clock: time and randomness are passed in, so every
// state × event pair is tested in microseconds.
package supervisor

import (
	"fmt"
	"math"
	"time"

	"github.com/corral-dev/corral/spec"
)

// backoffDelay is the delay before restart number attempt (0-based):
// Initial × Multiplier^attempt, capped at Max, spread by ± Jitter. rnd
// returns a number in [0, 1).
func backoffDelay(b spec.Backoff, attempt int, rnd func() float64) time.Duration {
	d := float64(b.Initial) * math.Pow(b.Multiplier, float64(attempt))
	if max := float64(b.Max); d > max || math.IsInf(d, 0) || math.IsNaN(d) {
		d = max
	}
	if b.Jitter > 0 && rnd != nil {
		d *= 1 + b.Jitter*(2*rnd()-1)
	}
	if d < 0 {
		d = 0
	}
	return time.Duration(d)
}

// wantsRestart says whether the policy restarts a sandbox that ended on its
// own (not stopped by the operator) with the given outcome.
func wantsRestart(r spec.Restart, failed bool) bool {
	switch r.Mode {
	case spec.RestartAlways, spec.RestartUnlessStopped:
		return true
	case spec.RestartOnFailure:
		return failed
	}
	return false
}

// Decision is what the policy makes of an exit.
type Decision struct {
	Restart bool
	Delay   time.Duration
	// CrashLoop is set when failures came too often: the service is
	// shown as crash-looping and retried at the capped delay.
	CrashLoop bool
	// GiveUp is set when on-failure:N ran out of retries.
	GiveUp bool
	Reason string
}

// decide applies the restart policy to an exit of a sandbox that had run
// for ran. It updates the failure accounting in rec.
func decide(rec *Record, p spec.Restart, failed bool, ran time.Duration, now time.Time, rnd func() float64) Decision {
	if ran >= p.Backoff.ResetAfter {
		// A stable run: forget earlier trouble.
		rec.Attempt, rec.Failures, rec.RecentFailures = 0, 0, nil
	}
	if failed {
		rec.Failures++
		rec.RecentFailures = append(pruneBefore(rec.RecentFailures, now.Add(-p.CrashLoop.Window)), now)
	}
	if !wantsRestart(p, failed) {
		return Decision{Reason: fmt.Sprintf("restart policy %q does not restart it", policyName(p))}
	}
	if p.Mode == spec.RestartOnFailure && p.MaxRetries > 0 && rec.Failures > p.MaxRetries {
		return Decision{GiveUp: true, Reason: fmt.Sprintf("gave up after %d restarts (restart policy %s)", p.MaxRetries, policyName(p))}
	}
	d := Decision{Restart: true, Delay: backoffDelay(p.Backoff, rec.Attempt, rnd)}
	rec.Attempt++
	if p.CrashLoop.Failures > 0 && len(rec.RecentFailures) >= p.CrashLoop.Failures {
		d.CrashLoop = true
		d.Delay = backoffDelay(spec.Backoff{Initial: p.Backoff.Max, Max: p.Backoff.Max, Multiplier: 1, Jitter: p.Backoff.Jitter}, 0, rnd)
		d.Reason = fmt.Sprintf("crash loop: %d failures within %s", len(rec.RecentFailures), p.CrashLoop.Window)
	}
	return d
}

func pruneBefore(ts []time.Time, cutoff time.Time) []time.Time {
	out := ts[:0]
	for _, t := range ts {
		if !t.Before(cutoff) {
			out = append(out, t)
		}
	}
	return out
}

func policyName(p spec.Restart) string {
	if p.Mode == spec.RestartOnFailure && p.MaxRetries > 0 {
		return fmt.Sprintf("%s:%d", p.Mode, p.MaxRetries)
	}
	return p.Mode
}
