package rootfs

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/corral-dev/corral/rootfs/beneath"
)

// HostSystemDirs are the host directories the built-in root binds
// read-only. Each that is a symlink on the host (merged /usr) becomes the
// same symlink in the root; each that is missing is skipped.
var HostSystemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"}

// hostEtcBinds are host /etc entries bound read-only into the curated /etc:
// what dynamically linked programs and Debian's alternatives need.
var hostEtcBinds = []string{"/etc/alternatives", "/etc/ssl/certs"}

// hostEtcCopies are small host /etc files copied into the curated /etc.
var hostEtcCopies = []string{"/etc/ld.so.cache", "/etc/localtime", "/etc/services", "/etc/protocols", "/etc/os-release"}

// HostBindOptions shape the built-in root's /etc.
type HostBindOptions struct {
	Hostname    string
	HostNetwork bool   // if set, the host's resolv.conf is copied in
	UID, GID    uint32 // the sandbox user, given a passwd entry
}

// HostBind makes the built-in root in dir, which must not exist: an empty
// directory with mount points, symlinks, and a curated /etc, completed by
// read-only binds of the host's system directories.
func HostBind(dir string, opt HostBindOptions) (*Root, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make root: %w", err)
	}
	r := &Root{Path: dir, owned: true}
	if err := r.fill(opt); err != nil {
		_ = r.Remove()
		return nil, fmt.Errorf("make root %s: %w", dir, err)
	}
	return r, nil
}

func (r *Root) fill(opt HostBindOptions) error {
	for _, d := range []string{"proc", "dev", "sys", "tmp", "run", "etc", "root", "var"} {
		if err := os.Mkdir(filepath.Join(r.Path, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Symlink("../tmp", filepath.Join(r.Path, "var/tmp")); err != nil {
		return err
	}
	for _, d := range HostSystemDirs {
		if err := r.bindOrLink(d); err != nil {
			return err
		}
	}
	for _, d := range hostEtcBinds {
		if err := r.bindOrLink(d); err != nil {
			return err
		}
	}
	for _, f := range hostEtcCopies {
		if err := copyHostFile(f, filepath.Join(r.Path, f)); err != nil {
			return err
		}
	}
	return writeEtc(filepath.Join(r.Path, "etc"), opt)
}

// bindOrLink reproduces host path p in the root: a symlink as the same
// symlink, a directory as a read-only bind. Missing paths are skipped.
func (r *Root) bindOrLink(p string) error {
	fi, err := os.Lstat(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	inRoot := filepath.Join(r.Path, p)
	if err := os.MkdirAll(filepath.Dir(inRoot), 0o755); err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		return os.Symlink(target, inRoot)
	}
	if !fi.IsDir() {
		return nil
	}
	if err := os.Mkdir(inRoot, 0o755); err != nil {
		return err
	}
	r.Mounts = append(r.Mounts, rspec.Mount{
		Destination: p, Source: p, Type: "bind",
		Options: []string{"rbind", "ro", "nosuid", "nodev"},
	})
	return nil
}

// copyHostFile copies a small host file (following symlinks, such as
// /etc/localtime's); a missing one is skipped.
func copyHostFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	return os.WriteFile(dst, data, 0o644)
}

func writeEtc(etc string, opt HostBindOptions) error {
	passwd := "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	group := "root:x:0:\nnogroup:x:65534:\n"
	if opt.UID != 0 && opt.UID != 65534 {
		passwd += fmt.Sprintf("sandbox:x:%d:%d:sandbox user:/:/bin/sh\n", opt.UID, opt.GID)
	}
	if opt.GID != 0 && opt.GID != 65534 {
		group += fmt.Sprintf("sandbox:x:%d:\n", opt.GID)
	}
	hosts := "127.0.0.1\tlocalhost " + opt.Hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	files := map[string]string{
		"passwd":        passwd,
		"group":         group,
		"hostname":      opt.Hostname + "\n",
		"hosts":         hosts,
		"nsswitch.conf": "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n",
		"resolv.conf":   "# no network: this sandbox has only a loopback interface\n",
	}
	if opt.HostNetwork {
		// The host's resolvers, or none: never the "no network" note.
		data, _ := os.ReadFile("/etc/resolv.conf")
		files["resolv.conf"] = string(data)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// removeSameFS deletes the tree at root without descending into any
// mount point, which it reports (ErrCrossesMount) before deleting anything
// when the mount table shows it.
func removeSameFS(root string) error {
	fi, err := os.Lstat(root)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove root %s: %w", root, err)
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		// A symlink in place of a root: remove it, never what it points to.
		if err := os.Remove(root); err != nil {
			return fmt.Errorf("remove root %s: %w", root, err)
		}
		return nil
	}
	if !fi.IsDir() {
		return fmt.Errorf("remove root %s: not a directory", root)
	}
	// The mount table holds canonical paths: compare with the real path,
	// or a path through a symlink (/var/run -> /run) would match nothing.
	real, err := filepath.EvalSymlinks(root)
	if err == nil {
		real, err = filepath.Abs(real)
	}
	if err != nil {
		return fmt.Errorf("remove root %s: %w", root, err)
	}
	root = real
	// A bind leaked into our mount namespace on the same filesystem would
	// share the device number, so ask the mount table too.
	mounts, err := mountinfo.GetMounts(mountinfo.PrefixFilter(root))
	if err != nil {
		return fmt.Errorf("remove root %s: %w", root, err)
	}
	if len(mounts) > 0 {
		return fmt.Errorf("remove root %s: %s %w", root, mounts[0].Mountpoint, ErrCrossesMount)
	}
	// Then the removal itself, every step relative to an open directory
	// and never through a symlink or into another mount: a sandbox that
	// could write its root may have left symlinks, or be racing renames if
	// anything of it still ran.
	parent, err := beneath.OpenRoot(filepath.Dir(root))
	if err != nil {
		return fmt.Errorf("remove root %s: %w", root, err)
	}
	defer parent.Close()
	if err := parent.RemoveAll(filepath.Base(root)); err != nil {
		return fmt.Errorf("remove root: %w", err)
	}
	return nil
}
