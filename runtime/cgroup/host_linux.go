package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	cgroups "github.com/containerd/cgroups/v3"
	"github.com/containerd/cgroups/v3/cgroup1"
	"github.com/containerd/cgroups/v3/cgroup2"
	"github.com/moby/sys/mountinfo"
)

// Host is the cgroup layout of this machine, read once at start.
type Host struct {
	Mode Mode
	// Mounts maps each v1 controller to its hierarchy's mount point; on v2
	// every controller maps to the unified mount point.
	Mounts map[string]string
	// Roots are the mount points of every cgroup hierarchy (v1 and v2),
	// where corral's cgroups are made and must be removed from.
	Roots []string
}

// Detect reads the host's cgroup layout from the mount table and checks
// that every Required controller is available.
func Detect() (*Host, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	h := &Host{Mounts: map[string]string{}}
	switch cgroups.Mode() {
	case cgroups.Legacy:
		h.Mode = Legacy
	case cgroups.Hybrid:
		h.Mode = Hybrid
	case cgroups.Unified:
		h.Mode = Unified
	default:
		return nil, fmt.Errorf("%w: no cgroup filesystem is mounted at /sys/fs/cgroup", ErrMissingController)
	}
	for _, m := range mounts {
		h.Roots = append(h.Roots, m.Mountpoint)
		if m.FSType == "cgroup" {
			for _, opt := range strings.Split(m.VFSOptions, ",") {
				h.Mounts[opt] = m.Mountpoint
			}
		}
	}
	if h.Mode == Unified {
		data, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		if err != nil {
			return nil, fmt.Errorf("read cgroup2 controllers: %w", err)
		}
		for _, c := range strings.Fields(string(data)) {
			h.Mounts[c] = "/sys/fs/cgroup"
		}
	}
	if err := h.check(); err != nil {
		return nil, err
	}
	return h, nil
}

func (h *Host) check() error {
	var missing []string
	for _, c := range Required {
		if _, ok := h.Mounts[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	where := "no v1 hierarchy with it is mounted (see /proc/self/mountinfo)"
	if h.Mode == Unified {
		where = "it is not listed in /sys/fs/cgroup/cgroup.controllers"
	}
	return fmt.Errorf("%w: %s: %s; corral needs the %s controllers for its limits",
		ErrMissingController, strings.Join(missing, ", "), where, strings.Join(Required, ", "))
}

// CheckParent refuses, on cgroup v2, to make sandboxes under parent when
// corral itself runs in parent or one of its ancestors (other than the
// root cgroup): the kernel would refuse the controllers the limits need.
// v1 has no such rule.
func (h *Host) CheckParent(parent string) error {
	if h.Mode != Unified {
		return nil
	}
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return fmt.Errorf("read own cgroup: %w", err)
	}
	self, err := selfPath(string(data))
	if err != nil {
		return fmt.Errorf("read own cgroup: %w", err)
	}
	return checkParent(self, parent)
}

// Exists reports whether the cgroup at path (e.g. "/corral/web") exists in
// the hierarchy that holds the memory controller.
func (h *Host) Exists(path string) bool {
	_, err := os.Stat(filepath.Join(h.Mounts["memory"], path))
	return err == nil
}

// Missing returns path and those of its ancestors that do not exist yet,
// deepest first: the cgroups that making path will create.
func (h *Host) Missing(path string) []string {
	var out []string
	for p := filepath.Clean(path); p != "/" && !h.Exists(p); p = filepath.Dir(p) {
		out = append(out, p)
	}
	return out
}

// RemoveEmpty removes the cgroup at path from every hierarchy where it
// exists and is empty. A cgroup still in use (by a concurrent sandbox) is
// left alone: that is not an error.
func (h *Host) RemoveEmpty(path string) error {
	var errs []error
	for _, root := range h.Roots {
		err := syscall.Rmdir(filepath.Join(root, path))
		if err == nil || errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.EBUSY) || errors.Is(err, syscall.ENOTEMPTY) {
			continue
		}
		errs = append(errs, fmt.Errorf("remove cgroup %s in %s: %w", path, root, err))
	}
	return errors.Join(errs...)
}

