package idmap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/store"
)

// Allocator hands out blocks and remembers whose each is, in a directory
// of the state dir, so that every corral process on that state dir (the
// daemon, `corral run`) and every later one sees the same assignment.
//
// Each assignment is a pair of symlinks, whose targets are the data:
// n.NAME -> BLOCK and b.BLOCK -> NAME. A lookup is a readlink, a claim two
// symlinks and a release two unlinks, under a lock on the directory: no
// file is rewritten (each `corral run` takes a block and gives it back,
// so this is on its start path). b.BLOCK is the claim: a crash between
// the two links leaves an n.NAME that its next Get completes, or that a
// later Get of NAME replaces if another name took the block meanwhile.
type Allocator struct {
	dir    string
	blocks Set
}

// Open is the allocator of the state dir's directory dir over corral's
// ranges in the subuid and subgid files.
func Open(dir, subuidPath, subgidPath string) (*Allocator, error) {
	read := func(p string) ([]Entry, error) {
		data, err := os.ReadFile(p)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
		return Parse(p, data)
	}
	u, err := read(subuidPath)
	if err != nil {
		return nil, err
	}
	g, err := read(subgidPath)
	if err != nil {
		return nil, err
	}
	blocks, err := Blocks(u, g)
	if err != nil {
		return nil, err
	}
	return &Allocator{dir: dir, blocks: blocks}, nil
}

// Get is name's block: the one it has, or the lowest free one, recorded
// before it is returned. A recorded block no longer inside corral's range
// (the range changed) is given up for a new one.
func (a *Allocator) Get(name string) (uint32, error) {
	d, err := a.lock()
	if err != nil {
		return 0, err
	}
	defer d.Close()
	fd := int(d.Fd())
	if b, ok := readBlock(fd, name); ok && a.blocks.Has(b) {
		owner, err := readlink(fd, claimLink(b))
		switch {
		case err == nil && owner == name:
			return b, nil
		case errors.Is(err, unix.ENOENT):
			// Recorded, not claimed: the claim was cut short.
			if err := unix.Symlinkat(name, fd, claimLink(b)); err == nil {
				return b, nil
			}
		}
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0, fmt.Errorf("ID blocks: %w", err)
	}
	used := map[uint32]bool{}
	for _, n := range names {
		if s, ok := strings.CutPrefix(n, "b."); ok {
			if b, err := strconv.ParseUint(s, 10, 32); err == nil {
				used[uint32(b)] = true
			}
		}
	}
	// The lowest free block: at most len(used) blocks are passed over.
	for _, sp := range a.blocks {
		for b64 := sp.First; b64 < sp.End; b64 += BlockSize {
			b := uint32(b64)
			if used[b] {
				continue
			}
			if err := unix.Unlinkat(fd, nameLink(name), 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return 0, fmt.Errorf("ID blocks: %s: %w", nameLink(name), err)
			}
			if err := unix.Symlinkat(strconv.FormatUint(uint64(b), 10), fd, nameLink(name)); err != nil {
				return 0, fmt.Errorf("ID blocks: %s: %w", nameLink(name), err)
			}
			if err := unix.Symlinkat(name, fd, claimLink(b)); err != nil {
				return 0, fmt.Errorf("ID blocks: %s: %w", claimLink(b), err)
			}
			return b, nil
		}
	}
	return 0, fmt.Errorf("%w (%d blocks, one per service): widen corral's lines in /etc/subuid and /etc/subgid", ErrExhausted, a.blocks.Len())
}

// Block is the block recorded for name, if any (read without the lock:
// a recorded block changes only by name's own Get or Release).
func (a *Allocator) Block(name string) (uint32, bool) {
	d, err := os.OpenFile(a.dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	if err != nil {
		return 0, false
	}
	defer d.Close()
	return readBlock(int(d.Fd()), name)
}

// Release frees name's block, if it has one.
func (a *Allocator) Release(name string) error {
	d, err := a.lock()
	if err != nil {
		return err
	}
	defer d.Close()
	fd := int(d.Fd())
	if b, ok := readBlock(fd, name); ok {
		if owner, err := readlink(fd, claimLink(b)); err == nil && owner == name {
			if err := unix.Unlinkat(fd, claimLink(b), 0); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("ID blocks: %s: %w", claimLink(b), err)
			}
		}
	}
	if err := unix.Unlinkat(fd, nameLink(name), 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("ID blocks: %s: %w", nameLink(name), err)
	}
	return nil
}

func nameLink(name string) string { return "n." + name }
func claimLink(b uint32) string   { return "b." + strconv.FormatUint(uint64(b), 10) }

// readBlock is the block recorded for name, if any.
func readBlock(dirfd int, name string) (uint32, bool) {
	s, err := readlink(dirfd, nameLink(name))
	if err != nil {
		return 0, false
	}
	b, err := strconv.ParseUint(s, 10, 32)
	return uint32(b), err == nil
}

func readlink(dirfd int, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// lock opens the directory, made if missing, and locks it. The first
// lock on a state dir that has the file of earlier corrals (idmap.json)
// takes its assignments over: their sandboxes may still run.
func (a *Allocator) lock() (*os.File, error) {
	open := func() (*os.File, error) {
		return os.OpenFile(a.dir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)
	}
	d, err := open()
	if errors.Is(err, fs.ErrNotExist) {
		if err = os.Mkdir(a.dir, 0o700); err == nil || errors.Is(err, fs.ErrExist) {
			d, err = open()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("ID blocks: %w", err)
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX); err != nil {
		d.Close()
		return nil, fmt.Errorf("ID blocks: lock %s: %w", a.dir, err)
	}
	if err := a.takeOver(int(d.Fd())); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

// legacyPath is where corral kept the assignments before: one JSON file.
func (a *Allocator) legacyPath() string { return a.dir + ".json" }

// takeOver moves the assignments of the legacy file into the directory
// and removes the file (and its lock file).
func (a *Allocator) takeOver(dirfd int) error {
	var old struct {
		Blocks map[string]uint32 `json:"blocks"`
	}
	err := store.ReadJSON(a.legacyPath(), &old)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("ID blocks: %w", err)
	}
	for name, b := range old.Blocks {
		if err := unix.Symlinkat(strconv.FormatUint(uint64(b), 10), dirfd, nameLink(name)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("ID blocks: take over %s: %w", a.legacyPath(), err)
		}
		if err := unix.Symlinkat(name, dirfd, claimLink(b)); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("ID blocks: take over %s: %w", a.legacyPath(), err)
		}
	}
	if err := os.Remove(a.legacyPath()); err != nil {
		return fmt.Errorf("ID blocks: %w", err)
	}
	_ = os.Remove(a.legacyPath() + ".lock")
	return nil
}
