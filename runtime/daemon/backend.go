package daemon

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"strings"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/logs"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// The daemon is the API's backend.
var _ api.Backend = (*Daemon)(nil)

func (d *Daemon) sorted() []*service {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*service
	for _, u := range d.cfg.Units {
		if s, ok := d.services[u.Service.Name]; ok {
			out = append(out, s)
		}
	}
	return out
}

// List is `corral ps`.
func (d *Daemon) List(ctx context.Context) ([]api.Service, error) {
	var out []api.Service
	for _, s := range d.sorted() {
		out = append(out, d.describe(s, s.snapshot()))
	}
	return out, nil
}

func (d *Daemon) describe(s *service, v view) api.Service {
	a := api.Service{
		Name: s.name, State: string(v.rec.State), Desired: string(v.rec.Desired), PID: v.pid,
		Restarts: v.rec.Restarts, Message: v.rec.Message, NextAttempt: v.rec.NextAttempt,
	}
	if a.State == "" {
		a.State = string(supervisor.Stopped)
	}
	if a.Message == "" {
		a.Message = v.note
	}
	a.Health, a.HealthDetail, a.NotifyStatus = v.health, v.healthDetail, v.notifyStatus
	a.OOMKillsTotal = v.oomKills
	if len(v.restarts) > 0 {
		a.RestartsByKind = maps.Clone(v.restarts)
	}
	if v.rec.State == supervisor.Running || v.rec.State == supervisor.Stopping || v.rec.AwaitingReady() {
		a.StartedAt = v.rec.StartedAt
	}
	if n := len(v.exits); n > 0 {
		e := v.exits[n-1]
		a.LastExit = &e
	}
	if v.pid != 0 && v.cgroup != "" {
		if st, err := d.host.Usage(v.cgroup); err == nil {
			a.MemoryUsage, a.MemoryLimit = st.MemoryUsage, st.MemoryLimit
			a.CPUUsage, a.PidsCurrent, a.PidsLimit = st.CPUUsage, st.PidsCurrent, st.PidsLimit
			a.CPUThrottled = st.CPUThrottled
		}
		lost, failing := d.mgr.LogLoss(s.name)
		a.LogLinesLost = lost
		if failing != 0 {
			a.LogError = failing.Error()
		}
	}
	return a
}

func (d *Daemon) lookup(name string) (*service, error) {
	if s := d.service(name); s != nil {
		return s, nil
	}
	return nil, fmt.Errorf("%w: service %q is not in %s", api.ErrNotFound, name, d.opts.ConfigPath)
}

// Status is `corral status NAME`.
func (d *Daemon) Status(ctx context.Context, name string) (*api.ServiceDetail, error) {
	s, err := d.lookup(name)
	if err != nil {
		return nil, err
	}
	v := s.snapshot()
	d.mu.Lock()
	logDir := filepath.Join(d.cfg.LogDir, name)
	var loosened []string
	if u := d.cfg.Unit(name); u != nil {
		loosened = u.Service.Loosenings()
	}
	d.mu.Unlock()
	return &api.ServiceDetail{
		Service: d.describe(s, v), Command: v.command, Cgroup: v.cgroup,
		LogFile: filepath.Join(logDir, "output.log"), Exits: v.exits, Loosened: loosened,
	}, nil
}

func (d *Daemon) each(ctx context.Context, names []string, kind supervisor.EventKind) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: no service named", api.ErrInvalid)
	}
	var ss []*service
	for _, n := range names {
		s, err := d.lookup(n)
		if err != nil {
			return err
		}
		ss = append(ss, s)
	}
	for _, s := range ss {
		reply := make(chan error, 1)
		if err := s.send(ctx, command{kind: cmdEvent, ev: supervisor.Event{Kind: kind}, reply: reply}); err != nil {
			return err
		}
		select {
		case <-reply:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// Start is `corral start`.
func (d *Daemon) Start(ctx context.Context, names []string) error {
	return d.each(ctx, names, supervisor.EvStart)
}

// Stop is `corral stop`.
func (d *Daemon) Stop(ctx context.Context, names []string) error {
	return d.each(ctx, names, supervisor.EvStop)
}

// Restart is `corral restart`.
func (d *Daemon) Restart(ctx context.Context, names []string) error {
	return d.each(ctx, names, supervisor.EvRestart)
}

// Events is `corral events`.
func (d *Daemon) Events(ctx context.Context) (<-chan api.Event, error) {
	ch, cancel := d.events.subscribe()
	go func() {
		<-ctx.Done()
		cancel()
	}()
	return ch, nil
}

// Logs is `corral logs`.
func (d *Daemon) Logs(ctx context.Context, req api.LogsRequest, w io.Writer) error {
	if _, err := d.lookup(req.Name); err != nil {
		return err
	}
	d.mu.Lock()
	dir := filepath.Join(d.cfg.LogDir, req.Name)
	d.mu.Unlock()
	if req.Follow {
		return logs.Follow(ctx, dir, req.Tail, w)
	}
	lines, err := logs.Tail(dir, req.Tail)
	if err != nil {
		return err
	}
	for _, l := range lines {
		if _, err := io.WriteString(w, l+"\n"); err != nil {
			return err
		}
	}
	return nil
}

// Reload re-reads the service file and applies the difference. An invalid
// file changes nothing and its errors are returned, all of them.
func (d *Daemon) Reload(ctx context.Context, dryRun bool) (*api.Plan, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	next, err := spec.LoadOn(d.opts.ConfigPath, d.opts.Host)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: the running configuration is unchanged:\n%w", api.ErrInvalid, d.opts.ConfigPath, err)
	}
	d.mu.Lock()
	cur := d.cfg
	d.mu.Unlock()
	if err := spec.CheckReload(cur, next); err != nil {
		return nil, fmt.Errorf("%w: %w", api.ErrInvalid, err)
	}
	p := spec.Diff(cur, next)
	plan := &api.Plan{Add: p.Add, Remove: p.Remove, Restart: p.Restart, Update: p.Update, Unchanged: p.Unchanged}
	if dryRun {
		return plan, nil
	}
	d.log.WithFields(map[string]any{
		"add": strings.Join(p.Add, ","), "remove": strings.Join(p.Remove, ","),
		"restart": strings.Join(p.Restart, ","), "update": strings.Join(p.Update, ","),
	}).Info("reloading")

	// Removed services stop first, dependents before dependencies.
	removed := map[string]bool{}
	for _, n := range p.Remove {
		removed[n] = true
	}
	for _, wave := range spec.StopOrder(cur) {
		var ss []*service
		for _, n := range wave {
			if removed[n] {
				s := d.service(n)
				_ = s.send(ctx, command{kind: cmdRemove, shutdown: true, forget: true})
				ss = append(ss, s)
			}
		}
		waitDone(ss)
	}
	d.mu.Lock()
	for n := range removed {
		delete(d.services, n)
	}
	d.cfg = next
	d.mu.Unlock()

	restart := map[string]bool{}
	for _, n := range p.Restart {
		restart[n] = true
	}
	for _, u := range next.Units {
		name := u.Service.Name
		if s := d.service(name); s != nil && (restart[name] || contains(p.Update, name) || contains(p.PolicyChanged, name)) {
			_ = s.send(ctx, command{kind: cmdUpdate, unit: u, restart: restart[name]})
		} else if s != nil {
			// Unchanged: the same unit, so later diffs compare like with like.
			_ = s.send(ctx, command{kind: cmdUpdate, unit: u})
		}
	}
	d.startAll(next, p.Add)
	return plan, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
