package integration

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
	"github.com/corral-dev/corral/rootfs"
	"github.com/corral-dev/corral/rootfs/image"
	"github.com/corral-dev/corral/rootfs/image/imagetest"
	"github.com/corral-dev/corral/runtime/imagerun"
)

// TestImageRootMatchesUmociUnpack: the root a sandbox sees of a
// multi-layer image (its layers as `corral image import` unpacks them,
// stacked by rootfs.Layered as the runtime stacks them, in the host's
// user namespace) is, file by file, what `umoci unpack` makes of the same
// image: the same paths, types, modes (setuid, setgid, sticky), owners,
// sizes, contents, symlink targets, hard links and xattrs, and no
// whiteout.
func TestImageRootMatchesUmociUnpack(t *testing.T) {
	umoci, err := exec.LookPath("umoci")
	testenv.Need(t, err == nil, "umoci is not installed (make deps installs it)")
	layout := filepath.Join(t.TempDir(), "layout")
	c := imagetest.NewContent()
	d := c.Image(t, imagetest.Spec{Layers: comparedLayers(t)})
	c.WriteLayout(t, layout, imagetest.Named(d, "corral-test/layers:1"))

	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command(umoci, "unpack", "--image", layout+":latest", bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	want := describeTree(t, filepath.Join(bundle, "rootfs"))
	// The reference itself is checked where the layers act on each other,
	// so that two trees wrong the same way cannot pass.
	for _, w := range []struct{ path, desc string }{
		{"etc/motd", "file 0644 0:0 size 6 sha256:" + sha256Hex("motd 3")},
		{"var/lib/data/fresh", "file 0644 0:0 size 1 sha256:" + sha256Hex("f")},
		{"home/new/file", "file 0640 2000:2000 size 3 sha256:" + sha256Hex("new")},
		{"opt/tool", "file 0755 0:0 size 4 sha256:" + sha256Hex("tool")},
		{"srv", "dir 0750 0:3"},
		{"usr/share/doc/b", "file 0644 0:0 size 3 sha256:" + sha256Hex("abc") + " links usr/share/doc/c"},
		{"usr/bin/passwd", "symlink 0777 0:0 -> /bin/busybox"},
		{"bin/busybox", "file 0755 0:0 size 7 sha256:" + sha256Hex("busybox")},
		{"media", "symlink 0777 0:0 -> /mnt"},
	} {
		if got := want[w.path]; got != w.desc {
			t.Errorf("umoci's %s: %q, want %q", w.path, got, w.desc)
		}
	}
	for _, gone := range []string{"etc/hosts.old", "var/lib/data/old", "var/lib/cache/old", "home/old/notes", "home/user", "bin/sh"} {
		if got, ok := want[gone]; ok {
			t.Errorf("umoci's tree has %s (%s), which a layer above deletes", gone, got)
		}
	}

	store := t.TempDir()
	if r := finish(t, exec.Command(corralBin, "--state-dir", stateDir, "--data-dir", store, "image", "import", layout)); r.code != 0 {
		t.Fatalf("corral image import: %s", r)
	}
	s, err := image.Open(imagerun.StoreDir(store))
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Get(d.Digest.String())
	if err != nil {
		t.Fatal(err)
	}
	got := layeredTree(t, img.LayerDirs())

	var diffs []string
	for _, p := range sortedUnion(want, got) {
		w, inWant := want[p]
		g, inGot := got[p]
		switch {
		case !inGot:
			diffs = append(diffs, fmt.Sprintf("%s: not in corral's root; umoci: %s", p, w))
		case !inWant:
			diffs = append(diffs, fmt.Sprintf("%s: only in corral's root: %s", p, g))
		case g != w:
			diffs = append(diffs, fmt.Sprintf("%s:\n\tcorral: %s\n\tumoci:  %s", p, g, w))
		}
		if strings.HasPrefix(filepath.Base(p), ".wh.") {
			diffs = append(diffs, fmt.Sprintf("%s: a whiteout shows", p))
		}
	}
	if len(diffs) > 0 {
		t.Errorf("corral's root of the image differs from umoci unpack's in %d paths:\n%s", len(diffs), strings.Join(diffs, "\n"))
	}
	t.Logf("%d paths compared", len(want))
}

// comparedLayers are the layers of TestImageRootMatchesUmociUnpack's
// image, bottom first: each with the entries of the directories it
// changes, as image builders write them. The layers above the first
// delete a file, a directory and a hard link's other name (one of them
// made again higher up, one as an opaque directory), make a directory
// opaque, put a file in a directory's place and the other way round, a
// directory and a symlink in each other's place, a symlink in a file's,
// break a hard link with a new file, and give a file and a directory a
// new mode and owner.
//
// Left out, as corral departs from umoci unpack there on purpose: device
// nodes (never made: sandboxes run in a user namespace), a hard link to a
// file of a lower layer (refused at import, as the image spec allows:
// each layer is unpacked into a directory of its own), a directory a
// layer holds without an entry of its own (0755 and root's, as Docker
// makes it, not the lower layer's), an entry under a lower layer's
// symlink (placed at its own path, not followed), and an entry for the
// root itself (the root is the writable layer's, given to the sandbox's
// root).
func comparedLayers(t *testing.T) []imagetest.Layer {
	// A file capability (VFS_CAP_REVISION_2, effective, cap_net_raw):
	// the xattr real images carry.
	netRaw := "\x01\x00\x00\x02" + "\x00\x20\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00" + "\x00\x00\x00\x00"
	dir := func(name string, mode int64, uid, gid int) imagetest.Entry {
		return imagetest.Entry{Name: name, Type: tar.TypeDir, Mode: mode, UID: uid, GID: gid}
	}
	file := func(name, body string, mode int64, uid, gid int) imagetest.Entry {
		return imagetest.Entry{Name: name, Body: body, Mode: mode, UID: uid, GID: gid}
	}
	return []imagetest.Layer{
		imagetest.GzipLayer(t,
			imagetest.Dir("bin/"), file("bin/busybox", "busybox", 0o755, 0, 0), imagetest.Hardlink("bin/sh", "bin/busybox"),
			imagetest.Symlink("bin/ls", "busybox"),
			imagetest.Entry{Name: "bin/ping", Body: "ping", Mode: 0o755, Xattrs: map[string]string{"security.capability": netRaw}},
			imagetest.Dir("etc/"), imagetest.File("etc/motd", "motd 1"), imagetest.File("etc/hosts", "127.0.0.1 localhost"),
			imagetest.File("etc/hosts.old", "old"), imagetest.Symlink("etc/mtab", "/proc/self/mounts"),
			imagetest.Entry{Name: "etc/passwd", Body: "root:x:0:0::/root:/bin/sh\n", Xattrs: map[string]string{"user.origin": "base", "trusted.note": "kept"}},
			file("etc/shadow", "root:*:1::::::\n", 0o640, 0, 42), file("etc/empty", "", 0o400, 0, 0),
			imagetest.Dir("home/"), imagetest.Dir("home/old/"), imagetest.File("home/old/notes", "old"),
			dir("home/user/", 0o700, 1000, 1000), file("home/user/.profile", "PS1=$ ", 0o600, 1000, 1000),
			imagetest.Dir("media/"), imagetest.Dir("media/cdrom/"),
			imagetest.Dir("opt/"), imagetest.Dir("opt/tool/"), file("opt/tool/run", "run", 0o755, 0, 0),
			imagetest.Dir("srv/"), imagetest.File("srv/config", "a file"),
			imagetest.Dir("usr/"), imagetest.Dir("usr/lib/"), imagetest.File("usr/lib/libc.so", "libc"), imagetest.Symlink("lib", "usr/lib"),
			imagetest.Dir("usr/bin/"), file("usr/bin/passwd", "passwd", 0o4755, 0, 0), file("usr/bin/wall", "wall", 0o2755, 0, 5),
			file("usr/bin/both", "both", 0o6711, 0, 0),
			imagetest.Dir("usr/share/"), imagetest.Dir("usr/share/doc/"), imagetest.File("usr/share/doc/a", "abc"),
			imagetest.Hardlink("usr/share/doc/b", "usr/share/doc/a"), imagetest.Hardlink("usr/share/doc/c", "usr/share/doc/a"),
			dir("ro/", 0o555, 0, 0), file("ro/file", "ro", 0o444, 0, 0),
			imagetest.Dir("run/"), imagetest.Entry{Name: "run/fifo", Type: tar.TypeFifo, Mode: 0o620, GID: 5},
			dir("tmp/", 0o1777, 0, 0),
			imagetest.Dir("var/"), imagetest.Dir("var/lib/"), imagetest.Dir("var/lib/data/"), imagetest.File("var/lib/data/old", "old"),
			imagetest.Dir("var/lib/data/sub/"), imagetest.File("var/lib/data/sub/deep", "deep"),
			imagetest.Dir("var/lib/cache/"), imagetest.File("var/lib/cache/old", "old"),
			dir("var/lib/app/", 0o700, 1000, 1000), file("var/lib/app/state", "s", 0o600, 1000, 1000),
			imagetest.Entry{Name: "var/lib/app/current", Type: tar.TypeSymlink, Link: "state", Mode: 0o777, UID: 1000, GID: 1000},
		),
		imagetest.GzipLayer(t,
			imagetest.Dir("etc/"), imagetest.Whiteout("etc/motd"), imagetest.Whiteout("etc/hosts.old"),
			// Deleted and made again in one layer.
			imagetest.Whiteout("etc/hosts"), imagetest.File("etc/hosts", "127.0.0.1 localhost corral"),
			imagetest.Dir("home/"), imagetest.Opaque("home"), dir("home/new/", 0o750, 2000, 2000), file("home/new/file", "new", 0o640, 2000, 2000),
			imagetest.Dir("var/"), imagetest.Dir("var/lib/"), imagetest.Whiteout("var/lib/data"), imagetest.Whiteout("var/lib/cache"),
			imagetest.Dir("opt/"), file("opt/tool", "tool", 0o755, 0, 0),
			dir("srv/", 0o750, 0, 3), imagetest.Dir("srv/config/"), imagetest.File("srv/config/main.conf", "main"),
			imagetest.Dir("lib/"), imagetest.File("lib/ld.so", "ld"),
			imagetest.Dir("usr/"), imagetest.Dir("usr/bin/"), imagetest.Symlink("usr/bin/passwd", "/bin/busybox"),
			// A new mode and group: the whole file again, as builders write it.
			file("usr/bin/wall", "wall", 0o755, 0, 0),
			imagetest.Dir("usr/share/"), imagetest.Dir("usr/share/doc/"), imagetest.File("usr/share/doc/a", "new a"),
			imagetest.Dir("bin/"), file("bin/tool", "tool", 0o755, 0, 0), imagetest.Hardlink("bin/tool-alias", "bin/tool"),
			imagetest.Symlink("bin/vi", "../usr/bin/vim"), imagetest.Hardlink("bin/view", "bin/vi"),
		),
		imagetest.GzipLayer(t,
			imagetest.Dir("bin/"), imagetest.Whiteout("bin/sh"),
			imagetest.Dir("etc/"), imagetest.File("etc/motd", "motd 3"),
			imagetest.Dir("home/"), imagetest.Dir("home/old/"), imagetest.File("home/old/again", "again"),
			imagetest.Symlink("media", "/mnt"),
			imagetest.Dir("var/"), imagetest.Dir("var/lib/"), imagetest.Dir("var/lib/data/"), imagetest.File("var/lib/data/fresh", "f"),
			// Made again the way Docker's differ writes it: opaque.
			imagetest.Dir("var/lib/cache/"), imagetest.Opaque("var/lib/cache"), imagetest.File("var/lib/cache/new", "new"),
		),
	}
}

func sha256Hex(s string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(s))) }

