package spec

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// ErrNeedsDaemonRestart is returned (wrapped) by CheckReload for a change
// that a reload cannot apply.
var ErrNeedsDaemonRestart = errors.New("needs a daemon restart")

// Plan is what a reload from one configuration to the next does to each
// service. Every service is in exactly one of Add, Remove, Restart, Update
// and Unchanged. Remove is in the old file's order, every other list in
// the new file's order.
type Plan struct {
	// Add: services only in the new configuration: start them.
	Add []string
	// Remove: services only in the old configuration: stop them.
	Remove []string
	// Restart: services whose sandbox changes shape (anything of the
	// Service but its Resources): stop the old sandbox, start a new one.
	// A service with both kinds of change is here only.
	Restart []string
	// Update: services whose Resources alone changed: apply the new limits
	// to the running sandbox, without a restart.
	Update []string
	// Unchanged: services whose sandbox stays as it is. Their restart,
	// stop, logs or depends_on may have changed: see PolicyChanged.
	Unchanged []string
	// PolicyChanged: the services of Update and Unchanged whose restart,
	// stop, logs or depends_on changed: the supervisor takes the new
	// policy without touching the sandbox. (Services of Restart take their
	// whole new Unit anyway.)
	PolicyChanged []string
}

// Diff is the plan to go from configuration old to next. Daemon settings
// are not part of it: see CheckReload.
func Diff(old, next *Config) Plan {
	var p Plan
	for _, u := range next.Units {
		name := u.Service.Name
		was := old.Unit(name)
		switch {
		case was == nil:
			p.Add = append(p.Add, name)
			continue
		case sandboxChanged(&was.Service, &u.Service):
			p.Restart = append(p.Restart, name)
			continue
		case resourcesChanged(was.Service.Resources, u.Service.Resources):
			p.Update = append(p.Update, name)
		default:
			p.Unchanged = append(p.Unchanged, name)
		}
		if policyChanged(was, u) {
			p.PolicyChanged = append(p.PolicyChanged, name)
		}
	}
	for _, u := range old.Units {
		if next.Unit(u.Service.Name) == nil {
			p.Remove = append(p.Remove, u.Service.Name)
		}
	}
	return p
}

// sandboxChanged says whether anything but the resources differs between
// two versions of a service. Defaults compare equal to their explicit
// values, and env and capabilities compare as sets.
func sandboxChanged(a, b *Service) bool {
	a, b = a.AsDeclared(), b.AsDeclared()
	workdir := func(s *Service) string { return cmp.Or(s.Workdir, "/") }
	seccomp := func(s *Service) string { return cmp.Or(s.Security.Seccomp, SeccompDefault) }
	return !slices.Equal(a.Command, b.Command) ||
		!sameSet(a.Env, b.Env) ||
		workdir(a) != workdir(b) ||
		a.User != b.User ||
		a.EffectiveHostname() != b.EffectiveHostname() ||
		a.Rootfs != b.Rootfs ||
		imageChanged(a.Image, b.Image) ||
		a.EffectiveNetwork() != b.EffectiveNetwork() ||
		!slices.Equal(a.Publish, b.Publish) ||
		a.Egress.Restricted != b.Egress.Restricted ||
		!slices.Equal(a.Egress.Allow, b.Egress.Allow) ||
		!slices.Equal(a.Mounts, b.Mounts) ||
		!sameSet(a.Security.CapAdd, b.Security.CapAdd) ||
		seccomp(a) != seccomp(b) ||
		a.Security.WritableRoot != b.Security.WritableRoot ||
		a.Security.UnsafeHostMounts != b.Security.UnsafeHostMounts ||
		a.Security.HostUserNamespace != b.Security.HostUserNamespace ||
		a.Notify != b.Notify
}

