package health

import (
	"fmt"
	"testing"
	"time"

	"github.com/corral-dev/corral/spec"
)

// step is one check result, at a time since the start, and what the
// tracker must say after it: the status, whether it changed, and the
// counts in a row.
type step struct {
	ok                   bool
	at                   time.Duration
	want                 Status
	changed              bool
	successes, failuresN int
}

func pass(at time.Duration, want Status, changed bool, successes int) step {
	return step{ok: true, at: at, want: want, changed: changed, successes: successes}
}

func fail(at time.Duration, want Status, changed bool, failures int) step {
	return step{ok: false, at: at, want: want, changed: changed, failuresN: failures}
}

func TestTracker(t *testing.T) {
	const s = time.Second
	check := func(retries, threshold int, startPeriod time.Duration) spec.Health {
		h := spec.DefaultHealth(spec.HealthTCP)
		h.Retries, h.SuccessThreshold, h.StartPeriod = retries, threshold, startPeriod
		return h
	}
	for _, tc := range []struct {
		desc  string
		h     spec.Health
		steps []step
	}{
		{"the first success makes it healthy", check(3, 1, 0), []step{
			pass(1*s, Healthy, true, 1),
			pass(2*s, Healthy, false, 2),
		}},
		{"SuccessThreshold successes in a row make it healthy", check(3, 3, 0), []step{
			pass(1*s, Starting, false, 1),
			pass(2*s, Starting, false, 2),
			fail(3*s, Starting, false, 1),
			pass(4*s, Starting, false, 1),
			pass(5*s, Starting, false, 2),
			pass(6*s, Healthy, true, 3),
		}},
		{"Retries failures in a row make a starting service unhealthy", check(3, 1, 0), []step{
			fail(1*s, Starting, false, 1),
			fail(2*s, Starting, false, 2),
			fail(3*s, Unhealthy, true, 3),
			fail(4*s, Unhealthy, false, 4),
		}},
		{"Retries failures in a row make a healthy service unhealthy", check(3, 1, 0), []step{
			pass(1*s, Healthy, true, 1),
			fail(2*s, Healthy, false, 1),
			fail(3*s, Healthy, false, 2),
			fail(4*s, Unhealthy, true, 3),
		}},
		{"a success resets the failures", check(3, 1, 0), []step{
			pass(1*s, Healthy, true, 1),
			fail(2*s, Healthy, false, 1),
			fail(3*s, Healthy, false, 2),
			pass(4*s, Healthy, false, 1),
			fail(5*s, Healthy, false, 1),
			fail(6*s, Healthy, false, 2),
			fail(7*s, Unhealthy, true, 3),
		}},
		{"failures in the start period do not count", check(1, 1, 30*s), []step{
			fail(1*s, Starting, false, 0),
			fail(10*s, Starting, false, 0),
			fail(29*s, Starting, false, 0),
			fail(30*s, Unhealthy, true, 1), // the period is over
		}},
		{"after the start period failures count from zero", check(2, 1, 10*s), []step{
			fail(5*s, Starting, false, 0),
			fail(11*s, Starting, false, 1),
			fail(12*s, Unhealthy, true, 2),
		}},
		{"successes in the start period count", check(3, 2, time.Minute), []step{
			pass(1*s, Starting, false, 1),
			pass(2*s, Healthy, true, 2),
		}},
		{"a failure in the start period still breaks a run of successes", check(3, 2, time.Minute), []step{
			pass(1*s, Starting, false, 1),
			fail(2*s, Starting, false, 0),
			pass(3*s, Starting, false, 1),
			pass(4*s, Healthy, true, 2),
		}},
		{"once healthy, the start period's grace is over", check(2, 1, time.Minute), []step{
			pass(1*s, Healthy, true, 1),
			fail(2*s, Healthy, false, 1),
			fail(3*s, Unhealthy, true, 2),
		}},
		{"from unhealthy, SuccessThreshold successes in a row make it healthy", check(1, 2, 0), []step{
			pass(1*s, Starting, false, 1),
			pass(2*s, Healthy, true, 2),
			fail(3*s, Unhealthy, true, 1),
			pass(4*s, Unhealthy, false, 1),
			fail(5*s, Unhealthy, false, 1),
			pass(6*s, Unhealthy, false, 1),
			pass(7*s, Healthy, true, 2),
		}},
		{"from unhealthy, one success with the default threshold", check(1, 1, 0), []step{
			fail(1*s, Unhealthy, true, 1),
			pass(2*s, Healthy, true, 1),
		}},
		{"unset Retries and SuccessThreshold count as 1", check(0, 0, 0), []step{
			fail(1*s, Unhealthy, true, 1),
			pass(2*s, Healthy, true, 1),
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			tr := NewTracker(tc.h, start)
			if tr.Status() != Starting || tr.LastDetail() != "" {
				t.Fatalf("new tracker: %s, detail %q; want starting, no detail", tr.Status(), tr.LastDetail())
			}
			from := Starting
			for i, st := range tc.steps {
				detail := fmt.Sprintf("check %d", i)
				got := tr.Observe(st.ok, start.Add(st.at), detail)
				want := Transition{From: from, To: st.want, Changed: st.changed}
				if got != want {
					t.Errorf("step %d (ok=%v at %s): %+v, want %+v", i, st.ok, st.at, got, want)
				}
				if tr.Status() != st.want || tr.Successes() != st.successes || tr.Failures() != st.failuresN || tr.LastDetail() != detail {
					t.Errorf("step %d: status %s, %d successes, %d failures, detail %q; want %s, %d, %d, %q",
						i, tr.Status(), tr.Successes(), tr.Failures(), tr.LastDetail(), st.want, st.successes, st.failuresN, detail)
				}
				from = st.want
			}
		})
	}
}

func TestStatusString(t *testing.T) {
	for s, want := range map[Status]string{Starting: "starting", Healthy: "healthy", Unhealthy: "unhealthy", Status(9): "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("Status(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}
