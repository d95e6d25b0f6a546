package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/beneath"
)

// MakeMountpoints makes the mount points of mounts that lie in the root's
// own tree, as host root, fd-relative and following no symlink: the
// runtime would make missing ones from inside the sandbox, where, in its
// user namespace, it does not own the root's directories (host root's).
// It made them in an operator's directory root before user namespaces
// too. A mount point below another of mounts (a tmpfs, a bind) is the
// runtime's to make, in what that mount holds.
func (r *Root) MakeMountpoints(mounts []rspec.Mount) error {
	if r.Path == "" {
		return nil
	}
	if r.shared {
		// Every sandbox's: a root that lacks one gets its own (Unshare).
		if ok, err := r.HasMountpoints(mounts); err != nil || !ok {
			return errors.Join(errors.New("mount points: missing in the shared built-in root"), err)
		}
		return nil
	}
	root, err := beneath.OpenRoot(r.Path)
	if err != nil {
		return fmt.Errorf("mount points: %w", err)
	}
	defer root.Close()
	for i, m := range mounts {
		dst := filepath.Clean(m.Destination)
		if dst == "/" || below(dst, mounts[:i]) {
			continue
		}
		rel := strings.TrimPrefix(dst, "/")
		isFile := false
		if m.Type == "bind" {
			if fi, err := os.Stat(m.Source); err == nil && !fi.IsDir() {
				isFile = true
			}
		}
		if !isFile {
			d, err := root.MkdirAll(rel, 0o755)
			if err != nil {
				return fmt.Errorf("mount point %s: %w", dst, err)
			}
			d.Close()
			continue
		}
		if parent := filepath.Dir(rel); parent != "." {
			d, err := root.MkdirAll(parent, 0o755)
			if err != nil {
				return fmt.Errorf("mount point %s: %w", dst, err)
			}
			d.Close()
		}
		f, err := root.Open(rel, unix.O_CREAT|unix.O_RDONLY, 0o644)
		if err != nil {
			return fmt.Errorf("mount point %s: %w", dst, err)
		}
		f.Close()
	}
	return nil
}

// below reports whether dst lies strictly below the destination of one
// of mounts.
func below(dst string, mounts []rspec.Mount) bool {
	for _, m := range mounts {
		d := filepath.Clean(m.Destination)
		if d != "/" && strings.HasPrefix(dst, d+"/") {
			return true
		}
	}
	return false
}

// GiveTo makes the root's own tree (what HostBind made: its directories,
// links and /etc files, never what is bound into it) owned by uid and
// gid: the root of a sandbox in a user namespace, with a writable root.
func (r *Root) GiveTo(uid, gid int) error {
	if r.shared {
		return errors.New("give root: the shared built-in root is never given away")
	}
	if !r.owned || r.Path == "" {
		return nil
	}
	var walk func(dirfd int, depth int) error
	walk = func(dirfd int, depth int) error {
		if depth > 16 {
			return fmt.Errorf("give root to %d: tree deeper than 16", uid)
		}
		dup, err := unix.Dup(dirfd)
		if err != nil {
			return err
		}
		f := os.NewFile(uintptr(dup), "root") // its own fd: closed here
		names, err := f.Readdirnames(-1)
		f.Close()
		if err != nil {
			return err
		}
		for _, n := range names {
			if err := unix.Fchownat(dirfd, n, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return fmt.Errorf("give root to %d: %s: %w", uid, n, err)
			}
			var st unix.Stat_t
			if err := unix.Fstatat(dirfd, n, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				return err
			}
			if st.Mode&unix.S_IFMT != unix.S_IFDIR {
				continue
			}
			fd, err := unix.Openat(dirfd, n, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			err = walk(fd, depth+1)
			unix.Close(fd)
			if err != nil {
				return err
			}
		}
		return nil
	}
	fd, err := unix.Open(r.Path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("give root to %d: %w", uid, err)
	}
	defer unix.Close(fd)
	if err := unix.Fchown(fd, uid, gid); err != nil {
		return fmt.Errorf("give root to %d: %w", uid, err)
	}
	return walk(fd, 0)
}
