package restart

import (
	"testing"
	"time"

	"github.com/corral-dev/corral/integration/bench/daemon"
	"github.com/corral-dev/corral/runtime/api"
)

// Each kill is matched with the first exit recorded and the first
// "running" after it; a kill the events do not cover is counted apart.
func TestPhases(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Millisecond) }
	ev := func(at time.Time, name, from, to string, exitAt time.Time) daemon.Event {
		e := daemon.Event{Event: api.Event{Time: at, Service: name, From: from, To: to}}
		if !exitAt.IsZero() {
			e.Exit = &api.Exit{Time: exitAt}
		}
		return e
	}
	kills := []time.Time{ms(0), ms(1000), ms(2000)}
	stamped := []time.Duration{40 * time.Millisecond, 50 * time.Millisecond, 60 * time.Millisecond}
	events := []daemon.Event{
		// Out of order, as a stream may not be: sorted by their time.
		ev(ms(30), service, "starting", "running", time.Time{}),
		ev(ms(12), service, "running", "starting", ms(10)),
		ev(ms(15), "other", "starting", "running", time.Time{}),
		ev(ms(1020), service, "running", "starting", ms(1018)),
		ev(ms(1035), service, "starting", "running", time.Time{}),
		// The third kill: no events after it.
	}
	p := phases(kills, stamped, events)
	if p.Matched != 2 || p.Unmatched != 1 {
		t.Fatalf("matched %d, unmatched %d; want 2, 1", p.Matched, p.Unmatched)
	}
	if p.Reaped.MinMS != 10 || p.Reaped.MaxMS != 18 || p.Running.MinMS != 30 || p.Running.MaxMS != 35 || p.Stamped.MaxMS != 50 {
		t.Errorf("reaped %+v, running %+v, stamped %+v", p.Reaped, p.Running, p.Stamped)
	}
}
