package rootfs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

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
	r := &Root{Path: dir, owned: true, builtin: true}
	if err := r.fill(opt); err != nil {
		_ = r.Remove()
		return nil, fmt.Errorf("make root %s: %w", dir, err)
	}
	return r, nil
}

// HostBindPlan is the built-in root HostBind would make on this host, made
// of nothing: its Path is empty and its Mounts are HostBind's. It serves
// only to look at what the root will hold (CheckDir) before any sandbox
// is made.
func HostBindPlan() (*Root, error) {
	l, err := hostLayout()
	if err != nil {
		return nil, fmt.Errorf("plan root: %w", err)
	}
	return &Root{Mounts: l.mounts, builtin: true, plan: l}, nil
}

// layout is the built-in root's own tree on this host and the binds that
// complete it: the one description HostBind makes and HostBindPlan shows.
type layout struct {
	dirs   []string  // relative, parents before children
	links  []symlink // made after dirs
	files  []string  // the files of /etc, copied or written after links
	mounts []rspec.Mount
}

type symlink struct{ name, target string }

// hostLayout is the built-in root of this host: mount points, /etc,
// /root and /var (/var/tmp a link to /tmp), and each of HostSystemDirs
// and hostEtcBinds reproduced (see bindOrLink).
func hostLayout() (*layout, error) {
	l := &layout{
		dirs:  []string{"proc", "dev", "sys", "tmp", "run", "etc", "root", "var"},
		links: []symlink{{"var/tmp", "../tmp"}},
	}
	for _, p := range append(slices.Clone(HostSystemDirs), hostEtcBinds...) {
		if err := l.bindOrLink(p); err != nil {
			return nil, err
		}
	}
	for _, f := range hostEtcCopies {
		if _, err := os.Stat(f); err == nil {
			l.files = append(l.files, strings.TrimPrefix(f, "/"))
		}
	}
	for name := range etcFiles(HostBindOptions{}) {
		if f := "etc/" + name; !slices.Contains(l.files, f) {
			l.files = append(l.files, f)
		}
	}
	return l, nil
}

// bindOrLink reproduces host path p in the root: a symlink as the same
// symlink, a directory as a read-only bind on a directory of the same
// name (its missing parents made too). Missing paths and other files are
// skipped.
func (l *layout) bindOrLink(p string) error {
	fi, err := os.Lstat(p)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSymlink == 0 && !fi.IsDir() {
		return nil
	}
	rel := strings.TrimPrefix(filepath.Clean(p), "/")
	var parents []string
	for parent := filepath.Dir(rel); parent != "."; parent = filepath.Dir(parent) {
		if !slices.Contains(l.dirs, parent) {
			parents = append(parents, parent)
		}
	}
	slices.Reverse(parents) // a parent before its children
	l.dirs = append(l.dirs, parents...)
	if fi.Mode()&os.ModeSymlink != 0 {
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		l.links = append(l.links, symlink{rel, target})
		return nil
	}
	l.dirs = append(l.dirs, rel)
	l.mounts = append(l.mounts, rspec.Mount{
		Destination: p, Source: p, Type: "bind",
		Options: []string{"rbind", "ro", "nosuid", "nodev"},
	})
	return nil
}

func (r *Root) fill(opt HostBindOptions) error {
	l, err := hostLayout()
	if err != nil {
		return err
	}
	if err := l.makeTree(r.Path); err != nil {
		return err
	}
	r.Mounts = append(r.Mounts, l.mounts...)
	for _, f := range hostEtcCopies {
		if err := copyHostFile(f, filepath.Join(r.Path, f)); err != nil {
			return err
		}
	}
	return writeEtc(filepath.Join(r.Path, "etc"), opt)
}

// makeTree makes the layout's directories and symlinks in dir, a fresh
// directory of corral's.
func (l *layout) makeTree(dir string) error {
	for _, d := range l.dirs {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	for _, s := range l.links {
		if err := os.Symlink(s.target, filepath.Join(dir, s.name)); err != nil {
			return err
		}
	}
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
	for name, content := range etcFiles(opt) {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// etcFiles are the files of the curated /etc that corral writes, by name.
func etcFiles(opt HostBindOptions) map[string]string {
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
	return files
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

// NetworkEtc are the /etc files corral supplies in a root it does not
// make (an image's): hostname, hosts and resolv.conf, as in the built-in
// root; the image keeps its own passwd and group.
func NetworkEtc(hostname string, hostNetwork bool) map[string]string {
	all := etcFiles(HostBindOptions{Hostname: hostname, HostNetwork: hostNetwork})
	return map[string]string{"hostname": all["hostname"], "hosts": all["hosts"], "resolv.conf": all["resolv.conf"]}
}
