package image

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/corral-dev/corral/internal/procstat"
)

// Lease marks an image in use: Remove refuses the image and Prune keeps
// its content while the lease is held. A lease is a file under leases/
// naming its holder, a process: it lapses when that process ends, so a
// crashed holder leaves none that counts.
type Lease struct {
	// Image is the leased image, as it was when the lease was taken.
	Image *Image

	store *Store
	path  string
	once  sync.Once
	err   error
}

// Release ends the lease. It is safe to call more than once.
func (l *Lease) Release() error {
	l.once.Do(func() {
		if err := os.Remove(l.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			l.err = fmt.Errorf("release lease: %w", err)
		}
	})
	return l.err
}

// Transfer hands the lease to the process pid (a sandbox's init, which
// outlives the daemon that started it) and ends this one. No lock is
// taken: this lease holds the image throughout, so Remove and Prune see
// it in use all along. The image's leases whose holders have ended are
// removed on the way, so that a service restarted over and over leaves
// one per live sandbox, not one per start.
func (l *Lease) Transfer(pid int) (*Lease, error) {
	next, err := l.store.writeLease(l.Image, pid)
	if err != nil {
		return nil, fmt.Errorf("lease %s to %d: %w", l.Image.Name(), pid, err)
	}
	l.store.sweepLeases(l.Image.Digest.Hex + "-")
	return next, l.Release()
}

// sweepLeases removes the lease files named with prefix whose holders
// have ended (a file of a live holder, or one unreadable, stays).
func (s *Store) sweepLeases(prefix string) {
	dir := filepath.Join(s.dir, "leases")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) || !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		var rec leaseRecord
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil || json.Unmarshal(data, &rec) != nil || rec.PID <= 0 {
			continue
		}
		if !holderLives(rec) {
			_ = os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// leaseRecord is a lease file.
type leaseRecord struct {
	Image v1.Hash `json:"image"`
	PID   int     `json:"pid"`
	// Start is the holder's start time (/proc/PID/stat), which tells it
	// from a later process with its PID.
	Start uint64 `json:"start"`
	// Blobs and Layers are the content the lease keeps: the image need
	// not be in the index (it is being imported, or was removed while
	// a sandbox ran on it).
	Blobs  []v1.Hash `json:"blobs"`
	Layers []v1.Hash `json:"layers"`
}

// Lease marks the image ref names (as Get takes it) in use until Release
// is called or the process pid ends, whichever comes first. pid 0 is this
// process; a sandbox's init holds its lease so that the lease outlives
// the daemon that took it, and ends with the sandbox.
func (s *Store) Lease(ctx context.Context, ref string, pid int) (*Lease, error) {
	var (
		l   *Lease
		err error
	)
	uerr := s.update(ctx, func(ix *index) (bool, error) {
		var rec *Image
		if rec, err = ix.find(ref); err != nil {
			return false, err
		}
		l, err = s.writeLease(s.image(rec), pid)
		return false, err
	})
	if uerr != nil {
		return nil, fmt.Errorf("lease %s: %w", ref, uerr)
	}
	return l, nil
}

// lease leases img, which need not be in the index yet (an import).
func (s *Store) lease(ctx context.Context, img *Image, pid int) (*Lease, error) {
	var l *Lease
	err := s.update(ctx, func(*index) (bool, error) {
		var err error
		l, err = s.writeLease(img, pid)
		return false, err
	})
	return l, err
}

// writeLease writes a lease file. The caller holds the index lock, which
// orders leases against Prune and Remove.
func (s *Store) writeLease(img *Image, pid int) (*Lease, error) {
	if pid == 0 {
		pid = os.Getpid()
	}
	st, err := procstat.Read(pid)
	if err != nil {
		return nil, fmt.Errorf("holder %d: %w", pid, err)
	}
	if st.Ended() {
		return nil, fmt.Errorf("holder %d has ended", pid)
	}
	rec := leaseRecord{Image: img.Digest, PID: pid, Start: st.StartTime, Blobs: []v1.Hash{img.Digest, img.ConfigDigest}}
	for _, l := range img.Layers {
		rec.Blobs = append(rec.Blobs, l.Digest)
		rec.Layers = append(rec.Layers, l.DiffID)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return nil, err
	}
	path := filepath.Join(s.dir, "leases", fmt.Sprintf("%s-%d-%x.json", img.Digest.Hex, pid, rnd))
	// Written aside and renamed: a reader never sees half a lease. A
	// lease matters to the processes of this boot only: no fsync.
	if err := writeFile(path, data, false); err != nil {
		return nil, err
	}
	return &Lease{Image: img, store: s, path: path}, nil
}

// liveLeases returns the leases whose holders live; with sweep, it
// deletes the others. The caller holds the index lock, or sweeps only.
func (s *Store) liveLeases(sweep bool) ([]leaseRecord, error) {
	dir := filepath.Join(s.dir, "leases")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read leases: %w", err)
	}
	var (
		live []leaseRecord
		errs []error
	)
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // released meanwhile
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var rec leaseRecord
		if err := json.Unmarshal(data, &rec); err != nil || rec.PID <= 0 {
			// A lease is written aside and renamed into sight, so a bad
			// one is not being written: it counts for nothing.
			if sweep {
				os.Remove(path)
			}
			continue
		}
		if holderLives(rec) {
			live = append(live, rec)
		} else if sweep {
			os.Remove(path)
		}
	}
	return live, errors.Join(errs...)
}

// holderLives reports whether the lease's holder still runs: its PID is
// taken, by a process that started when the holder did and has not
// ended.
func holderLives(rec leaseRecord) bool {
	st, err := procstat.Read(rec.PID)
	if err != nil {
		// Gone, or unreadable: a PID we cannot read is taken as alive,
		// to err on the side of keeping.
		return !errors.Is(err, fs.ErrNotExist) && processExists(rec.PID)
	}
	return st.StartTime == rec.Start && !st.Ended()
}

// leased reports whether a live lease holds the image digest.
func leased(leases []leaseRecord, digest v1.Hash) bool {
	for _, l := range leases {
		if l.Image == digest {
			return true
		}
	}
	return false
}
