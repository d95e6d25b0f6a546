package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/health"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/spec"
)

// Health statuses shown by ps and status ("" when the service has no
// check).
const (
	healthStarting  = "starting"
	healthHealthy   = "healthy"
	healthUnhealthy = "unhealthy"
)

// probeResult is one health check's outcome, tagged with the sandbox it
// was made against so that a late result about an old sandbox is ignored.
type probeResult struct {
	sb     *sandbox.Sandbox
	ok     bool
	detail string
	at     time.Time
}

// startChecks begins the health checks of the service's current sandbox:
// one goroutine that probes every interval and hands each result to the
// service's goroutine. It ends when the sandbox does (stopChecks).
func (s *service) startChecks(sb *sandbox.Sandbox) {
	s.stopChecks()
	h := s.unit.Health
	if h == nil {
		return
	}
	s.tracker = health.NewTracker(*h, sb.Started())
	s.setHealth(healthStarting, "")
	prober, err := s.prober(sb, h)
	if err != nil {
		s.log.WithError(err).Error("health check cannot run")
		s.setHealth(healthUnhealthy, err.Error())
		return
	}
	ctx, cancel := context.WithCancel(s.d.ctx)
	done := make(chan struct{})
	s.checksStop = func() {
		cancel()
		// A check may be running in the sandbox (exec): wait for it, so
		// that the sandbox is not destroyed under it.
		<-done
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(h.Interval)
		defer tick.Stop()
		for {
			pctx, pcancel := context.WithTimeout(ctx, h.Timeout)
			ok, detail := prober.Probe(pctx)
			pcancel()
			if ctx.Err() != nil {
				return
			}
			select {
			case s.probes <- probeResult{sb: sb, ok: ok, detail: detail, at: time.Now()}:
			case <-ctx.Done():
				return
			}
			select {
			case <-tick.C:
			case <-ctx.Done():
				return
			}
		}
	}()
}

// stopChecks ends the current sandbox's health checks.
func (s *service) stopChecks() {
	if s.checksStop != nil {
		s.checksStop()
		s.checksStop = nil
	}
}

// prober makes the check that h describes for sb: http and tcp dial
// 127.0.0.1 in the sandbox's network namespace (the host's for network:
// host); exec runs the command inside the sandbox, under its limits.
func (s *service) prober(sb *sandbox.Sandbox, h *spec.Health) (health.Prober, error) {
	ns := health.NetNS{}
	if s.unit.Service.EffectiveNetwork() != spec.NetworkHost {
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

// observe feeds one result to the tracker and, when the status changes,
// to the state machine: the first success makes a starting service ready,
// Retries failures in a row make it unhealthy.
func (s *service) observe(r probeResult, timerC <-chan time.Time) <-chan time.Time {
	if r.sb != s.sb || s.tracker == nil {
		return timerC // about a sandbox that is gone
	}
	tr := s.tracker.Observe(r.ok, r.at, r.detail)
	switch s.tracker.Status() {
	case health.Healthy:
		s.setHealth(healthHealthy, r.detail)
	case health.Unhealthy:
		s.setHealth(healthUnhealthy, r.detail)
	default:
		s.setHealth(healthStarting, r.detail)
	}
	if !tr.Changed {
		return timerC
	}
	switch tr.To {
	case health.Healthy:
		s.log.WithField("check", r.detail).Info("healthy")
		if !s.unit.Service.Notify {
			timerC = s.step(evReady(), timerC)
		}
		s.publishHealth()
	case health.Unhealthy:
		s.log.WithField("check", r.detail).Warn("unhealthy")
		s.publishHealth()
		timerC = s.step(evUnhealthy(r.detail), timerC)
	}
	return timerC
}

func (s *service) setHealth(status, detail string) {
	s.mu.Lock()
	s.view.health, s.view.healthDetail = status, detail
	s.mu.Unlock()
}

// publishHealth reports a change of the health verdict as an event (and
// to the alerts).
func (s *service) publishHealth() {
	v := s.snapshot()
	s.d.events.publish(api.Event{
		Time: time.Now(), Service: s.name, From: string(v.rec.State), To: string(v.rec.State),
		Reason: v.healthDetail, PID: v.pid, Health: v.health,
	})
	s.d.observeAlert(s, v, nil)
}
