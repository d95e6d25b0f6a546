package daemon

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
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
		s.published(tr.To)
	case health.Unhealthy:
		s.log.WithField("check", r.detail).Warn("unhealthy")
		s.published(tr.To)
		timerC = s.step(evUnhealthy(r.detail), timerC)
	}
	return timerC
}

func (s *service) setHealth(status, detail string) {
	s.mu.Lock()
	s.view.health, s.view.healthDetail = status, detail
	s.mu.Unlock()
}

// notifyDir is where a service's sd_notify socket lives on the host; it is
// bound into the sandbox at notifyMount.
func (d *Daemon) notifyDir(name string) string { return filepath.Join(d.opts.StateDir, "notify", name) }

const (
	notifyMount  = "/run/corral"
	notifySocket = notifyMount + "/notify.sock"
)

// sandboxService is the service as its sandbox is made: with notify, its
// socket's directory bound in and NOTIFY_SOCKET set. Adopted sandboxes are
// compared with it too.
func (d *Daemon) sandboxService(u *spec.Unit) *spec.Service {
	svc := u.Service
	if !svc.Notify {
		return &svc
	}
	svc.Env = append(append([]string(nil), svc.Env...), "NOTIFY_SOCKET="+notifySocket)
	svc.Mounts = append(append([]spec.Mount(nil), svc.Mounts...), spec.Mount{Source: d.notifyDir(svc.Name), Destination: notifyMount})
	return &svc
}

// listenNotify opens the service's notify socket (replacing one a dead
// daemon left) and hands READY=1 and STATUS= messages to the service's
// goroutine until the socket is closed.
func (s *service) listenNotify() error {
	dir := s.d.notifyDir(s.name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	path := filepath.Join(dir, "notify.sock")
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("notify socket: %w", err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("notify socket: %w", err)
	}
	// Any user of the sandbox may report readiness (services often drop
	// root before they are ready).
	if err := os.Chmod(path, 0o777); err != nil {
		conn.Close()
		return fmt.Errorf("notify socket: %w", err)
	}
	s.notifyConn = conn
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				return // closed
			}
			for _, line := range strings.Split(string(buf[:n]), "\n") {
				key, val, _ := strings.Cut(line, "=")
				switch key {
				case "READY":
					if val == "1" {
						select {
						case s.notes <- notification{ready: true}:
						case <-s.d.ctx.Done():
							return
						}
					}
				case "STATUS":
					s.mu.Lock()
					s.view.notifyStatus = val
					s.mu.Unlock()
				}
			}
		}
	}()
	return nil
}

// closeNotify closes the notify socket and removes its directory.
func (s *service) closeNotify() {
	if s.notifyConn == nil {
		return
	}
	s.notifyConn.Close()
	s.notifyConn = nil
	if err := os.RemoveAll(s.d.notifyDir(s.name)); err != nil {
		s.log.WithError(err).Warn("remove notify socket")
	}
}

// notification is a message from the service's notify socket.
type notification struct{ ready bool }

// published reports a change of the health verdict as an event (and to
// the alerts).
func (s *service) published(to health.Status) {
	v := s.snapshot()
	s.d.events.publish(api.Event{
		Time: time.Now(), Service: s.name, From: string(v.rec.State), To: string(v.rec.State),
		Reason: v.healthDetail, PID: v.pid, Health: v.health,
	})
	s.d.observeAlert(s, v, nil)
}
