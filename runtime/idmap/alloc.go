package idmap

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/store"
)

// Allocator hands out blocks and remembers whose each is, in a file of
// the state dir, so that every corral process on that state dir (the
// daemon, `corral run`) and every later one sees the same assignment.
type Allocator struct {
	path   string
	blocks []uint32
}

// assignments is the file's content: each sandbox name's block start.
type assignments struct {
	Blocks map[string]uint32 `json:"blocks"`
}

// Open is the allocator of the state dir's file path over corral's ranges
// in the subuid and subgid files.
func Open(path, subuidPath, subgidPath string) (*Allocator, error) {
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
	return &Allocator{path: path, blocks: blocks}, nil
}

// Get is name's block: the one it has, or the lowest free one, recorded
// before it is returned. A recorded block no longer inside corral's range
// (the range changed) is given up for a new one.
func (a *Allocator) Get(name string) (uint32, error) {
	var got uint32
	err := a.update(func(as *assignments) error {
		if b, ok := as.Blocks[name]; ok {
			if _, in := slices.BinarySearch(a.blocks, b); in {
				got = b
				return nil
			}
		}
		used := map[uint32]bool{}
		for n, b := range as.Blocks {
			if n != name {
				used[b] = true
			}
		}
		for _, b := range a.blocks {
			if !used[b] {
				as.Blocks[name], got = b, b
				return nil
			}
		}
		return fmt.Errorf("%w (%d blocks, one per service): widen corral's lines in /etc/subuid and /etc/subgid", ErrExhausted, len(a.blocks))
	})
	return got, err
}

// Release frees name's block, if it has one.
func (a *Allocator) Release(name string) error {
	return a.update(func(as *assignments) error {
		delete(as.Blocks, name)
		return nil
	})
}

// Assigned is every recorded assignment.
func (a *Allocator) Assigned() (map[string]uint32, error) {
	var out map[string]uint32
	err := a.update(func(as *assignments) error {
		out = as.Blocks
		return nil
	})
	return out, err
}

// update reads the file, applies f and writes it back if f succeeded,
// under an exclusive lock on the file's lock file.
func (a *Allocator) update(f func(*assignments) error) error {
	lock, err := os.OpenFile(a.path+".lock", os.O_CREATE|os.O_RDWR|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return fmt.Errorf("ID blocks: %w", err)
	}
	defer lock.Close()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("ID blocks: lock: %w", err)
	}
	as := assignments{}
	if err := store.ReadJSON(a.path, &as); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ID blocks: %w", err)
	}
	if as.Blocks == nil {
		as.Blocks = map[string]uint32{}
	}
	before := maps.Clone(as.Blocks)
	if err := f(&as); err != nil {
		return err
	}
	if maps.Equal(before, as.Blocks) {
		return nil
	}
	// Not fsync'd: the blocks guard live sandboxes, and none outlives a
	// host's crash; a crash of corral leaves the file whole (rename).
	if err := store.ReplaceJSON(a.path, as); err != nil {
		return fmt.Errorf("ID blocks: %w", err)
	}
	return nil
}
