package rootfs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/beneath"
)

// maxLinks is how many symlinks a lookup follows, as the kernel's
// MAXSYMLINKS.
const maxLinks = 40

// CheckDir says why dir is not a directory of the sandbox made of r and
// mounts, as its processes will see it when it starts, or returns nil.
// mounts are all of the sandbox's mounts in the order they are mounted,
// r's binds among them (see Apply). Nothing is made and nothing written:
// the runtime would make a missing working directory (runc does), so a
// sandbox's workdir is checked with this first.
//
// It reads r's directory (for a plan, what HostBind would make) and the
// sources of bind mounts one name at a time, each relative to an open
// directory, never following a symlink there: a symlink is resolved as
// the sandbox resolves it, from the sandbox's root, so the lookup never
// leaves the root and the mounts' sources. What the other mounts hold is
// known without looking:
//   - a mount point exists, and so does every directory above one (the
//     runtime makes them);
//   - a tmpfs (such as /tmp and /run) starts empty: below its mount point
//     there is nothing but the mount points of later mounts;
//   - a kernel filesystem (proc, sysfs, ...) is refused below its mount
//     point: what it holds is known only inside the sandbox.
//
// The error wraps fs.ErrNotExist, unix.ENOTDIR or unix.ELOOP when it says
// so.
func (r *Root) CheckDir(mounts []rspec.Mount, dir string) error {
	if !path.IsAbs(dir) {
		return fmt.Errorf("%q is not an absolute path", dir)
	}
	v := &view{root: r, mounts: mounts, open: map[string]*beneath.Dir{}}
	defer v.close()
	cur := "/"
	todo := strings.Split(dir, "/")
	for links := 0; len(todo) > 0; {
		name := todo[0]
		todo = todo[1:]
		switch name {
		case "", ".":
			continue
		case "..":
			cur = path.Dir(cur)
			continue
		}
		next := path.Join(cur, name)
		e, err := v.lookup(next)
		if err != nil {
			return fmt.Errorf("%s: %w", dir, err)
		}
		switch e.kind {
		case isDir:
			cur = next
		case isLink:
			if links++; links > maxLinks {
				return &lookupError{fmt.Sprintf("%s: more than %d symlinks on the way in the sandbox", dir, maxLinks), unix.ELOOP}
			}
			if path.IsAbs(e.target) {
				cur = "/"
			}
			todo = append(strings.Split(e.target, "/"), todo...)
		case isOther:
			msg := fmt.Sprintf("%s is not a directory in the sandbox", next)
			if next != path.Clean(dir) {
				msg = dir + ": " + msg
			}
			return &lookupError{msg, unix.ENOTDIR}
		case isOpaque:
			return &lookupError{fmt.Sprintf("%s is inside %s", dir, e.why), nil}
		default:
			return &lookupError{fmt.Sprintf("%s does not exist in the sandbox: %s", dir, e.why), fs.ErrNotExist}
		}
	}
	return nil
}

// lookupError reads as its message and is its cause (errors.Is).
type lookupError struct {
	msg string
	err error
}

func (e *lookupError) Error() string { return e.msg }
func (e *lookupError) Unwrap() error { return e.err }

type kind int

const (
	isMissing kind = iota
	isDir
	isLink
	isOther
	isOpaque // a kernel filesystem's mount point: what is below is not known
)

// entry is what a name is in the sandbox: for a link, its target; for a
// missing or opaque one, why, in words.
type entry struct {
	kind   kind
	target string
	why    string
}

// view is a sandbox's tree as its root and mounts will make it.
type view struct {
	root   *Root
	mounts []rspec.Mount
	open   map[string]*beneath.Dir // backing directories, by host path
}

func (v *view) close() {
	for _, d := range v.open {
		d.Close()
	}
}

// lookup says what p, a clean absolute path whose parent is a directory
// of the sandbox (symlinks resolved), is.
func (v *view) lookup(p string) (entry, error) {
	// The mount that shows p: the last one at p or above it.
	i := len(v.mounts) - 1
	for ; i >= 0; i-- {
		if d := path.Clean(v.mounts[i].Destination); d == p || under(p, d) {
			break
		}
	}
	var e entry
	var err error
	if i >= 0 && path.Clean(v.mounts[i].Destination) == p {
		e, err = mountPoint(v.mounts[i])
	} else {
		e, err = v.below(i, p)
	}
	if err != nil || (e.kind != isMissing && e.kind != isOpaque) {
		return e, err
	}
	// A later mount below p: the runtime makes p to reach its mount point.
	for _, m := range v.mounts[i+1:] {
		if under(path.Clean(m.Destination), p) {
			return entry{kind: isDir}, nil
		}
	}
	return e, nil
}

