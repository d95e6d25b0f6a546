package daemon

import (
	"context"
	"fmt"

	"github.com/corral-dev/corral/runtime/metrics"
	"github.com/corral-dev/corral/runtime/supervisor"
)

// serveMetrics starts the Prometheus endpoint if the configuration asks
// for one. A port it cannot listen on is an error at start.
func (d *Daemon) serveMetrics(ctx context.Context) error {
	listen := d.cfg.Metrics.Listen
	if listen == "" {
		return nil
	}
	l, err := metrics.Listen(listen)
	if err != nil {
		return fmt.Errorf("%s: daemon.metrics.listen %s: %w", d.opts.ConfigPath, listen, err)
	}
	reg := metrics.NewRegistry(d.metricsSnapshot, d.opts.Version)
	go func() {
		if err := metrics.Serve(ctx, l, metrics.Handler(reg), d.log); err != nil {
			d.log.WithError(err).Error("metrics endpoint")
		}
	}()
	return nil
}

// metricsSnapshot is every service's figures, read at scrape time: the
// supervisor's view, and each running sandbox's cgroup (a few small files
// per service).
func (d *Daemon) metricsSnapshot() []metrics.Service {
	var out []metrics.Service
	for _, s := range d.sorted() {
		v := s.snapshot()
		m := metrics.Service{
			Name: s.name, State: string(v.rec.State), Up: v.pid != 0,
			Restarts: v.restarts, OOMKills: v.oomKills, Health: v.health,
		}
		if m.State == "" {
			m.State = string(supervisor.Stopped)
		}
		if n := len(v.exits); n > 0 {
			m.LastExitCode, m.HasExited = v.exits[n-1].Code, true
		}
		if v.pid != 0 && v.cgroup != "" {
			if st, err := d.host.Usage(v.cgroup); err == nil {
				m.HasCgroup = true
				m.CPUSeconds = st.CPUUsage.Seconds()
				m.MemoryBytes, m.MemoryLimitBytes = st.MemoryUsage, st.MemoryLimit
				m.PidsCurrent, m.PidsLimit = st.PidsCurrent, st.PidsLimit
				m.CPUThrottledSeconds = st.CPUThrottled.Seconds()
			}
			m.LogLinesLost, _ = d.mgr.LogLoss(s.name)
		}
		out = append(out, m)
	}
	return out
}
