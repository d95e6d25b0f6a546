package imports

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/moby/sys/mountinfo"
)

// usage counts the disk that trees take as du does: allocated blocks
// (st_blocks × 512, so a sparse file counts what it holds), each inode
// once however many names it has in the trees added so far, symlinks
// not followed. It does not enter mounts: an overlay mounted below a
// tree shows files that are already counted where they live (the
// image's layers, the sandbox's writable layer).
type usage struct {
	// mounts are the mount points to skip, as the mount table names them.
	mounts map[string]bool
	seen   map[inode]bool
	// Bytes is the total of the trees added.
	Bytes int64
	// Skipped are the mount points met inside them, not entered. The
	// directory each is mounted on is not counted either: it is hidden
	// under the mount (an empty stage dir, one block).
	Skipped map[string]bool
}

type inode struct{ dev, ino uint64 }

func newUsage(mounts map[string]bool) *usage {
	return &usage{mounts: mounts, seen: map[inode]bool{}, Skipped: map[string]bool{}}
}

// mountPoints are the mount points of the bench's mount namespace.
func mountPoints() (map[string]bool, error) {
	ms, err := mountinfo.GetMounts(nil)
	if err != nil {
		return nil, fmt.Errorf("read the mount table: %w", err)
	}
	out := make(map[string]bool, len(ms))
	for _, m := range ms {
		out[m.Mountpoint] = true
	}
	return out, nil
}

// add walks the tree at root and returns the bytes it added: those of
// inodes not counted before. Below root, a mount point (in u.mounts, or on
// another device than root: a mount the table read missed) is skipped.
// A file that goes while the walk runs is left out.
func (u *usage) add(root string) (int64, error) {
	top, err := lstat(root)
	if err != nil {
		return 0, fmt.Errorf("disk used by %s: %w", root, err)
	}
	var added int64
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		st, err := lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if path != root && (u.mounts[path] || st.Dev != top.Dev) {
			u.Skipped[path] = true
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		id := inode{dev: st.Dev, ino: st.Ino}
		if u.seen[id] {
			return nil
		}
		u.seen[id] = true
		added += st.Blocks * 512
		return nil
	})
	if err != nil {
		return added, fmt.Errorf("disk used by %s: %w", root, err)
	}
	u.Bytes += added
	return added, nil
}

// addByEntry adds the tree at root entry by entry, and returns what each
// top-level entry added ("." is root's own directory, and what appeared
// in it meanwhile).
func (u *usage) addByEntry(root string) (map[string]int64, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("disk used by %s: %w", root, err)
	}
	out := make(map[string]int64, len(entries)+1)
	for _, e := range entries {
		n, err := u.add(filepath.Join(root, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out[e.Name()] = n
	}
	if out["."], err = u.add(root); err != nil {
		return nil, err
	}
	return out, nil
}

func lstat(path string) (*syscall.Stat_t, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("%s: no stat_t", path)
	}
	return st, nil
}
