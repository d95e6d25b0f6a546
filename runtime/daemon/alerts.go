package daemon

import (
	"fmt"
	"slices"
	"time"

	"github.com/corral-dev/corral/runtime/alert"
	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// alertProblems says what, in the service's present state, is worth an
// alert: failed, crash loop, an OOM kill just now (exit is the exit that
// led here, if any), unhealthy. None with fine=true: the service runs (and
// is ready and healthy), which closes an incident once it lasts. None with
// fine=false: in between (backoff, stopping, stopped by the operator).
func alertProblems(v view, exit *api.Exit) (problems []string, fine bool) {
	// OOM kills in a sandbox that runs on are alerted as they happen
	// (alertOOM); an exit alerts for the OOM kill that ended it.
	if exit != nil && exit.Kind == api.ExitOOM {
		problems = append(problems, spec.AlertOOM)
	}
	switch {
	case v.health == healthUnhealthy:
		problems = append(problems, spec.AlertUnhealthy)
	case v.rec.State == supervisor.Failed:
		problems = append(problems, spec.AlertFailed)
	case v.rec.State == supervisor.CrashLoop:
		problems = append(problems, spec.AlertCrashLoop)
	}
	fine = len(problems) == 0 && v.rec.State == supervisor.Running
	return problems, fine
}

// observeAlert hands the service's change to the alert dispatcher. It runs
// on the service's goroutine and never blocks on a sink.
func (d *Daemon) observeAlert(s *service, v view, exit *api.Exit) {
	if d.alerts == nil {
		return // disabled settings still go through: they end an open incident
	}
	problems, fine := alertProblems(v, exit)
	if len(problems) == 0 && !fine {
		return
	}
	// The dispatcher keeps the last few exits and lines.
	o := alert.Observation{
		Service: s.name, Settings: s.unit.Alerts, State: string(v.rec.State), Reason: v.rec.Message,
		Time: time.Now(), Exits: slices.Clone(v.exits),
	}
	// The newest exit's lines go once, as the alert's last_lines.
	for i := range o.Exits {
		o.Exits[i].LastLines = nil
	}
	if n := len(v.exits); n > 0 {
		o.LastLines = v.exits[n-1].LastLines
	}
	if v.health == healthUnhealthy && v.healthDetail != "" {
		o.Reason = "health check: " + v.healthDetail
	}
	if fine {
		d.alerts.Observe(o)
		return
	}
	for _, p := range problems {
		o.Problem = p
		if p == spec.AlertOOM && exit != nil {
			o.Reason = exit.Reason
		}
		d.alerts.Observe(o)
	}
}

// alertOOM alerts that the OOM killer killed n processes of the service's
// running sandbox.
func (d *Daemon) alertOOM(s *service, v view, n, limit uint64) {
	if d.alerts == nil {
		return
	}
	what := fmt.Sprintf("%d processes", n)
	if n == 1 {
		what = "a process"
	}
	reason := "the kernel OOM killer killed " + what + " in the sandbox"
	if limit > 0 {
		reason += " (memory limit " + spec.FormatBytes(int64(limit)) + ")"
	}
	d.alerts.Observe(alert.Observation{
		Service: s.name, Settings: s.unit.Alerts, State: string(v.rec.State), Reason: reason,
		Time: time.Now(), Problem: spec.AlertOOM,
	})
}
