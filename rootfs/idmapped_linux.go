package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// IDMapped uses dir as the root through an id-mapped mount at stage (made
// here; it must not exist): files owned by host IDs 0-65535 appear to the
// sandbox, whose user namespace is userns, as owned by the same IDs, and
// what its root writes lands owned by host root; nothing on disk is
// chowned (kernel ≥ 5.12, and a filesystem that supports it). The mount
// is removed with the root.
func IDMapped(dir, stage string, userns *os.File) (*Root, error) {
	if err := os.Mkdir(stage, 0o755); err != nil {
		return nil, fmt.Errorf("id-mapped root: %w", err)
	}
	r := &Root{Path: stage, owned: true, mapped: true}
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		_ = os.Remove(stage)
		return nil, fmt.Errorf("id-mapped root: clone the mount of %s: %w", dir, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		_ = os.Remove(stage)
		return nil, fmt.Errorf("%w %s (filesystem %s; id-mapped mounts need kernel 5.12, tmpfs 6.3): %w", ErrNoIDMap, dir, fsType(dir), err)
	}
	if err := unix.MoveMount(fd, "", unix.AT_FDCWD, stage, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		_ = os.Remove(stage)
		return nil, fmt.Errorf("id-mapped root: mount at %s: %w", stage, err)
	}
	return r, nil
}

// CheckIDMap tries an id-mapped mount of dir through userns, attached
// nowhere and dropped at once: it says beforehand, naming the path and
// its filesystem, what the runtime would find only while starting the
// sandbox.
func CheckIDMap(dir string, userns *os.File) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("%s: %w", dir, err)
	}
	defer unix.Close(fd)
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(userns.Fd())}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		return fmt.Errorf("%w %s (filesystem %s; id-mapped mounts need kernel 5.12, tmpfs 6.3): %w", ErrNoIDMap, dir, fsType(dir), err)
	}
	return nil
}

// ErrNoIDMap: the kernel or the filesystem cannot id-map a mount.
var ErrNoIDMap = errors.New("cannot id-map a mount of")

// fsType names the filesystem of path, for messages.
func fsType(path string) string {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return "unknown"
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	case unix.OVERLAYFS_SUPER_MAGIC:
		return "overlay"
	case unix.NFS_SUPER_MAGIC:
		return "nfs"
	}
	return fmt.Sprintf("0x%x", st.Type)
}

// unmountStage takes down a mount corral made at path (an id-mapped or
// layered root), if there is one there; then path is an empty directory
// again.
func unmountStage(path string) error {
	// Never through a symlink: one in place of a root is removed as a
	// link, never followed to a mount it names.
	fi, err := os.Lstat(path)
	if err != nil || !fi.IsDir() {
		return nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	// Asked of the kernel rather than of the mount table (a read and a
	// parse of mountinfo per sandbox): EINVAL says nothing is mounted
	// there.
	err = unix.Unmount(abs, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
	if err != nil && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount %s: %w", abs, err)
	}
	return nil
}