// Procs lists the processes in the cgroup at path (from the pids
// hierarchy, which every sandbox has).
func (h *Host) Procs(path string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(h.Mounts["pids"], path, "cgroup.procs"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// Stats reads the counters of the cgroup at path. Read them before the
// cgroup is removed: they go with it.
func (h *Host) Stats(path string) (Stats, error) {
	if h.Mode == Unified {
		return h.statsV2(path)
	}
	return h.statsV1(path)
}

func (h *Host) statsV1(path string) (Stats, error) {
	hierarchy := func() ([]cgroup1.Subsystem, error) {
		return []cgroup1.Subsystem{
			cgroup1.NewMemory(filepath.Dir(h.Mounts["memory"])),
			cgroup1.NewPids(filepath.Dir(h.Mounts["pids"])),
			cgroup1.NewCpuacct(filepath.Dir(h.Mounts["cpuacct"])),
			cgroup1.NewCpu(filepath.Dir(h.Mounts["cpu"])),
		}, nil
	}
	cg, err := cgroup1.Load(cgroup1.StaticPath(path), cgroup1.WithHierarchy(hierarchy))
	if err != nil {
		return Stats{}, fmt.Errorf("load cgroup %s: %w", path, err)
	}
	m, err := cg.Stat(cgroup1.IgnoreNotExist)
	if err != nil {
		return Stats{}, fmt.Errorf("read cgroup %s: %w", path, err)
	}
	// After the cgroup is gone, sub-structs come back nil: check each.
	var s Stats
	if m.Memory != nil && m.Memory.Usage != nil {
		s.MemoryUsage = m.Memory.Usage.Usage
		s.MemoryMaxUsage = m.Memory.Usage.Max
		s.MemoryLimit = limit(m.Memory.Usage.Limit)
	}
	if m.MemoryOomControl != nil {
		s.OOMKills = m.MemoryOomControl.OomKill
	}
	if m.Pids != nil {
		s.PidsCurrent, s.PidsLimit = m.Pids.Current, limit(m.Pids.Limit)
	}
	if m.CPU != nil {
		if m.CPU.Usage != nil {
			s.CPUUsage = time.Duration(m.CPU.Usage.Total)
		}
		if m.CPU.Throttling != nil {
			s.CPUThrottled = time.Duration(m.CPU.Throttling.ThrottledTime)
			s.ThrottledPeriods = m.CPU.Throttling.ThrottledPeriods
		}
	}
	s.PidsLimitHits, err = readKeyed(filepath.Join(h.Mounts["pids"], path, "pids.events"), "max")
	return s, err
}

func (h *Host) statsV2(path string) (Stats, error) {
	root := h.Mounts["memory"]
	mgr, err := cgroup2.Load(path, cgroup2.WithMountpoint(root))
	if err != nil {
		return Stats{}, fmt.Errorf("load cgroup %s: %w", path, err)
	}
	m, err := mgr.Stat()
	if err != nil {
		return Stats{}, fmt.Errorf("read cgroup %s: %w", path, err)
	}
	var s Stats
	if m.Memory != nil {
		s.MemoryUsage, s.MemoryMaxUsage, s.MemoryLimit = m.Memory.Usage, m.Memory.MaxUsage, limit(m.Memory.UsageLimit)
	}
	if m.MemoryEvents != nil {
		s.OOMKills, s.OOMGroupKills = m.MemoryEvents.OomKill, m.MemoryEvents.OomGroupKill
	}
	if m.Pids != nil {
		s.PidsCurrent, s.PidsLimit = m.Pids.Current, limit(m.Pids.Limit)
	}
	if m.CPU != nil {
		s.CPUUsage = time.Duration(m.CPU.UsageUsec) * time.Microsecond
		s.CPUThrottled = time.Duration(m.CPU.ThrottledUsec) * time.Microsecond
		s.ThrottledPeriods = m.CPU.NrThrottled
	}
	s.PidsLimitHits, err = readKeyed(filepath.Join(root, path, "pids.events"), "max")
	return s, err
}

func readKeyed(file, key string) (uint64, error) {
	data, err := os.ReadFile(file)
	if os.IsNotExist(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return parseKeyed(string(data), key)
}
