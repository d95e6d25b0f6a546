package service

import (
	"fmt"
	"slices"

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
func alertProblems(v View, exit *api.Exit) (problems []string, fine bool) {
	// OOM kills in a sandbox that runs on are alerted as they happen
	// (alertOOM); an exit alerts for the OOM kill that ended it.
	if exit != nil && exit.Kind == api.ExitOOM {
		problems = append(problems, spec.AlertOOM)
	}
	switch {
	case v.Health == HealthUnhealthy:
		problems = append(problems, spec.AlertUnhealthy)
	case v.Rec.State == supervisor.Failed:
		problems = append(problems, spec.AlertFailed)
	case v.Rec.State == supervisor.CrashLoop:
		problems = append(problems, spec.AlertCrashLoop)
	}
	fine = len(problems) == 0 && v.Rec.State == supervisor.Running
	return problems, fine
}

// observeAlert hands the service's change to the alert sink. It runs on
// the actor's goroutine and never blocks on a sink.
func (a *Actor) observeAlert(v View, exit *api.Exit) {
	if a.deps.Alerts == nil {
		return // disabled settings still go through: they end an open incident
	}
	problems, fine := alertProblems(v, exit)
	if len(problems) == 0 && !fine {
		return
	}
	// The dispatcher keeps the last few exits and lines.
	o := alert.Observation{
		Service: a.name, Settings: a.unit.Alerts, State: string(v.Rec.State), Reason: v.Rec.Message,
		Time: a.clock.Now(), Exits: slices.Clone(v.Exits),
	}
	// The newest exit's lines go once, as the alert's last_lines.
	for i := range o.Exits {
		o.Exits[i].LastLines = nil
	}
	if n := len(v.Exits); n > 0 {
		o.LastLines = v.Exits[n-1].LastLines
	}
	if v.Health == HealthUnhealthy && v.HealthDetail != "" {
		o.Reason = "health check: " + v.HealthDetail
	}
	if fine {
		a.deps.Alerts.Observe(o)
		return
	}
	for _, p := range problems {
		o.Problem = p
		if p == spec.AlertOOM && exit != nil {
			o.Reason = exit.Reason
		}
		a.deps.Alerts.Observe(o)
	}
}

// alertOOM alerts that the OOM killer killed n processes of the service's
// running sandbox.
func (a *Actor) alertOOM(v View, n, limit uint64) {
	if a.deps.Alerts == nil {
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
	a.deps.Alerts.Observe(alert.Observation{
		Service: a.name, Settings: a.unit.Alerts, State: string(v.Rec.State), Reason: reason,
		Time: a.clock.Now(), Problem: spec.AlertOOM,
	})
}
