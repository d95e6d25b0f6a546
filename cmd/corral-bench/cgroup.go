package main

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

// makeCgroupParent makes cgroupParent in every hierarchy before the first
// run. Otherwise whichever variant ran first would pay for making it, and
// corral, which removes the parents it made, would pay again on every run
// while runc and crun leave it in place: the comparison would then depend
// on the order of the round.
func makeCgroupParent(path string) error {
	roots, err := cgroupRoots()
	if err != nil {
		return err
	}
	for _, root := range roots {
		dir := filepath.Join(root, path)
		if err := unix.Mkdir(dir, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("make cgroup %s: %w", dir, err)
		}
	}
	return nil
}

// removeCgroups removes the cgroup at path and everything below it from
// every hierarchy, deepest first, with rmdir only: the kernel refuses to
// remove a cgroup that still holds processes, so nothing running can be
// hit. What could not be removed is reported.
func removeCgroups(path string) error {
	roots, err := cgroupRoots()
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

// cgroupRoots are the mount points of the host's cgroup hierarchies, v1
// and v2: a runtime may have made cgroups in any of them.
func cgroupRoots() ([]string, error) {
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
	for i, j := 0, len(dirs)-1; i < j; i, j = i+1, j-1 {
		dirs[i], dirs[j] = dirs[j], dirs[i]
	}
	return dirs
}

// existingCgroups lists the cgroup at path in every hierarchy where it
// exists.
func existingCgroups(path string) []string {
	roots, err := cgroupRoots()
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

// pidsRoot is the mount point of the hierarchy with the pids controller:
// the v1 pids hierarchy, or the v2 tree on a unified host. Every corral
// sandbox has a cgroup there.
func pidsRoot() (string, error) {
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

// cgroupProcs lists the processes of the cgroup at path under root.
func cgroupProcs(root, path string) ([]int, error) {
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

// cgroupMemory is the memory charged to the cgroup at path and below, and
// the part of it that is the kernel's (page tables, slab: the sandboxes'
// mounts, namespaces, sockets), from the v1 memory hierarchy or the v2
// tree.
func cgroupMemory(path string) (total, kernel int64, err error) {
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
			for _, l := range strings.Split(string(data), "\n") {
				if v, ok := strings.CutPrefix(l, "kernel "); ok {
					kernel, err = strconv.ParseInt(v, 10, 64)
					return total, kernel, err
				}
			}
			return total, 0, nil
		}
	}
	return 0, 0, errors.New("no cgroup hierarchy with the memory controller")
}

func readInt(path string) (int64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(data)), 10, 64)
}
