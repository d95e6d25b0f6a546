package daemon

import (
	"context"
	"fmt"

	"github.com/corral-dev/corral/runtime/metrics"
	"github.com/corral-dev/corral/runtime/network"
	"github.com/corral-dev/corral/runtime/service"
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
	actors := d.sorted()
	views := make([]service.View, len(actors))
	var running []string
	for i, a := range actors {
		views[i] = a.Snapshot()
		if views[i].PID != 0 {
			running = append(running, a.Name())
		}
	}
	net := d.networkStatus(running)
	for i, a := range actors {
		v := views[i]
		m := metrics.Service{
			Name: a.Name(), State: string(v.Shown()), Up: v.PID != 0,
			Restarts: v.Restarts, OOMKills: v.OOMKills, Health: v.Health,
		}
		if n := len(v.Exits); n > 0 {
			m.LastExitCode, m.HasExited = v.Exits[n-1].Code, true
		}
		if v.PID != 0 && v.Cgroup != "" {
			if d.deps.usage != nil {
				if st, err := d.deps.usage(v.Cgroup); err == nil {
					m.HasCgroup = true
					m.CPUSeconds = st.CPUUsage.Seconds()
					m.MemoryBytes, m.MemoryLimitBytes = st.MemoryUsage, st.MemoryLimit
					m.PidsCurrent, m.PidsLimit = st.PidsCurrent, st.PidsLimit
					m.CPUThrottledSeconds = st.CPUThrottled.Seconds()
				}
			}
			if d.deps.logLoss != nil {
				m.LogLinesLost, _ = d.deps.logLoss(a.Name())
			}
			if st, ok := net[a.Name()]; ok {
				m.OnBridge, m.RxBytes, m.TxBytes = true, st.RxBytes, st.TxBytes
				m.Restricted, m.EgressDenied = st.Restricted, st.Denied
			}
		}
		out = append(out, m)
	}
	return out
}

// networkStatus is the bridge's view of the services of names that are
// on it, in one call (one dump of the firewall's counters).
func (d *Daemon) networkStatus(names []string) map[string]network.Status {
	if d.deps.network == nil || len(names) == 0 {
		return nil
	}
	return d.deps.network(names)
}
