package daemon

import (
	"testing"
	"time"

	"github.com/corral-dev/corral/spec"
)

// TestReadyTimeoutCoversTheChecks: a dependent waits long enough for the
// start period and the checks that make a service healthy.
func TestReadyTimeoutCoversTheChecks(t *testing.T) {
	h := spec.DefaultHealth(spec.HealthTCP)
	h.StartPeriod, h.Interval, h.Timeout = 5*time.Second, time.Second, 500*time.Millisecond
	got := readyTimeout(&spec.Unit{Health: &h})
	if min := h.StartPeriod + time.Duration(h.Retries)*h.Interval; got < min {
		t.Errorf("readyTimeout %s, want at least %s", got, min)
	}
	if got := readyTimeout(&spec.Unit{Service: spec.Service{Notify: true}}); got != 90*time.Second {
		t.Errorf("notify readyTimeout %s", got)
	}
}
