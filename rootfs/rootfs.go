// Package rootfs builds a sandbox's root filesystem: either the built-in
// root made of read-only binds of the host's system directories, or a
// directory tree the operator gives.
package rootfs

import (
	"errors"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/corral-dev/corral/rootfs/beneath"
)

// Root is a prepared root filesystem.
type Root struct {
	// Path is the directory that becomes the sandbox's "/".
	Path string
	// Mounts are binds that complete the root (the host's /usr, ...). They
	// happen inside the sandbox's own mount namespace, so the host never
	// sees them and they vanish with the sandbox.
	Mounts []rspec.Mount
	// owned is true when Path was made for this sandbox and is removed
	// with it; a directory the operator gave is never removed.
	owned bool
	// builtin: the built-in root (HostBind's), for messages.
	builtin bool
	// plan is what HostBindPlan's root would hold (Path is then empty).
	plan *layout
	// mapped: Path is an id-mapped mount of an operator's directory
	// (IDMapped): RemoveDir takes the mount down before it removes the
	// (then empty) directory.
	mapped bool
	// shared: Path is a template shared by every read-only built-in root
	// (HostBindShared), never written to or removed; own is the
	// sandbox's own dir (its /etc files), removed with it.
	shared bool
	own    string
}

// IsBuiltin reports whether r is corral's built-in root (HostBind's).
func (r *Root) IsBuiltin() bool { return r.builtin }

// Directory uses an existing directory tree as the root, as is.
func Directory(path string) (*Root, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("rootfs %s: %w", path, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("rootfs %s: not a directory", path)
	}
	return &Root{Path: abs}, nil
}

// Apply makes s use the root: its path, and its binds placed before the
// spec's own mounts so that those can be mounted on top.
func (r *Root) Apply(s *rspec.Spec) {
	if s.Root == nil {
		s.Root = &rspec.Root{}
	}
	s.Root.Path = r.Path
	s.Mounts = append(append([]rspec.Mount(nil), r.Mounts...), s.Mounts...)
}

// Remove deletes a root that was made for the sandbox. It never crosses
// into another filesystem, so a bind that somehow leaked into the host's
// mount namespace cannot make it delete host files.
func (r *Root) Remove() error {
	if !r.owned {
		return nil
	}
	if r.shared {
		return RemoveDir(r.own)
	}
	return RemoveDir(r.Path)
}

// Adopt takes over a built-in root that an earlier corral process made
// at path, to be removed with its sandbox.
func Adopt(path string) *Root {
	return &Root{Path: path, owned: true, builtin: true}
}

// RemoveDir deletes a root made for a sandbox (also one left by an
// earlier, killed run): never into another mount, never through a
// symlink.
func RemoveDir(path string) error {
	// An id-mapped root's mount (IDMapped) left by a killed corral comes
	// down first: what it shows is the operator's, never to be removed.
	if err := unmountStage(path); err != nil {
		return fmt.Errorf("remove root %s: %w", path, err)
	}
	// An empty directory (such a mount's stage, once it is down) goes
	// with one rmdir, which never follows a link or crosses a mount
	// (EBUSY); anything else is walked.
	if err := unix.Rmdir(path); err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return removeSameFS(path)
}

// ErrCrossesMount is returned when a root to remove holds a mount point.
var ErrCrossesMount = beneath.ErrCrossesMount
