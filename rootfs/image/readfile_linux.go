package image

import (
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/beneath"
)

// maxReadFile bounds ReadFile: it reads small configuration files
// (/etc/passwd, /etc/group) that the image's author wrote.
const maxReadFile = 1 << 20

// ReadFile reads the regular file at the absolute path p of the image's
// root as the overlay of its layers shows it, without mounting anything:
// the top layer that has p wins; a whiteout of p or of a directory on its
// way hides it and everything below; an opaque directory on its way hides
// the lower layers' contents. A missing file is nil, nil. Nothing is
// followed out of a layer: p and its directories must not be symlinks
// (an image's passwd that is one is refused), and a FIFO or device is
// never opened.
func (img *Image) ReadFile(p string) ([]byte, error) {
	rel := strings.TrimPrefix(path.Clean("/"+p), "/")
	if rel == "" {
		return nil, fmt.Errorf("image %s: %s is not a file", img.Name(), p)
	}
	parts := strings.Split(rel, "/")
	dirs := img.LayerDirs()
	for i := len(dirs) - 1; i >= 0; i-- {
		data, found, stop, err := readInLayer(dirs[i], parts)
		if err != nil {
			return nil, fmt.Errorf("image %s: %s: %w", img.Name(), p, err)
		}
		if found || stop {
			return data, nil
		}
	}
	return nil, nil
}

// readInLayer looks for parts in one layer: found with its data; stop
// when the layer hides what the layers below hold (a whiteout, or an
// opaque directory on the way, or a non-directory where a directory is).
func readInLayer(layer string, parts []string) (data []byte, found, stop bool, err error) {
	root, err := beneath.OpenRoot(layer)
	if err != nil {
		return nil, false, false, err
	}
	defer root.Close()
	dirfd := root.Fd()
	opaque := false
	for i, name := range parts {
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return nil, false, opaque, nil
			}
			return nil, false, false, err
		}
		last := i == len(parts)-1
		switch mode := st.Mode & unix.S_IFMT; {
		case mode == unix.S_IFCHR && st.Rdev == 0:
			return nil, false, true, nil // a whiteout
		case last && mode == unix.S_IFREG:
			f, err := root.OpenFile(strings.Join(parts, "/"))
			if err != nil {
				return nil, false, false, err
			}
			defer f.Close()
			data, err := io.ReadAll(io.LimitReader(f, maxReadFile+1))
			if err == nil && len(data) > maxReadFile {
				err = fmt.Errorf("larger than %d bytes", maxReadFile)
			}
			return data, err == nil, false, err
		case mode == unix.S_IFLNK:
			what := "a directory on the way is a symlink"
			if last {
				what = "not a regular file"
			}
			return nil, false, false, fmt.Errorf("%s: %s is a symlink in the image, and corral follows none there", what, "/"+strings.Join(parts[:i+1], "/"))
		case last:
			return nil, false, false, fmt.Errorf("not a regular file but %s", fileKind(mode))
		case mode != unix.S_IFDIR:
			// A file or device where a directory is: this layer replaces
			// the directory.
			return nil, false, true, nil
		}
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, false, false, err
		}
		defer unix.Close(fd)
		dirfd = fd
		buf := make([]byte, 1)
		if n, err := unix.Fgetxattr(fd, "trusted.overlay.opaque", buf); err == nil && n == 1 && buf[0] == 'y' {
			opaque = true
		}
	}
	return nil, false, opaque, nil
}

// fileKind names a file type for messages.
func fileKind(mode uint32) string {
	switch mode {
	case unix.S_IFDIR:
		return "a directory"
	case unix.S_IFIFO:
		return "a FIFO"
	case unix.S_IFSOCK:
		return "a socket"
	case unix.S_IFCHR, unix.S_IFBLK:
		return "a device"
	}
	return fmt.Sprintf("file type %o", mode)
}
