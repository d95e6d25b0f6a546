package service

import (
	"context"
	"fmt"
	"time"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/health"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// probeResult is one health check's outcome, tagged with the sandbox it
// was made against so that a late result about an old sandbox is ignored.
type probeResult struct {
	sb     Sandbox
	ok     bool
	detail string
	at     time.Time
}

// Probers makes the check that u's health describes for sb: http and tcp
// dial 127.0.0.1 in the sandbox's network namespace (the host's for
// network: host); exec runs the command inside the sandbox, under its
// limits.
func Probers(sb Sandbox, u *spec.Unit) (health.Prober, error) {
	h := u.Health
	ns := health.NetNS{}
	if u.Service.EffectiveNetwork() != spec.NetworkHost {
		pid, err := sb.Pid()
		if err != nil {
			return nil, err
		}
		ns.Pid = pid
	}
	switch h.Kind {
	case spec.HealthHTTP:
		return health.HTTP(*h, ns), nil
	case spec.HealthTCP:
		return health.TCP(*h, ns), nil
	case spec.HealthExec:
		return health.ExecProber(sb.Exec, h.Command), nil
	}
	return nil, fmt.Errorf("unknown health check kind %q", h.Kind)
}

// startChecks begins the health checks of the service's current sandbox:
// one goroutine that probes every interval and hands each result to the
// actor. It ends when the sandbox does (stopChecks).
func (a *Actor) startChecks(sb Sandbox) {
	a.stopChecks()
	h := a.unit.Health
	if h == nil {
		return
	}
	a.tracker = health.NewTracker(*h, sb.Started())
	a.setHealth(HealthStarting, "")
	prober, err := a.deps.Probe(sb, a.unit)
	if err != nil {
		a.log.WithError(err).Error("health check cannot run")
		a.setHealth(HealthUnhealthy, err.Error())
		return
	}
	ctx, cancel := context.WithCancel(a.ctx)
	done := make(chan struct{})
	a.checksStop = func() {
		cancel()
		// A check may be running in the sandbox (exec): wait for it, so
		// that the sandbox is not destroyed under it.
		<-done
	}
	tick := a.clock.NewTicker(h.Interval)
	go func() {
		defer close(done)
		defer tick.Stop()
		for {
			pctx, pcancel := context.WithTimeout(ctx, h.Timeout)
			ok, detail := prober.Probe(pctx)
			pcancel()
			if ctx.Err() != nil {
				return
			}
			select {
			case a.probes <- probeResult{sb: sb, ok: ok, detail: detail, at: a.clock.Now()}:
			case <-ctx.Done():
				return
			}
			select {
			case <-tick.Chan():
			case <-ctx.Done():
				return
			}
		}
	}()
}

// stopChecks ends the current sandbox's health checks.
func (a *Actor) stopChecks() {
	if a.checksStop != nil {
		a.checksStop()
		a.checksStop = nil
	}
}

// observe feeds one result to the tracker and, when the status changes,
// to the state machine: the first success makes a starting service ready,
// Retries failures in a row make it unhealthy.
func (a *Actor) observe(r probeResult) {
	if r.sb != a.sb || a.tracker == nil {
		return // about a sandbox that is gone
	}
	tr := a.tracker.Observe(r.ok, r.at, r.detail)
	switch a.tracker.Status() {
	case health.Healthy:
		a.setHealth(HealthHealthy, r.detail)
	case health.Unhealthy:
		a.setHealth(HealthUnhealthy, r.detail)
	default:
		a.setHealth(HealthStarting, r.detail)
	}
	if !tr.Changed {
		return
	}
	switch tr.To {
	case health.Healthy:
		a.log.WithField("check", r.detail).Info("healthy")
		if !a.unit.Service.Notify {
			a.step(supervisor.Event{Kind: supervisor.EvReady})
		}
		a.publishHealth()
	case health.Unhealthy:
		a.log.WithField("check", r.detail).Warn("unhealthy")
		a.publishHealth()
		a.step(supervisor.Event{Kind: supervisor.EvUnhealthy, Reason: r.detail})
	}
}

func (a *Actor) setHealth(status, detail string) {
	a.mu.Lock()
	a.view.Health, a.view.HealthDetail = status, detail
	a.changedLocked()
	a.mu.Unlock()
}

// publishHealth reports a change of the health verdict as an event (and
// to the alerts).
func (a *Actor) publishHealth() {
	v := a.Snapshot()
	if a.deps.Events != nil {
		a.deps.Events.Publish(api.Event{
			Time: a.clock.Now(), Service: a.name, From: string(v.Rec.State), To: string(v.Rec.State),
			Reason: v.HealthDetail, PID: v.PID, Health: v.Health,
		})
	}
	a.observeAlert(v, nil)
}