// layeredTree mounts the layers (bottom first) as rootfs.Layered does for
// a sandbox in the host's user namespace (no id-mapping, no /etc files of
// corral's), in a mount namespace of its own on a thread of its own (the
// host never sees the mount), and describes the merged root.
func layeredTree(t *testing.T, layers []string) map[string]string {
	t.Helper()
	type result struct {
		tree map[string]string
		err  error
	}
	dir := t.TempDir()
	done := make(chan result, 1)
	go func() {
		// The thread stays locked: it ends with the goroutine, mount
		// namespace and all (never the main thread: TestMain's init
		// keeps that one, see main_test.go).
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- result{err: fmt.Errorf("make / private: %w", err)}
			return
		}
		upper := filepath.Join(dir, "upper")
		r, err := rootfs.Layered(layers, filepath.Join(dir, "root"), rootfs.LayeredOptions{Upper: upper})
		if err != nil {
			done <- result{err: err}
			return
		}
		tree, err := walkTree(r.Path)
		done <- result{tree, errors.Join(err, r.Remove(), rootfs.RemoveUpper(upper))}
	}()
	res := <-done
	if res.err != nil {
		t.Fatal(res.err)
	}
	return res.tree
}

func describeTree(t *testing.T, root string) map[string]string {
	t.Helper()
	tree, err := walkTree(root)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// walkTree describes every path under root (root itself as "."), one
// line each: type, mode, owner, then a regular file's size and content
// digest, a symlink's target, a device's numbers; its xattrs; and the
// other paths that are the same inode.
func walkTree(root string) (map[string]string, error) {
	out := map[string]string{}
	inodes := map[[2]uint64][]string{}
	err := filepath.WalkDir(root, func(path string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		var st unix.Stat_t
		if err := unix.Lstat(path, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("%s %04o %d:%d", fileType(st.Mode), st.Mode&0o7777, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			h, err := hashFile(path)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" size %d sha256:%s", st.Size, h)
		case unix.S_IFLNK:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			desc += fmt.Sprintf(" %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		xattrs, err := listXattrs(path)
		if err != nil {
			return err
		}
		if len(xattrs) > 0 {
			desc += " xattrs " + strings.Join(xattrs, " ")
		}
		out[rel] = desc
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			key := [2]uint64{st.Dev, st.Ino}
			inodes[key] = append(inodes[key], rel)
		}
		return nil
	})
	for _, paths := range inodes {
		if len(paths) < 2 {
			continue
		}
		slices.Sort(paths)
		for i, p := range paths {
			others := slices.Delete(slices.Clone(paths), i, i+1)
			out[p] += " links " + strings.Join(others, ",")
		}
	}
	return out, err
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFREG:
		return "file"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("type-%o", mode&unix.S_IFMT)
}

func hashFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", h.Sum(nil)), nil
}

// listXattrs lists path's xattrs as name="value", by name.
func listXattrs(path string) ([]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil || size == 0 {
		return nil, err
	}
	buf := make([]byte, size)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		return nil, err
	}
	var out []string
	// Overlayfs, asked for the size, counts the xattrs it hides
	// (trusted.overlay.*): the list may be shorter, even empty.
	for name := range strings.SplitSeq(string(buf[:n]), "\x00") {
		if name == "" {
			continue
		}
		val, err := lgetxattr(path, name)
		if err != nil {
			return nil, err
		}
		out = append(out, fmt.Sprintf("%s=%q", name, val))
	}
	slices.Sort(out)
	return out, nil
}

func lgetxattr(path, name string) ([]byte, error) {
	size, err := unix.Lgetxattr(path, name, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: xattr %s: %w", path, name, err)
	}
	val := make([]byte, size)
	n, err := unix.Lgetxattr(path, name, val)
	if err != nil {
		return nil, fmt.Errorf("%s: xattr %s: %w", path, name, err)
	}
	return val[:n], nil
}

// sortedUnion is the keys of a and b, sorted.
func sortedUnion(a, b map[string]string) []string {
	var keys []string
	for k := range a {
		keys = append(keys, k)
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}
