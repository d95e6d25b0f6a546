// Package beneath does the daemon's file operations in directories that a
// sandbox can write, name or race: a service's log dir, its notify socket's
// dir, a built-in root it may have written to. Every operation starts from
// an open directory (a Dir) and resolves names with openat2 under
// RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS: a symlink, a magic link or a ".."
// anywhere in a name is refused, never followed, so swapping a directory for
// a symlink between two calls cannot send the daemon (root) elsewhere.
// Ownership and modes are changed on open files (fchown, fchmod), never by
// name.
package beneath

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// resolve is how every name below a Dir is resolved.
const resolve = unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS

// ErrCrossesMount: RemoveAll met a mount point and did not descend into it.
var ErrCrossesMount = errors.New("holds a mount point; refusing to delete through it")

// Dir is an open directory: the anchor of the operations below it.
type Dir struct {
	f *os.File
}

// OpenRoot opens the directory at path, which the caller trusts (a path
// of its own configuration, such as the state dir): symlinks in path are
// followed. Names below it are not.
func OpenRoot(path string) (*Dir, error) {
	fd, err := unix.Open(path, unix.O_DIRECTORY|unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return &Dir{f: os.NewFile(uintptr(fd), path)}, nil
}

// Close closes the directory.
func (d *Dir) Close() error { return d.f.Close() }

// Name is the path the directory was opened at, for messages.
func (d *Dir) Name() string { return d.f.Name() }

// Fd is the directory's file descriptor.
func (d *Dir) Fd() int { return int(d.f.Fd()) }

// File is the directory as an open file (for Chown, Chmod, or handing it
// to a process). It stays owned by d.
func (d *Dir) File() *os.File { return d.f }

// ProcPath names the directory through this process's fd table
// (/proc/self/fd/N/name), for calls that take only a path, such as bind(2)
// of a unix socket. The kernel resolves it to the open directory itself,
// whatever has been renamed or swapped since.
func (d *Dir) ProcPath(name string) string {
	return "/proc/self/fd/" + strconv.Itoa(d.Fd()) + "/" + name
}

// Open opens name below d with flags (O_CLOEXEC and O_NOFOLLOW are
// added) and, with O_CREAT, mode.
func (d *Dir) Open(name string, flags int, mode uint32) (*os.File, error) {
	if err := checkName(name); err != nil {
		return nil, d.pathError("open", name, err)
	}
	how := unix.OpenHow{Flags: uint64(flags | unix.O_CLOEXEC | unix.O_NOFOLLOW), Resolve: resolve}
	if flags&(unix.O_CREAT|unix.O_TMPFILE) != 0 {
		how.Mode = uint64(mode)
	}
	fd, err := openat2(d.Fd(), name, &how)
	if err != nil {
		return nil, d.pathError("open", name, err)
	}
	return os.NewFile(uintptr(fd), filepath.Join(d.Name(), name)), nil
}

// OpenDir opens the directory name below d.
func (d *Dir) OpenDir(name string) (*Dir, error) {
	f, err := d.Open(name, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		return nil, err
	}
	return &Dir{f: f}, nil
}

// OpenFile opens the regular file name below d for reading without
// blocking on a FIFO or a device a hostile writer may have put there, and
// refuses anything but a regular file.
func (d *Dir) OpenFile(name string) (*os.File, error) {
	f, err := d.Open(name, unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = d.pathError("open", name, fmt.Errorf("not a regular file (%v)", fi.Mode().Type()))
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// Chmod sets the mode of name below d, which may be a socket (fchmod on a
// socket's fd would change the socket, not the file that names it): it
// opens name as an O_PATH handle, never following a symlink, and changes
// the mode of the inode behind that handle.
func (d *Dir) Chmod(name string, mode uint32) error {
	f, err := d.Open(name, unix.O_PATH, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := unix.Fchmodat(unix.AT_FDCWD, "/proc/self/fd/"+strconv.Itoa(int(f.Fd())), mode, 0); err != nil {
		return d.pathError("chmod", name, err)
	}
	return nil
}

// MkdirAll makes the directory name below d, and any missing parents,
// with mode (less the umask), and opens it. An existing symlink anywhere
// on the way is an error.
func (d *Dir) MkdirAll(name string, mode uint32) (*Dir, error) {
	if err := checkName(name); err != nil {
		return nil, d.pathError("mkdir", name, err)
	}
	cur := d
	for _, part := range strings.Split(filepath.Clean(name), "/") {
		if err := unix.Mkdirat(cur.Fd(), part, mode); err != nil && !errors.Is(err, unix.EEXIST) {
			if cur != d {
				cur.Close()
			}
			return nil, d.pathError("mkdir", name, err)
		}
		next, err := cur.OpenDir(part)
		if cur != d {
			cur.Close()
		}
		if err != nil {
			return nil, err
		}
		cur = next
	}
	return cur, nil
}

// Remove removes the file, socket, symlink or empty directory name below
// d; one that does not exist is no error.
func (d *Dir) Remove(name string) error {
	if err := checkName(name); err != nil {
		return d.pathError("remove", name, err)
	}
	parent, base, err := d.parentOf(name)
	if err != nil {
		return err
	}
	if parent != d {
		defer parent.Close()
	}
	err = unix.Unlinkat(parent.Fd(), base, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(parent.Fd(), base, unix.AT_REMOVEDIR)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return d.pathError("remove", name, err)
	}
	return nil
}

// RemoveAll removes name below d and everything in it, without following
// a symlink (it removes the link) and without descending into a mount
// point (ErrCrossesMount, with nothing of the mounted tree removed). Every
// step is relative to an open parent directory, so a directory renamed or
// swapped for a symlink meanwhile cannot redirect it. A name that does not
// exist is no error.
func (d *Dir) RemoveAll(name string) error {
	if err := checkName(name); err != nil {
		return d.pathError("remove", name, err)
	}
	parent, base, err := d.parentOf(name)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if parent != d {
		defer parent.Close()
	}
	if err := removeAt(parent.Fd(), base, 0); err != nil {
		return fmt.Errorf("remove %s: %w", filepath.Join(d.Name(), name), err)
	}
	return nil
}

// maxDepth bounds RemoveAll's descent: each level holds an open
// directory, and a tree a sandbox built may be deeper than any path.
const maxDepth = 256

// ErrTooDeep: RemoveAll met a tree deeper than maxDepth and removed none
// of what lies below that depth.
var ErrTooDeep = errors.New("nested too deep to remove")

// removeAt removes base in the directory dirfd, recursively; depth is
// base's level below the name RemoveAll was given.
func removeAt(dirfd int, base string, depth int) error {
	if depth > maxDepth {
		return fmt.Errorf("more than %d levels: %w", maxDepth, ErrTooDeep)
	}
	var st unix.Statx_t
	err := unix.Statx(dirfd, base, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_TYPE, &st)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dirfd, base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return err
		}
		return nil
	}
	if st.Attributes_mask&unix.STATX_ATTR_MOUNT_ROOT != 0 && st.Attributes&unix.STATX_ATTR_MOUNT_ROOT != 0 {
		return fmt.Errorf("%s %w", base, ErrCrossesMount)
	}
	how := unix.OpenHow{Flags: unix.O_DIRECTORY | unix.O_RDONLY | unix.O_CLOEXEC | unix.O_NOFOLLOW, Resolve: resolve | unix.RESOLVE_NO_XDEV}
	fd, err := openat2(dirfd, base, &how)
	if errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("%s %w", base, ErrCrossesMount)
	}
	if err != nil {
		return err
	}
	sub := os.NewFile(uintptr(fd), base)
	defer sub.Close()
	for {
		names, err := sub.Readdirnames(256)
		for _, n := range names {
			if err := removeAt(fd, n, depth+1); err != nil {
				if depth > 0 || errors.Is(err, ErrTooDeep) {
					return err // named once, at the top: not once per level
				}
				return fmt.Errorf("%s/%s: %w", base, n, err)
			}
		}
		if err != nil || len(names) == 0 {
			break
		}
		// Entries were removed: read the directory again from its start.
		if _, err := sub.Seek(0, 0); err != nil {
			return err
		}
	}
	if err := unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return err
	}
	return nil
}

// parentOf opens the directory holding name (d itself for a plain name)
// and returns it with name's last component.
func (d *Dir) parentOf(name string) (*Dir, string, error) {
	dir, base := filepath.Split(filepath.Clean(name))
	if dir == "" {
		return d, base, nil
	}
	parent, err := d.OpenDir(strings.TrimSuffix(dir, "/"))
	if err != nil {
		return nil, "", err
	}
	return parent, base, nil
}

// checkName refuses names that are not plainly below a directory.
func checkName(name string) error {
	if name == "" || filepath.IsAbs(name) || name != filepath.Clean(name) || name == "." ||
		name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("%q is not a clean relative name", name)
	}
	return nil
}

func (d *Dir) pathError(op, name string, err error) error {
	return &os.PathError{Op: op, Path: filepath.Join(d.Name(), name), Err: err}
}

// openat2 retries on EAGAIN, which RESOLVE_BENEATH returns when a rename
// elsewhere raced the lookup (the kernel cannot vouch for the result).
func openat2(dirfd int, name string, how *unix.OpenHow) (int, error) {
	for try := 0; ; try++ {
		fd, err := unix.Openat2(dirfd, name, how)
		if (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)) && try < 16 {
			continue
		}
		return fd, err
	}
}
