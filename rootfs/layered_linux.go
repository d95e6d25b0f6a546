package rootfs

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Layered makes a root of an image's unpacked layers (layers[0] the
// bottom) at stage (made here; it must not exist): one overlay mount,
// read-only, or writable into upper (its upperdir and workdir are made
// there, owned by owner, the sandbox's root on the host). With userns, each
// layer is id-mapped first (overlayfs cannot id-map a merged overlay, but
// stacks id-mapped layers), so the layers' owners appear inside as they
// are on disk and nothing is chowned. The layers are given to the overlay
// as detached mounts (/proc/self/fd/N): nothing but the overlay itself is
// mounted in the host's namespace. RemoveDir takes it down.
func Layered(layers []string, stage string, userns *os.File, upper string, owner int) (_ *Root, err error) {
	if len(layers) == 0 {
		return nil, errors.New("layered root: an image with no layers")
	}
	var lowers []int
	defer func() {
		for _, fd := range lowers {
			unix.Close(fd)
		}
	}()
	// Top first: the order overlayfs stacks lowerdirs in.
	for i := len(layers) - 1; i >= 0; i-- {
		fd, err := layerMount(layers[i], userns)
		if err != nil {
			return nil, err
		}
		lowers = append(lowers, fd)
	}
	fs, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("layered root: overlayfs: %w", err)
	}
	defer unix.Close(fs)
	set := func(key, value string) error {
		if err := unix.FsconfigSetString(fs, key, value); err != nil {
			return fmt.Errorf("layered root: overlay option %s=%s: %w", key, value, err)
		}
		return nil
	}
	if err := addLowers(fs, lowers, set); err != nil {
		return nil, err
	}
	if upper != "" {
		up, work, err := makeUpper(upper, owner)
		if err != nil {
			return nil, err
		}
		if err := errors.Join(set("upperdir", up), set("workdir", work)); err != nil {
			return nil, err
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return nil, fmt.Errorf("layered root: make the overlay of %d layers: %w", len(layers), err)
	}
	attrs := unix.MOUNT_ATTR_NODEV
	if upper == "" {
		attrs |= unix.MOUNT_ATTR_RDONLY
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return nil, fmt.Errorf("layered root: mount the overlay: %w", err)
	}
	defer unix.Close(mnt)
	if err := os.Mkdir(stage, 0o755); err != nil {
		return nil, fmt.Errorf("layered root: %w", err)
	}
	if err := unix.MoveMount(mnt, "", unix.AT_FDCWD, stage, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		_ = os.Remove(stage)
		return nil, fmt.Errorf("layered root: mount at %s: %w", stage, err)
	}
	return &Root{Path: stage, owned: true, mapped: true}, nil
}

// layerMount is a detached, read-only mount of one layer's directory,
// id-mapped through userns when there is one.
func layerMount(dir string, userns *os.File) (int, error) {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("layered root: layer %s: %w", dir, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NODEV}
	if userns != nil {
		attr.Attr_set |= unix.MOUNT_ATTR_IDMAP
		attr.Userns_fd = uint64(userns.Fd())
	}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(fd)
		if userns != nil {
			return -1, fmt.Errorf("%w %s (filesystem %s; id-mapped mounts need kernel 5.12, tmpfs 6.3): %w", ErrNoIDMap, dir, fsType(dir), err)
		}
		return -1, fmt.Errorf("layered root: layer %s: %w", dir, err)
	}
	return fd, nil
}

// lowerdirPlus: try "lowerdir+" first (a test turns it off, to run the
// older kernels' way here).
var lowerdirPlus = true

// addLowers gives the overlay its layers, top first: one at a time
// ("lowerdir+", kernel 6.8) where the kernel has it, so that no option
// string limits how many; else all in one "lowerdir" (4095 bytes at most,
// which short /proc/self/fd/N paths keep far from).
func addLowers(fs int, lowers []int, set func(key, value string) error) error {
	paths := make([]string, len(lowers))
	for i, fd := range lowers {
		paths[i] = fmt.Sprintf("/proc/self/fd/%d", fd)
	}
	if !lowerdirPlus {
		return set("lowerdir", strings.Join(paths, ":"))
	}
	if err := unix.FsconfigSetString(fs, "lowerdir+", paths[0]); err == nil {
		for _, p := range paths[1:] {
			if err := set("lowerdir+", p); err != nil {
				return err
			}
		}
		return nil
	} else if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("layered root: overlay option lowerdir+=%s: %w", paths[0], err)
	}
	return set("lowerdir", strings.Join(paths, ":"))
}

// makeUpper makes upper's upperdir and workdir (kept if there), owned by
// owner: what the sandbox writes lands there, as its root on the host.
func makeUpper(upper string, owner int) (up, work string, err error) {
	up, work = upper+"/upper", upper+"/work"
	for _, d := range []string{upper, up, work} {
		if err := os.Mkdir(d, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
			return "", "", fmt.Errorf("layered root: writable layer: %w", err)
		}
	}
	// The upperdir is the root's top directory inside: its owner's.
	if err := os.Lchown(up, owner, owner); err != nil {
		return "", "", fmt.Errorf("layered root: writable layer: %w", err)
	}
	if err := os.Chmod(up, 0o755); err != nil {
		return "", "", fmt.Errorf("layered root: writable layer: %w", err)
	}
	return up, work, nil
}
