package daemon

import (
	"context"
	"fmt"
	"io"
	"maps"
	"path/filepath"
	"slices"
	"strings"

	"github.com/corral-dev/corral/isolation/audit"
	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/logs"
	"github.com/corral-dev/corral/runtime/service"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// The daemon is the API's backend.
var _ api.Backend = (*Daemon)(nil)

func (d *Daemon) sorted() []*service.Actor {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []*service.Actor
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
	for _, a := range d.sorted() {
		out = append(out, d.describe(a.Name(), a.Snapshot()))
	}
	return out, nil
}

func (d *Daemon) describe(name string, v service.View) api.Service {
	a := api.Service{
		Name: name, State: string(v.Shown()), Desired: string(v.Rec.Desired), PID: v.PID,
		Restarts: v.Rec.Restarts, Message: v.Rec.Message, NextAttempt: v.Rec.NextAttempt,
	}
	if a.Message == "" {
		a.Message = v.Note
	}
	a.Health, a.HealthDetail, a.NotifyStatus = v.Health, v.HealthDetail, v.NotifyStatus
	a.OOMKillsTotal = v.OOMKills
	if len(v.Restarts) > 0 {
		a.RestartsByKind = maps.Clone(v.Restarts)
	}
	if v.Rec.State == supervisor.Running || v.Rec.State == supervisor.Stopping || v.Rec.AwaitingReady() {
		a.StartedAt = v.Rec.StartedAt
	}
	if n := len(v.Exits); n > 0 {
		e := v.Exits[n-1]
		a.LastExit = &e
	}
	if v.PID != 0 && v.Cgroup != "" {
		if d.deps.usage != nil {
			if st, err := d.deps.usage(v.Cgroup); err == nil {
				a.MemoryUsage, a.MemoryLimit = st.MemoryUsage, st.MemoryLimit
				a.CPUUsage, a.PidsCurrent, a.PidsLimit = st.CPUUsage, st.PidsCurrent, st.PidsLimit
				a.CPUThrottled = st.CPUThrottled
			}
		}
		if d.deps.logLoss != nil {
			lost, failing := d.deps.logLoss(name)
			a.LogLinesLost = lost
			if failing != 0 {
				a.LogError = failing.Error()
			}
		}
	}
	return a
}

func (d *Daemon) lookup(name string) (*service.Actor, error) {
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
	v := s.Snapshot()
	d.mu.Lock()
	dir := logDir(d.cfg, name)
	st := &api.ServiceDetail{
		Service: d.describe(name, v), Command: v.Command, Image: v.Image, Cgroup: v.Cgroup,
		LogFile: filepath.Join(dir, "output.log"), Exits: v.Exits,
	}
	if u := d.cfg.Unit(name); u != nil {
		st.Loosened = u.Service.Loosenings()
		st.Network = string(u.Service.EffectiveNetwork())
		for _, p := range u.Service.Publish {
			st.Publish = append(st.Publish, p.String())
		}
		st.EgressRestricted = u.Service.Egress.Restricted
		if u.Service.Egress.Restricted {
			for _, r := range u.Service.Egress.Allow {
				st.Egress = append(st.Egress, r.String())
			}
		}
	}
	d.mu.Unlock()
	if v.PID != 0 {
		if ns, ok := d.networkStatus([]string{name})[name]; ok {
			st.Address = ns.Addr.String()
		}
	}
	return st, nil
}

func (d *Daemon) each(ctx context.Context, names []string, kind supervisor.EventKind) error {
	if len(names) == 0 {
		return fmt.Errorf("%w: no service named", api.ErrInvalid)
	}
	var as []*service.Actor
	for _, n := range names {
		a, err := d.lookup(n)
		if err != nil {
			return err
		}
		as = append(as, a)
	}
	for _, a := range as {
		if err := a.Send(ctx, kind, true); err != nil {
			return err
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
	dir := logDir(d.config(), req.Name)
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
	moved := d.restartMovedImages(next, &p)
	plan := &api.Plan{Add: p.Add, Remove: p.Remove, Restart: p.Restart, Update: p.Update, Unchanged: p.Unchanged, Why: moved}
	if dryRun {
		return plan, nil
	}
	d.log.WithFields(map[string]any{
		"add": strings.Join(p.Add, ","), "remove": strings.Join(p.Remove, ","),
		"restart": strings.Join(p.Restart, ","), "update": strings.Join(p.Update, ","),
	}).Info("reloading")
	for _, name := range slices.Sorted(maps.Keys(moved)) {
		d.log.WithField("service", name).Info("restarting: " + moved[name])
	}

	// Removed services stop first, dependents before dependencies.
	d.removeWaves(cur, func(name string) bool { return slices.Contains(p.Remove, name) }, true)
	d.mu.Lock()
	for _, n := range p.Remove {
		delete(d.services, n)
	}
	d.cfg = next
	d.mu.Unlock()

	for _, u := range next.Units {
		name := u.Service.Name
		if a := d.service(name); a != nil {
			// Unchanged ones get the new unit too: later diffs then
			// compare like with like.
			_ = a.Update(ctx, u, logDir(next, name), slices.Contains(p.Restart, name))
		}
	}
	if d.deps.refreshNetwork != nil {
		// A reload is when egress names are resolved again, whatever
		// their TTL says.
		if err := d.deps.refreshNetwork(); err != nil {
			d.log.WithError(err).Warn("egress names not resolved again: their last addresses stay")
		}
	}
	d.startWaves(next, d.register(next, p.Add))
	return plan, nil
}

// restartMovedImages moves to p's Restart the services it would leave
// running whose sandbox runs another digest than the one their image's
// name has in the store now (a `corral image pull` or import moved the
// tag since): the file is the same but what it names is not, and a
// reload is when the operator asked for the file to hold. It returns why
// each was moved. A name the store no longer has leaves its service
// alone: its next start pulls it or fails, as its pull: says.
func (d *Daemon) restartMovedImages(next *spec.Config, p *spec.Plan) map[string]string {
	if d.deps.imageDigest == nil {
		return nil
	}
	why := map[string]string{}
	for _, name := range slices.Concat(p.Update, p.Unchanged) {
		u, a := next.Unit(name), d.service(name)
		if a == nil || u.Service.Image == nil {
			continue
		}
		v := a.Snapshot()
		at := strings.LastIndex(v.Image, "@")
		if v.PID == 0 || at < 0 {
			continue // no sandbox, or not one from an image
		}
		runs := v.Image[at+1:]
		now, err := d.deps.imageDigest(u.Service.Image.Ref)
		if err != nil || now == runs {
			continue
		}
		why[name] = fmt.Sprintf("image %s is now %s; the sandbox runs %s", u.Service.Image.Ref, now, runs)
	}
	if len(why) == 0 {
		return nil
	}
	moved := func(name string) bool { _, ok := why[name]; return ok }
	p.Update = slices.DeleteFunc(p.Update, moved)
	p.Unchanged = slices.DeleteFunc(p.Unchanged, moved)
	p.PolicyChanged = slices.DeleteFunc(p.PolicyChanged, moved)
	reshaped := p.Restart
	p.Restart = nil // again, in the file's order
	for _, u := range next.Units {
		if name := u.Service.Name; moved(name) || slices.Contains(reshaped, name) {
			p.Restart = append(p.Restart, name)
		}
	}
	return why
}

// Audit is `corral audit`: the services' hardening as configured now.
func (d *Daemon) Audit(ctx context.Context, names []string) ([]api.AuditReport, error) {
	cfg := d.config()
	for _, n := range names {
		if cfg.Unit(n) == nil {
			return nil, fmt.Errorf("%w: service %q is not in %s", api.ErrNotFound, n, d.opts.ConfigPath)
		}
	}
	var out []api.AuditReport
	for _, u := range cfg.Units {
		if len(names) == 0 || slices.Contains(names, u.Service.Name) {
			out = append(out, AuditReport(&u.Service))
		}
	}
	return out, nil
}

// AuditReport is the API's form of audit.Service's report.
func AuditReport(s *spec.Service) api.AuditReport {
	r := audit.Service(s)
	out := api.AuditReport{Service: r.Service, Score: r.Score}
	for _, c := range r.Checks {
		out.Checks = append(out.Checks, api.AuditCheck{Name: c.Name, Setting: c.Setting, Verdict: c.Verdict, Weight: c.Weight, Exposure: c.Exposure})
	}
	return out
}
