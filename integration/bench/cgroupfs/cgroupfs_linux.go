// Package cgroupfs is the bench's own handling of cgroups, v1 and v2: the
// tree it makes its runs in (Parent), its removal, and reading the
// processes and memory of one cgroup. The runtimes it measures make and
// remove their sandboxes' cgroups themselves; the bench only removes what
// is left under Parent, and only with rmdir.
package cgroupfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Parent holds every cgroup the bench makes, so that clean-up knows
// exactly which tree is its own.
const Parent = "/corral-bench"

// MakeParent makes Parent in every hierarchy before the first run.
// Otherwise whichever variant ran first would pay for making it, and
// corral, which removes the parents it made, would pay again on every run
// while runc and crun leave it in place: the comparison would then depend
// on the order of the round.
func MakeParent() error {
	roots, err := roots()
	if err != nil {
		return err
	}
	for _, root := range roots {
		dir := filepath.Join(root, Parent)
		if err := unix.Mkdir(dir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("make cgroup %s: %w", dir, err)
		}
	}
	return nil
}

// Remove removes the cgroup at path and everything below it from every
// hierarchy, deepest first, with rmdir only: the kernel refuses to remove
// a cgroup that still holds processes, so nothing running can be hit.
// What could not be removed is reported.
func Remove(path string) error {
	roots, err := roots()
	if err != nil {
		return err
	}
	var left []string
	for _, root := range roots {
		top := filepath.Join(root, path)
		for _, dir := range deepestFirst(top) {
			if err := unix.Rmdir(dir); err != nil && !errors.Is(err, unix.ENOENT) {
				left = append(left, fmt.Sprintf("%s (%v)", dir, err))
			}
		}
	}
	if len(left) > 0 {
		return fmt.Errorf("cgroups left behind: %s", strings.Join(left, ", "))
	}
	return nil
}

// roots are the mount points of the host's cgroup hierarchies, v1 and v2:
// a runtime may have made cgroups in any of them.
func roots() ([]string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	var roots []string
	for _, m := range mounts {
		roots = append(roots, m.Mountpoint)
	}
	return roots, nil
}

// deepestFirst lists the directory top and the directories below it, each
// after all of its subdirectories. A missing top gives nothing.
func deepestFirst(top string) []string {
	var dirs []string
	_ = filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			dirs = append(dirs, p)
		}
		return nil
	})
	slices.Reverse(dirs)
	return dirs
}

// Existing lists the cgroup at path in every hierarchy where it exists.
func Existing(path string) []string {
	roots, err := roots()
	if err != nil {
		return []string{fmt.Sprintf("(cgroups unreadable: %v)", err)}
	}
	var found []string
	for _, root := range roots {
		dir := filepath.Join(root, path)
		if fi, err := os.Stat(dir); err == nil && fi.IsDir() {
			found = append(found, dir)
		}
	}
	return found
}

// PidsRoot is the mount point of the hierarchy with the pids controller:
// the v1 pids hierarchy, or the v2 tree on a unified host. Every corral
// sandbox has a cgroup there.
func PidsRoot() (string, error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return "", fmt.Errorf("read mount table: %w", err)
	}
	for _, m := range mounts {
		if m.FSType == "cgroup" && slices.Contains(strings.Split(m.VFSOptions, ","), "pids") {
			return m.Mountpoint, nil
		}
	}
	for _, m := range mounts {
		if m.FSType == "cgroup2" && m.Mountpoint == "/sys/fs/cgroup" {
			return m.Mountpoint, nil
		}
	}
	return "", errors.New("no cgroup hierarchy with the pids controller")
}

// Procs lists the processes of the cgroup at path under root, as PIDs of
// the bench's PID namespace.
func Procs(root, path string) ([]int, error) {
	data, err := os.ReadFile(filepath.Join(root, path, "cgroup.procs"))
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		if p, err := strconv.Atoi(f); err == nil {
			pids = append(pids, p)
		}
	}
	return pids, nil
}

// Memory is the memory charged to the cgroup at path and below, and the
// part of it that is the kernel's (page tables, slab: the sandboxes'
// mounts, namespaces, sockets), from the v1 memory hierarchy or the v2
// tree.
func Memory(path string) (total, kernel int64, err error) {
	mounts, err := mountinfo.GetMounts(mountinfo.FSTypeFilter("cgroup", "cgroup2"))
	if err != nil {
		return 0, 0, fmt.Errorf("read mount table: %w", err)
	}
	for _, m := range mounts {
		if m.FSType == "cgroup" && slices.Contains(strings.Split(m.VFSOptions, ","), "memory") {
			dir := filepath.Join(m.Mountpoint, path)
			if total, err = readInt(filepath.Join(dir, "memory.usage_in_bytes")); err != nil {
				return 0, 0, err
			}
			kernel, err = readInt(filepath.Join(dir, "memory.kmem.usage_in_bytes"))
			return total, kernel, err
		}
	}
	for _, m := range mounts {
		if m.FSType == "cgroup2" && m.Mountpoint == "/sys/fs/cgroup" {
			dir := filepath.Join(m.Mountpoint, path)
			if total, err = readInt(filepath.Join(dir, "memory.current")); err != nil {
				return 0, 0, err
			}
			data, err := os.ReadFile(filepath.Join(dir, "memory.stat"))
			if err != nil {
				return 0, 0, err
			}
			kernel, err = statKernel(data)
			return total, kernel, err
		}
	}
	return 0, 0, errors.New("no cgroup hierarchy with the memory controller")
}

// statKernel is the "kernel" line of a v2 memory.stat (0 on kernels that
// have none).
func statKernel(memoryStat []byte) (int64, error) {
	for _, l := range strings.Split(string(memoryStat), "\n") {
		if v, ok := strings.CutPrefix(l, "kernel "); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return 0, fmt.Errorf("memory.stat: kernel: %w", err)
			}
			return n, nil
		}
	}
	return 0, nil
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}

// UnifiedMount is where a hybrid host mounts its cgroup2 tree.
const UnifiedMount = "/sys/fs/cgroup/unified"

// Mode names the host's cgroup layout from the filesystem types mounted
// at /sys/fs/cgroup and UnifiedMount.
func Mode() string {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) != nil {
		return "unknown"
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v2 (unified)"
	}
	if unix.Statfs(UnifiedMount, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v1 (hybrid)"
	}
	return "v1"
}
