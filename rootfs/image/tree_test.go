package image_test

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"iter"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// tree describes every path under root, one line each: type and mode,
// owner, content or link target, the overlay marks (whiteout device,
// opaque xattr), and which paths share an inode.
func tree(t *testing.T, root string) map[string]string {
	t.Helper()
	out, err := walkTree(root)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func walkTree(root string) (map[string]string, error) {
	out := map[string]string{}
	inodes := map[uint64]string{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		if rel == "." {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		var desc string
		switch {
		case fi.Mode()&os.ModeCharDevice != 0 && st.Rdev == 0:
			desc = "whiteout"
		case fi.IsDir():
			desc = fmt.Sprintf("dir %o", st.Mode&0o7777)
			buf := make([]byte, 8)
			if n, err := unix.Lgetxattr(path, "trusted.overlay.opaque", buf); err == nil && string(buf[:n]) == "y" {
				desc += " opaque"
			}
		case fi.Mode()&os.ModeSymlink != 0:
			target, _ := os.Readlink(path)
			desc = "-> " + target
		case fi.Mode().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			desc = fmt.Sprintf("file %o %q", st.Mode&0o7777, b)
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					desc += " =" + first
				} else {
					inodes[st.Ino] = rel
				}
			}
		default:
			desc = fi.Mode().String()
		}
		if st.Uid != 0 || st.Gid != 0 {
			desc += fmt.Sprintf(" %d:%d", st.Uid, st.Gid)
		}
		out[rel] = desc
		return nil
	})
	return out, err
}

// tarEntries yields the names of the entries of the tar r, cleaned.
func tarEntries(t *testing.T, r io.ReadCloser) iter.Seq[string] {
	return func(yield func(string) bool) {
		defer r.Close()
		tr := tar.NewReader(r)
		for {
			hdr, err := tr.Next()
			if errors.Is(err, io.EOF) {
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !yield(strings.TrimPrefix(filepath.Clean("/"+hdr.Name), "/")) {
				return
			}
		}
	}
}

// diffTrees says how got differs from want, line by line.
func diffTrees(got, want map[string]string) string {
	var lines []string
	for p, w := range want {
		if g, ok := got[p]; !ok {
			lines = append(lines, fmt.Sprintf("missing %s: %s", p, w))
		} else if g != w {
			lines = append(lines, fmt.Sprintf("%s: got %s, want %s", p, g, w))
		}
	}
	for p, g := range got {
		if _, ok := want[p]; !ok {
			lines = append(lines, fmt.Sprintf("extra %s: %s", p, g))
		}
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// overlayTree mounts an overlay of the layer directories (bottom first),
// read-only, in a mount namespace of its own on a thread of its own (the
// host's mounts never see it), and returns the tree of the merged root:
// what a sandbox on those layers would see.
func overlayTree(t *testing.T, layers []string) map[string]string {
	t.Helper()
	type result struct {
		tree map[string]string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// The thread stays locked: it ends with the goroutine, mount
		// namespace and all.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			done <- result{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			done <- result{err: fmt.Errorf("make / private: %w", err)}
			return
		}
		merged, err := os.MkdirTemp("", "overlay-")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer os.Remove(merged)
		lower := slices.Clone(layers)
		slices.Reverse(lower)
		if err := unix.Mount("overlay", merged, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lower, ":")); err != nil {
			done <- result{err: fmt.Errorf("mount overlay: %w", err)}
			return
		}
		defer unix.Unmount(merged, unix.MNT_DETACH)
		tree, err := walkTree(merged)
		done <- result{tree, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.tree
}