// imageChanged says whether two services' images differ as the file says
// them (a tag that moved is the daemon's to see).
func imageChanged(a, b *Image) bool {
	if a == nil || b == nil {
		return a != b
	}
	return a.Ref != b.Ref || !slices.Equal(a.Entrypoint, b.Entrypoint) || a.EffectivePull() != b.EffectivePull() ||
		a.UserFromImage != b.UserFromImage || a.WorkdirFromImage != b.WorkdirFromImage
}

// Change is how two versions of a service's sandbox differ.
type Change int

const (
	// Same: the sandbox can stay as it is.
	Same Change = iota
	// LimitsOnly: only its resources differ; they can change in place.
	LimitsOnly
	// Reshaped: anything else differs; it needs a new sandbox.
	Reshaped
)

// Compare says how a sandbox made from old differs from one made from
// next, with the same rules as Diff.
func Compare(old, next *Service) Change {
	switch {
	case sandboxChanged(old, next):
		return Reshaped
	case resourcesChanged(old.Resources, next.Resources):
		return LimitsOnly
	}
	return Same
}

func resourcesChanged(a, b Resources) bool {
	return a.Memory != b.Memory || a.CPUs != b.CPUs || a.EffectivePids() != b.EffectivePids()
}

// policyChanged says whether the supervision of a unit changed.
func policyChanged(a, b *Unit) bool {
	byName := func(x, y Dependency) int { return cmp.Compare(x.Name, y.Name) }
	da := slices.SortedFunc(slices.Values(a.DependsOn), byName)
	db := slices.SortedFunc(slices.Values(b.DependsOn), byName)
	return a.Restart != b.Restart || a.Stop != b.Stop || a.Logs != b.Logs || !slices.Equal(da, db) ||
		!sameHealth(a.Health, b.Health) || !a.Alerts.Equal(b.Alerts)
}

func sameHealth(a, b *Health) bool {
	if a == nil || b == nil {
		return a == b
	}
	x, y := *a, *b
	return slices.Equal(x.Command, y.Command) && x.Kind == y.Kind && x.Port == y.Port && x.Path == y.Path &&
		x.StatusMin == y.StatusMin && x.StatusMax == y.StatusMax && x.Interval == y.Interval && x.Timeout == y.Timeout &&
		x.Retries == y.Retries && x.StartPeriod == y.StartPeriod && x.SuccessThreshold == y.SuccessThreshold && x.OnUnhealthy == y.OnUnhealthy
}

func sameSet(a, b []string) bool {
	return slices.Equal(slices.Compact(slices.Sorted(slices.Values(a))), slices.Compact(slices.Sorted(slices.Values(b))))
}

// CheckReload refuses a reload from old to next that changes a daemon
// setting: cgroup_parent (running sandboxes cannot move to another cgroup
// tree) or log_dir (running services keep writing where they write). Each
// such change is an error wrapping ErrNeedsDaemonRestart; the reload is to
// be refused as a whole and the running services left as they are.
func CheckReload(old, next *Config) error {
	var errs []error
	if old.CgroupParent != next.CgroupParent {
		errs = append(errs, fmt.Errorf("daemon.cgroup_parent changed from %s to %s: %w", old.CgroupParent, next.CgroupParent, ErrNeedsDaemonRestart))
	}
	if old.LogDir != next.LogDir {
		errs = append(errs, fmt.Errorf("daemon.log_dir changed from %s to %s: %w", old.LogDir, next.LogDir, ErrNeedsDaemonRestart))
	}
	if old.Bridge.Name != next.Bridge.Name || old.Bridge.Subnet != next.Bridge.Subnet || !slices.Equal(old.Bridge.DNS, next.Bridge.DNS) {
		errs = append(errs, fmt.Errorf("daemon.bridge, subnet or dns changed (the bridge's sandboxes keep what they were given): %w", ErrNeedsDaemonRestart))
	}
	if old.Metrics != next.Metrics {
		errs = append(errs, fmt.Errorf("daemon.metrics.listen changed from %q to %q: %w", old.Metrics.Listen, next.Metrics.Listen, ErrNeedsDaemonRestart))
	}
	return errors.Join(errs...)
}
