package rootfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/beneath"
)

// LayeredOptions shape a Layered root.
type LayeredOptions struct {
	// Userns id-maps each layer through it (the sandbox's user namespace);
	// nil leaves the host's IDs.
	Userns *os.File
	// Upper is the directory of the overlay's writable layer (made here,
	// with its upperdir and workdir). Every layered root has one: the
	// runtime makes the mount points an image lacks there, and a root
	// the service may not write is made read-only by the runtime after
	// that (read_only, the default). It lives as long as the sandbox.
	Upper string
	// Owner is the sandbox's root as the host sees it (its ID block's
	// first ID; 0 in the host's user namespace): the upper layer's top
	// directory and its /etc are its.
	Owner int
	// Etc are files corral supplies in /etc (hosts, hostname,
	// resolv.conf), written into the upper layer over the image's.
	Etc map[string]string
}

// Layered makes a root of an image's unpacked layers (layers[0] the
// bottom) at stage (made here; it must not exist): one overlay mount over
// them and opt.Upper. With opt.Userns, each layer is id-mapped first
// (overlayfs cannot id-map a merged overlay, but stacks id-mapped
// layers), so the layers' owners appear inside as they are on disk and
// nothing is chowned. The layers are given to the overlay as detached
// mounts (/proc/self/fd/N): nothing but the overlay itself is mounted in
// the host's namespace. RemoveDir takes it down; RemoveUpper removes the
// writable layer.
func Layered(layers []string, stage string, opt LayeredOptions) (_ *Root, err error) {
	if len(layers) == 0 {
		return nil, errors.New("layered root: an image with no layers")
	}
	if opt.Upper == "" {
		return nil, errors.New("layered root: no writable layer")
	}
	var lowers []int
	defer func() {
		for _, fd := range lowers {
			unix.Close(fd)
		}
	}()
	// Top first: the order overlayfs stacks lowerdirs in.
	for i := len(layers) - 1; i >= 0; i-- {
		fd, err := layerMount(layers[i], opt.Userns)
		if err != nil {
			return nil, err
		}
		lowers = append(lowers, fd)
	}
	up, work, err := makeUpper(opt.Upper, opt.Owner, opt.Etc)
	if err != nil {
		return nil, err
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
	if err := errors.Join(set("upperdir", up), set("workdir", work)); err != nil {
		return nil, err
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return nil, fmt.Errorf("layered root: make the overlay of %d layers: %w", len(layers), err)
	}
	mnt, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NODEV)
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

// RemoveUpper removes a layered root's writable layer (once the root's
// mount is down), never through a symlink or across a mount: what the
// service wrote there is the service's.
func RemoveUpper(upper string) error {
	parent, err := beneath.OpenRoot(filepath.Dir(upper))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove writable layer: %w", err)
	}
	defer parent.Close()
	if err := parent.RemoveAll(filepath.Base(upper)); err != nil {
		return fmt.Errorf("remove writable layer %s: %w", upper, err)
	}
	return nil
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

// makeUpper makes upper's upperdir and workdir, and corral's /etc files
// in the upperdir: its top directory and /etc owned by owner (the
// sandbox's root, who may write there when its root is writable), the
// files root's and read-only.
func makeUpper(upper string, owner int, etc map[string]string) (up, work string, err error) {
	fail := func(err error) (string, string, error) {
		return "", "", fmt.Errorf("layered root: writable layer: %w", err)
	}
	up, work = filepath.Join(upper, "upper"), filepath.Join(upper, "work")
	for _, d := range []string{upper, up, work} {
		if err := os.Mkdir(d, 0o700); err != nil {
			return fail(err)
		}
	}
	if len(etc) > 0 {
		if err := os.Mkdir(filepath.Join(up, "etc"), 0o755); err != nil {
			return fail(err)
		}
		for name, data := range etc {
			if err := os.WriteFile(filepath.Join(up, "etc", name), []byte(data), 0o644); err != nil {
				return fail(err)
			}
		}
		if err := os.Lchown(filepath.Join(up, "etc"), owner, owner); err != nil {
			return fail(err)
		}
	}
	if err := os.Lchown(up, owner, owner); err != nil {
		return fail(err)
	}
	if err := os.Chmod(up, 0o755); err != nil {
		return fail(err)
	}
	return up, work, nil
}
