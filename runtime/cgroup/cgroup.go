// Package cgroup reads the host's cgroups: which mode the host runs (v1,
// hybrid or unified v2), whether the controllers corral needs are there,
// and a sandbox's counters (memory, OOM kills, pids, CPU). Limits are
// written by libcontainer alone; this package only reads, and removes the
// empty parent cgroups corral made.
package cgroup

import (
	"errors"
	"fmt"
	"path"
	"strings"
	"time"
)

// Mode is how the host mounts its cgroups.
type Mode int

const (
	// Unavailable: no cgroup filesystem is mounted.
	Unavailable Mode = iota
	// Legacy: cgroup v1 only.
	Legacy
	// Hybrid: v1 controllers, plus a cgroup2 tree without useful ones.
	Hybrid
	// Unified: cgroup v2 only.
	Unified
)

func (m Mode) String() string {
	switch m {
	case Legacy:
		return "cgroup v1"
	case Hybrid:
		return "cgroup v1 (hybrid)"
	case Unified:
		return "cgroup v2"
	}
	return "no cgroups"
}

// Required are the controllers every sandbox's limits live in.
var Required = []string{"memory", "cpu", "pids"}

// ErrMissingController is returned when the host lacks a controller in
// Required.
var ErrMissingController = errors.New("cgroup controller missing")

// ErrParentHoldsSelf is returned on cgroup v2 when sandboxes would be made
// under the cgroup corral itself runs in: a v2 cgroup that holds processes
// cannot pass controllers down to its children.
var ErrParentHoldsSelf = errors.New("cgroup parent contains corral itself")

// Stats are one sandbox's cgroup counters, the same on v1 and v2.
type Stats struct {
	MemoryUsage    uint64 // bytes in use now
	MemoryMaxUsage uint64 // high-water mark (0 where the kernel lacks it)
	MemoryLimit    uint64 // 0: no limit
	OOMKills       uint64 // processes the OOM killer killed in the cgroup
	// OOMGroupKills counts the times the OOM killer killed every process
	// of the cgroup at once (v2's memory.oom.group; always 0 on v1).
	OOMGroupKills uint64
	PidsCurrent   uint64
	PidsLimit     uint64 // 0: no limit
	// PidsLimitHits counts forks and clones refused by the pids limit.
	PidsLimitHits    uint64
	CPUUsage         time.Duration
	CPUThrottled     time.Duration
	ThrottledPeriods uint64
}

// noLimit is what the kernel reports for "max" on v1 (page-rounded
// int64 max); anything at or above it means unlimited.
const noLimit = uint64(1) << 62

func limit(v uint64) uint64 {
	if v >= noLimit {
		return 0
	}
	return v
}

// parseKeyed reads a flat-keyed cgroup file ("key value" per line), such
// as pids.events or memory.events, and returns the value of key.
func parseKeyed(content, key string) (uint64, error) {
	for _, line := range strings.Split(content, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), " ")
		if ok && k == key {
			var n uint64
			if _, err := fmt.Sscan(v, &n); err != nil {
				return 0, fmt.Errorf("parse %q: %w", line, err)
			}
			return n, nil
		}
	}
	return 0, nil
}

// selfPath returns the v2 cgroup path in content, which is in the format
// of /proc/self/cgroup: the "0::/path" line of the unified hierarchy.
func selfPath(content string) (string, error) {
	for _, line := range strings.Split(content, "\n") {
		if p, ok := strings.CutPrefix(line, "0::"); ok && strings.HasPrefix(p, "/") {
			return path.Clean(p), nil
		}
	}
	return "", fmt.Errorf("no cgroup v2 entry (0::/path) in %q", content)
}

// checkParent enforces cgroup v2's no-internal-process rule for sandboxes
// made under parent by a corral running in the cgroup self: a cgroup that
// holds processes cannot enable controllers for its children, so self must
// not be parent or one of its ancestors. The root cgroup is exempt from the
// rule (and every cgroup descends from it): corral may run in "/".
func checkParent(self, parent string) error {
	self, parent = path.Clean(self), path.Clean(parent)
	if self == "/" {
		return nil
	}
	if parent != self && !strings.HasPrefix(parent, self+"/") {
		return nil
	}
	rel := "an ancestor of the"
	if parent == self {
		rel = "the same as the"
	}
	return fmt.Errorf("%w: corral runs in cgroup %s (see /proc/self/cgroup), %s cgroup parent %s; "+
		"on cgroup v2 a cgroup that holds processes cannot pass its controllers down to the sandboxes' cgroups. "+
		"Move corral into a leaf cgroup of its own (such as %s/supervisor) and make the sandboxes under a sibling "+
		"(such as %s/sandboxes), or choose a cgroup parent outside %s",
		ErrParentHoldsSelf, self, rel, parent, self, self, self)
}
