// Package health runs a service's health checks and tracks what they say.
//
// A Prober makes one check: an HTTP GET or a TCP connect to 127.0.0.1 in
// the sandbox's network namespace, or a command run inside the sandbox.
// A Tracker turns the stream of check results into the service's health
// status, by the rules of spec.Health. The package decides nothing about
// what to do with an unhealthy service; it keeps no timers and starts no
// goroutines of its own: the caller probes every interval and feeds the
// results, with their time, to the tracker.
package health

import (
	"time"

	"github.com/corral-dev/corral/spec"
)

// Status is a service's health.
type Status int

const (
	// Starting: no check has made it healthy since the sandbox started.
	Starting Status = iota
	// Healthy: SuccessThreshold checks in a row passed.
	Healthy
	// Unhealthy: Retries counted checks in a row failed.
	Unhealthy
)

func (s Status) String() string {
	switch s {
	case Starting:
		return "starting"
	case Healthy:
		return "healthy"
	case Unhealthy:
		return "unhealthy"
	}
	return "unknown"
}

// Transition is what one check result did to the status.
type Transition struct {
	From, To Status
	// Changed is From != To.
	Changed bool
}

// Tracker holds the health of one sandbox, from its start. It is not safe
// for concurrent use: one goroutine (the service's) feeds it.
//
// The rules, for a check result at time now:
//   - a success counts toward SuccessThreshold successes in a row, which
//     make a starting or unhealthy service healthy (with the default
//     threshold of 1, the first success does);
//   - a failure counts toward Retries failures in a row, which make a
//     starting or healthy service unhealthy;
//   - a failure while the service is still starting and now is within
//     StartPeriod of the start does not count (as in Docker: once the
//     service was healthy, the grace is over);
//   - a result of the other kind resets the count in a row.
type Tracker struct {
	retries, threshold int
	grace              time.Time // end of the start period
	status             Status
	successes          int // in a row
	failures           int // counted, in a row
	lastDetail         string
}

// NewTracker tracks a sandbox started at started, checked by h.
func NewTracker(h spec.Health, started time.Time) *Tracker {
	return &Tracker{
		retries:   max(h.Retries, 1),
		threshold: max(h.SuccessThreshold, 1),
		grace:     started.Add(h.StartPeriod),
	}
}

// Observe records one check result, made at now, and says how the status
// changed.
func (t *Tracker) Observe(ok bool, now time.Time, detail string) Transition {
	from := t.status
	t.lastDetail = detail
	switch {
	case ok:
		t.failures = 0
		t.successes++
		if t.successes >= t.threshold {
			t.status = Healthy
		}
	case t.status == Starting && now.Before(t.grace):
		t.successes = 0 // not counted
	default:
		t.successes = 0
		t.failures++
		if t.failures >= t.retries {
			t.status = Unhealthy
		}
	}
	return Transition{From: from, To: t.status, Changed: from != t.status}
}

// Status is the current health.
func (t *Tracker) Status() Status { return t.status }

// Successes is how many checks in a row passed, up to the last one.
func (t *Tracker) Successes() int { return t.successes }

// Failures is how many counted checks in a row failed, up to the last one
// (failures in the start period are not counted).
func (t *Tracker) Failures() int { return t.failures }

// LastDetail is what the last check said ("" before the first).
func (t *Tracker) LastDetail() string { return t.lastDetail }