// mountPoint is what the mount point of m is once m is mounted.
func mountPoint(m rspec.Mount) (entry, error) {
	if !isBind(m) {
		return entry{kind: isDir}, nil
	}
	// The runtime mounts the source as the host resolves it.
	fi, err := os.Stat(m.Source)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return entry{why: fmt.Sprintf("the source of the mount at %s, %s, does not exist", m.Destination, m.Source)}, nil
	case err != nil:
		return entry{}, err
	case fi.IsDir():
		return entry{kind: isDir}, nil
	}
	return entry{kind: isOther}, nil
}

// below is what p is below the mount point of mount i (-1: the root).
func (v *view) below(i int, p string) (entry, error) {
	if i < 0 {
		rel := strings.TrimPrefix(p, "/")
		switch {
		case v.root.plan != nil:
			return v.root.plan.lookup(rel, p), nil
		case v.root.builtin:
			e, err := v.real(v.root.Path, rel)
			if e.kind == isMissing {
				e.why = builtinMissing(p)
			}
			return e, err
		}
		e, err := v.real(v.root.Path, rel)
		if e.kind == isMissing {
			e.why = fmt.Sprintf("its root has no %s (%s on the host)", p, filepath.Join(v.root.Path, rel))
		}
		return e, err
	}
	m := v.mounts[i]
	dest := path.Clean(m.Destination)
	rel := strings.TrimPrefix(p, dest+"/")
	switch {
	case isBind(m):
		e, err := v.real(m.Source, rel)
		if e.kind == isMissing {
			e.why = fmt.Sprintf("the mount at %s has no %s (%s on the host)", dest, p, filepath.Join(m.Source, rel))
		}
		return e, err
	case m.Type == "tmpfs":
		return entry{why: fmt.Sprintf("%s is a tmpfs of the sandbox's own, empty when it starts: use %s itself, or mount a directory at %s", dest, dest, p)}, nil
	}
	return entry{kind: isOpaque, why: fmt.Sprintf("%s, the sandbox's %s filesystem, whose contents only the sandbox sees: use a directory of the root or of a mount", dest, m.Type)}, nil
}

// real looks rel up in the host directory dir, never following a
// symlink.
func (v *view) real(dir, rel string) (entry, error) {
	d, ok := v.open[dir]
	if !ok {
		var err error
		if d, err = beneath.OpenRoot(dir); err != nil {
			return entry{}, err
		}
		v.open[dir] = d
	}
	f, err := d.Open(rel, unix.O_PATH, 0)
	switch {
	case errors.Is(err, unix.ENOENT):
		return entry{}, nil
	case errors.Is(err, unix.ENOTDIR):
		return entry{kind: isOther}, nil
	case err != nil:
		return entry{}, err
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return entry{}, &os.PathError{Op: "stat", Path: f.Name(), Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return entry{kind: isDir}, nil
	case unix.S_IFLNK:
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(int(f.Fd()), "", buf)
		if err != nil {
			return entry{}, &os.PathError{Op: "readlink", Path: f.Name(), Err: err}
		}
		return entry{kind: isLink, target: string(buf[:n])}, nil
	}
	return entry{kind: isOther}, nil
}

// lookup is what rel (sandbox path p) is in the planned root.
func (l *layout) lookup(rel, p string) entry {
	if slices.Contains(l.dirs, rel) {
		return entry{kind: isDir}
	}
	for _, s := range l.links {
		if s.name == rel {
			return entry{kind: isLink, target: s.target}
		}
	}
	if slices.Contains(l.files, rel) {
		return entry{kind: isOther}
	}
	return entry{why: builtinMissing(p)}
}

// builtinMissing says that p is not in the built-in root.
func builtinMissing(p string) string {
	return fmt.Sprintf("the built-in root has no %s: it holds the host's /usr, /bin, /sbin and /lib*, and /etc, /root, /var, /tmp and /run; give the service a rootfs, or mount a directory at %s", p, p)
}

func isBind(m rspec.Mount) bool {
	return m.Type == "bind" || slices.Contains(m.Options, "bind") || slices.Contains(m.Options, "rbind")
}

// under says whether p is strictly below dir.
func under(p, dir string) bool {
	return p != dir && (dir == "/" || strings.HasPrefix(p, dir+"/"))
}
