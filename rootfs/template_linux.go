package rootfs

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/beneath"
)

// The built-in root's tree is the same for every sandbox of a host but
// for five /etc files. Making it for each sandbox (~30 directories,
// links and files) costs ~0.4 ms on a tmpfs, but 12 ms on ext4, whose
// inode allocator a state dir with many recent deletions slows down:
// most of a 200-service daemon's start was spent there. So a read-only
// sandbox's root is one shared tree, the template, made once per host
// layout in the roots dir, and the sandbox's own dir holds only its /etc
// files, bound read-only over the template's empty ones.

// TemplatePrefix starts a template's name in the roots dir; no service
// name starts with a dot, so none can take it.
const TemplatePrefix = ".template-"

// sandboxEtc are the /etc files each sandbox has its own of; the others
// of etcFiles are the same for all, in the template.
var sandboxEtc = []string{"hostname", "hosts", "passwd", "group", "resolv.conf"}

// IsTemplate reports whether name (an entry of the roots dir) is a
// template or one being made.
func IsTemplate(name string) bool { return strings.HasPrefix(name, TemplatePrefix) }

// Template is a shared tree of the built-in root (EnsureTemplate's).
type Template struct {
	Path   string
	layout *layout // what it was made of: its binds complete it
}

// EnsureTemplate returns the template of this host's built-in root in
// dir (the roots dir), making it if it is missing. Its name is a hash of
// what it holds: a host whose layout or copied /etc files changed gets a
// new one beside the old, which sandboxes made before keep using.
func EnsureTemplate(dir string) (*Template, error) {
	l, err := hostLayout()
	if err != nil {
		return nil, fmt.Errorf("root template: %w", err)
	}
	copies, err := readHostCopies()
	if err != nil {
		return nil, fmt.Errorf("root template: %w", err)
	}
	t := &Template{Path: filepath.Join(dir, TemplatePrefix+templateHash(l, copies)), layout: l}
	if templateOK(t.Path) {
		return t, nil
	}
	tmp, err := os.MkdirTemp(dir, TemplatePrefix+"new-")
	if err != nil {
		return nil, fmt.Errorf("root template: %w", err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil {
		_ = RemoveDir(tmp)
		return nil, fmt.Errorf("root template: %w", err)
	}
	if err := fillTemplate(tmp, l, copies); err != nil {
		_ = RemoveDir(tmp)
		return nil, fmt.Errorf("root template %s: %w", tmp, err)
	}
	// Another process may have made it meanwhile: theirs is the same.
	if err := os.Rename(tmp, t.Path); err != nil {
		_ = RemoveDir(tmp)
		if !templateOK(t.Path) {
			return nil, fmt.Errorf("root template: %w", err)
		}
	}
	return t, nil
}

// templateOK: path is a directory of ours (root's, not a link), as
// EnsureTemplate renames it into place once complete.
func templateOK(path string) bool {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFDIR && int(st.Uid) == os.Geteuid()
}

// readHostCopies reads the host /etc files the root holds copies of; a
// missing one is left out.
func readHostCopies() (map[string][]byte, error) {
	out := map[string][]byte{}
	for _, f := range hostEtcCopies {
		data, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[f] = data
	}
	return out, nil
}

// templateHash names a template by everything it holds.
func templateHash(l *layout, copies map[string][]byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "corral root template 1\n")
	for _, d := range l.dirs {
		fmt.Fprintf(h, "dir %s\n", d)
	}
	for _, s := range l.links {
		fmt.Fprintf(h, "link %s %s\n", s.name, s.target)
	}
	names := make([]string, 0, len(copies))
	for n := range copies {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(h, "copy %s %d\n", n, len(copies[n]))
		h.Write(copies[n])
	}
	common := etcFiles(HostBindOptions{})
	for _, n := range sortedKeys(common) {
		if !isSandboxEtc(n) {
			fmt.Fprintf(h, "etc %s %q\n", n, common[n])
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func isSandboxEtc(name string) bool { return slices.Contains(sandboxEtc, name) }

// fillTemplate makes the shared tree in dir: the layout, the copied host
// files, the /etc files common to all, and an empty file where each
// sandbox's own is bound.
func fillTemplate(dir string, l *layout, copies map[string][]byte) error {
	if err := l.makeTree(dir); err != nil {
		return err
	}
	for f, data := range copies {
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			return err
		}
	}
	for name, content := range etcFiles(HostBindOptions{}) {
		if isSandboxEtc(name) {
			content = ""
		}
		if err := os.WriteFile(filepath.Join(dir, "etc", name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// HostBindShared makes a read-only sandbox's built-in root on template
// (EnsureTemplate's): dir, which must not exist, gets the sandbox's own
// /etc files, bound read-only over the template's. The template becomes
// the sandbox's "/"; Remove removes dir only.
func HostBindShared(t *Template, dir string, opt HostBindOptions) (*Root, error) {
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make root: %w", err)
	}
	r := &Root{Path: t.Path, own: dir, owned: true, builtin: true, shared: true, Mounts: slices.Clone(t.layout.mounts)}
	files := etcFiles(opt)
	for _, name := range sandboxEtc {
		src := filepath.Join(dir, name)
		if err := os.WriteFile(src, []byte(files[name]), 0o644); err != nil {
			_ = r.Remove()
			return nil, fmt.Errorf("make root %s: %w", dir, err)
		}
		r.Mounts = append(r.Mounts, rspec.Mount{
			Destination: "/etc/" + name, Source: src, Type: "bind",
			Options: []string{"bind", "ro", "nosuid", "nodev", "noexec"},
		})
	}
	return r, nil
}

// Shared reports whether r is a shared template's (HostBindShared).
func (r *Root) Shared() bool { return r.shared }

// HasMountpoints reports whether every mount point of mounts that lies in
// the root's own tree (not below another of mounts) is there already. A
// shared root must never be written to: a sandbox that needs one more
// mount point gets a root of its own (Unshare).
func (r *Root) HasMountpoints(mounts []rspec.Mount) (bool, error) {
	root, err := beneath.OpenRoot(r.Path)
	if err != nil {
		return false, fmt.Errorf("mount points: %w", err)
	}
	defer root.Close()
	for i, m := range mounts {
		dst := filepath.Clean(m.Destination)
		if dst == "/" || below(dst, mounts[:i]) {
			continue
		}
		// Missing, or reached through a symlink (which the runtime would
		// resolve and might create at): not the template's to give.
		f, err := root.Open(strings.TrimPrefix(dst, "/"), unix.O_PATH, 0)
		if err != nil {
			return false, nil
		}
		f.Close()
	}
	return true, nil
}
