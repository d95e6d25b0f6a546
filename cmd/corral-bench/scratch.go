package main

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// scratch is the bench's private directory: the busybox root, the bundles
// and every tool's state dir.
//
//	rootfs/          busybox-static tree, the root of every busybox variant
//	bundle-runc/     config.json for runc
//	bundle-crun/     config.json for crun (its own cgroup path)
//	state/           corral --state-dir of `corral run`
//	runc-state/      runc --root
//	crun-state/      crun --root
//	stderr-<n>       each variant's stderr, kept to report a failed run
//	restart/         the restart part: a daemon's state dir and service
//	                 file, supervisord's and s6's dirs, the stamp files
//	scale/           the scale part: service file, state dirs, s6 scan dirs
type scratch struct {
	dir string
	// stateDirs are the corral state dirs in use, for clean-up to check
	// that corral removed its sandboxes' records.
	stateDirs []string
}

func (s *scratch) path(elem ...string) string {
	return filepath.Join(append([]string{s.dir}, elem...)...)
}

func (s *scratch) rootfs() string { return s.path("rootfs") }

// newScratch makes the scratch dir under base. It must not be below the
// corral binary's directory: libcontainer's sealed-exe overlay then fails
// and every start falls back to copying the binary (about +10 ms), which
// would measure a misconfiguration rather than corral.
func newScratch(base, binDir string) (*scratch, error) {
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
	return &scratch{dir: dir}, nil
}

// within reports whether path is dir or below it.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// populate makes the state dirs. The busybox root is made by the cold
// part, the one that uses it.
func (s *scratch) populate() error {
	for _, d := range []string{"state", "runc-state", "crun-state"} {
		if err := os.Mkdir(s.path(d), 0o700); err != nil {
			return fmt.Errorf("make %s: %w", d, err)
		}
	}
	s.stateDirs = append(s.stateDirs, s.path("state"))
	return nil
}

// busyboxApplets are linked in the root: true is the payload, the others
// make the root usable when poking at it by hand.
var busyboxApplets = []string{"true", "sh", "ls", "cat", "echo", "id", "ps", "mount", "hostname"}

// rootDirs are the root's empty mount points and scratch dirs.
var rootDirs = []string{"bin", "proc", "dev", "sys", "tmp", "run", "etc", "root"}

// makeBusyboxRoot builds a minimal root at dir: a static busybox and its
// applet links. A dynamic busybox would need the host's libraries inside,
// so it is refused.
func makeBusyboxRoot(dir string) error {
	src, err := findStaticBusybox()
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		return fmt.Errorf("make rootfs: %w", err)
	}
	for _, d := range rootDirs {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return fmt.Errorf("make rootfs: %w", err)
		}
	}
	if err := copyFile(src, filepath.Join(dir, "bin/busybox"), 0o755); err != nil {
		return fmt.Errorf("copy busybox into rootfs: %w", err)
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			return fmt.Errorf("make rootfs: %w", err)
		}
	}
	return nil
}

// findStaticBusybox returns the host's busybox if it is statically linked
// (Debian's busybox-static installs it as /bin/busybox).
func findStaticBusybox() (string, error) {
	var tried []string
	for _, p := range []string{"/bin/busybox", "/usr/bin/busybox"} {
		if _, err := os.Stat(p); err != nil {
			continue
		}
		static, err := isStatic(p)
		if err != nil {
			return "", fmt.Errorf("inspect %s: %w", p, err)
		}
		if static {
			return p, nil
		}
		tried = append(tried, p+" (dynamically linked)")
	}
	if len(tried) == 0 {
		tried = append(tried, "no /bin/busybox")
	}
	return "", fmt.Errorf("need a static busybox for the root (apt-get install busybox-static): %s", strings.Join(tried, ", "))
}

// isStatic reports whether the ELF file has no program interpreter.
func isStatic(path string) (bool, error) {
	f, err := elf.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return false, nil
		}
	}
	return true, nil
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// writeBundle writes an OCI bundle (a config.json; the root stays shared)
// for the runtime named tool, whose sandbox gets the cgroup cgroupsPath.
func (s *scratch) writeBundle(tool, cgroupsPath string) (string, error) {
	cfg, err := bundleSpec(s.rootfs(), cgroupsPath)
	if err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return "", fmt.Errorf("encode %s config: %w", tool, err)
	}
	dir := s.path("bundle-" + tool)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", fmt.Errorf("make %s bundle: %w", tool, err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		return "", fmt.Errorf("write %s bundle: %w", tool, err)
	}
	return dir, nil
}

// remove deletes the scratch dir, unless a mount point was left inside it
// (a runtime that leaked a mount into the host's namespace): deleting
// through it could reach files that are not ours.
func (s *scratch) remove() error {
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(s.dir))
	if err != nil {
		return fmt.Errorf("remove scratch dir: %w", err)
	}
	if len(mounts) > 0 {
		return fmt.Errorf("remove scratch dir %s: %s is a mount point; left in place", s.dir, mounts[0].Mountpoint)
	}
	if err := os.RemoveAll(s.dir); err != nil {
		return fmt.Errorf("remove scratch dir: %w", err)
	}
	return nil
}
