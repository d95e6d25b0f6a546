// Package scratch is the bench's private directory: everything the bench
// and the tools it runs write goes below it, and it is removed at the end
// unless something was left in it that must be looked at.
//
//	rootfs/          busybox-static tree, the root of every busybox variant (cold)
//	bundle-runc/     config.json for runc (cold)
//	bundle-crun/     config.json for crun, its own cgroup path (cold)
//	state/           corral --state-dir of `corral run` (cold, restart)
//	runc-state/      runc --root (cold)
//	crun-state/      crun --root (cold)
//	stderr-<n>       each cold variant's stderr, kept to report a failed run
//	restart/         the restart part: a daemon's state dir and service
//	                 file, supervisord's and s6's dirs, the stamp files
//	scale/           the scale part: service file, state dirs, s6 scan dirs
//	images-layout/   the images part: the image whose import it times
//	images-run-*/    one import's fresh dir, removed after it
//	images-disk/     the images part's disk measurement: its image, store
//	                 (data/), state dir, logs and service file
//	bridge/          the bridge part: its network namespace's file (netns),
//	                 state dir, service files, logs, and bin/ with a copy of
//	                 the bench's binary, its TCP server in a sandbox
package scratch

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// Dir is the scratch dir.
type Dir struct {
	dir   string
	tmpfs bool // a tmpfs of its own, mounted by New
	// stateDirs are the corral state dirs in use, for clean-up to check
	// that corral removed its sandboxes' records.
	stateDirs []string
}

// New makes the scratch dir under base. It must not be below the corral
// binary's directory binDir: libcontainer's sealed-exe overlay then fails
// and every start falls back to copying the binary (about +10 ms), which
// would measure a misconfiguration rather than corral.
//
// With tmpfs, the scratch dir is a tmpfs of its own, mounted here and
// unmounted by Remove: every tool's state dir (corral's --state-dir,
// runc's and crun's --root, s6's scan dirs, containerd's) is then where a
// typical host has it, on the tmpfs at /run, whatever base is on. On a
// disk filesystem each file a start makes costs an inode allocation,
// which on ext4 grows slower as files come and go (corral's daemon spent
// 2.5x the CPU starting 200 services with its state dir on ext4).
func New(base, binDir string, tmpfs bool) (*Dir, error) {
	realBase, err := filepath.EvalSymlinks(base)
	if err != nil {
		return nil, fmt.Errorf("scratch base %s: %w", base, err)
	}
	realBin, err := filepath.EvalSymlinks(binDir)
	if err != nil {
		return nil, fmt.Errorf("corral's directory %s: %w", binDir, err)
	}
	if within(realBase, realBin) {
		return nil, fmt.Errorf("scratch base %s is inside %s, the directory holding corral; use --scratch-base elsewhere", base, binDir)
	}
	dir, err := os.MkdirTemp(realBase, "corral-bench-")
	if err != nil {
		return nil, fmt.Errorf("make scratch dir: %w", err)
	}
	// A sandbox's root, in its own user namespace, passes through it
	// (search only) to its root in the state dir.
	if err := os.Chmod(dir, 0o711); err != nil {
		return nil, fmt.Errorf("make scratch dir: %w", err)
	}
	if tmpfs {
		if err := unix.Mount("corral-bench", dir, "tmpfs", unix.MS_NOSUID, "mode=0711"); err != nil {
			os.Remove(dir)
			return nil, fmt.Errorf("mount a tmpfs on the scratch dir %s: %w", dir, err)
		}
	}
	return &Dir{dir: dir, tmpfs: tmpfs}, nil
}

// String is the scratch dir's path.
func (s *Dir) String() string { return s.dir }

// Path is elem joined below the scratch dir.
func (s *Dir) Path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

// StateDir makes (if need be) the corral state dir Path(elem...), private
// to root as corral wants it, and has clean-up check it for sandbox
// records corral failed to remove.
func (s *Dir) StateDir(elem ...string) (string, error) {
	dir := s.Path(elem...)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("make corral state dir: %w", err)
	}
	if !slices.Contains(s.stateDirs, dir) {
		s.stateDirs = append(s.stateDirs, dir)
	}
	return dir, nil
}

// Leftovers lists the sandbox records left in corral's state dirs. corral
// removes its sandboxes itself: a record left means it did not.
func (s *Dir) Leftovers() []string {
	var names []string
	for _, d := range s.stateDirs {
		entries, _ := os.ReadDir(filepath.Join(d, "sandboxes"))
		for _, e := range entries {
			names = append(names, filepath.Join(d, "sandboxes", e.Name()))
		}
	}
	return names
}

// FSType names the filesystem holding the scratch dir, as the mount table
// does: corral writes its records there with fsync, so it matters.
func (s *Dir) FSType() string {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return "unknown"
	}
	best, typ := "", "unknown"
	for _, m := range mounts {
		if within(s.dir, m.Mountpoint) && len(m.Mountpoint) >= len(best) {
			best, typ = m.Mountpoint, m.FSType
		}
	}
	return typ
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// Remove deletes the scratch dir, unless a mount point was left inside it
// (a runtime that leaked a mount into the host's namespace): deleting
// through it could reach files that are not ours.
func (s *Dir) Remove() error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(s.dir))
	if err != nil {
		return fmt.Errorf("remove scratch dir: %w", err)
	}
	for _, m := range mounts {
		if m.Mountpoint != s.dir || !s.tmpfs {
			return fmt.Errorf("remove scratch dir %s: %s is a mount point; left in place", s.dir, m.Mountpoint)
		}
	}
	if s.tmpfs {
		if err := unix.Unmount(s.dir, 0); err != nil {
			return fmt.Errorf("remove scratch dir: unmount its tmpfs: %w", err)
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove scratch dir: %w", err)
	}
	return nil
}
