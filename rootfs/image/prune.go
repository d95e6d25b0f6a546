package image

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/corral-dev/corral/rootfs/image/source"
)

// Remove takes ref out of the index. A name is taken off its image; the
// image goes once it has no name left. A digest removes the image with
// all its names. An image that would go while leased is refused with
// ErrInUse. Content stays until Prune.
func (s *Store) Remove(ctx context.Context, ref string) error {
	err := s.update(ctx, func(ix *index) (bool, error) {
		rec, err := ix.find(ref)
		if err != nil {
			return false, err
		}
		byName := !strings.HasPrefix(ref, "sha256:") && !strings.Contains(ref, "@")
		if byName && len(rec.Names) > 1 {
			name, _ := source.Normalize(ref)
			rec.Names = slices.DeleteFunc(rec.Names, func(n string) bool { return n == name })
			return true, nil
		}
		leases, err := s.liveLeases(false)
		if err != nil {
			return false, err
		}
		if leased(leases, rec.Digest) {
			return false, fmt.Errorf("%w: %s is leased (a sandbox runs on it, or it is being imported)", ErrInUse, rec.Name())
		}
		ix.Images = slices.DeleteFunc(ix.Images, func(img *Image) bool { return img == rec })
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("remove image %s: %w", ref, err)
	}
	return nil
}

// Prune deletes the blobs and layer directories that no image in the
// index and no live lease references, and the leases of processes that
// are gone. It returns how many bytes of disk it freed.
func (s *Store) Prune(ctx context.Context) (int64, error) {
	var freed int64
	err := s.update(ctx, func(ix *index) (bool, error) {
		leases, err := s.liveLeases(true)
		if err != nil {
			return false, err
		}
		blobs, layers := map[v1.Hash]bool{}, map[v1.Hash]bool{}
		for _, img := range ix.Images {
			blobs[img.Digest], blobs[img.ConfigDigest] = true, true
			for _, l := range img.Layers {
				blobs[l.Digest], layers[l.DiffID] = true, true
			}
		}
		for _, l := range leases {
			for _, h := range l.Blobs {
				blobs[h] = true
			}
			for _, h := range l.Layers {
				layers[h] = true
			}
		}
		var errs []error
		n, err := s.pruneBlobs(blobs)
		freed += n
		errs = append(errs, err)
		n, err = s.pruneLayers(layers)
		freed += n
		errs = append(errs, err)
		return false, errors.Join(errs...)
	})
	if err != nil {
		return freed, fmt.Errorf("prune images: %w", err)
	}
	return freed, nil
}

func (s *Store) pruneBlobs(keep map[v1.Hash]bool) (int64, error) {
	dir := filepath.Join(s.dir, "blobs", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var (
		freed int64
		errs  []error
	)
	for _, e := range entries {
		h, err := v1.NewHash("sha256:" + e.Name())
		if err != nil || keep[h] {
			continue // a temporary file, or in use
		}
		path := filepath.Join(dir, e.Name())
		size := diskUsage(path)
		if err := os.Remove(path); err != nil {
			errs = append(errs, err)
			continue
		}
		freed += size
	}
	return freed, errors.Join(errs...)
}

func (s *Store) pruneLayers(keep map[v1.Hash]bool) (int64, error) {
	dir := filepath.Join(s.dir, "layers", "sha256")
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	var (
		freed int64
		errs  []error
	)
	for _, e := range entries {
		h, err := v1.NewHash("sha256:" + e.Name())
		if err != nil || keep[h] || !e.IsDir() {
			continue // a note, a temporary directory, or in use
		}
		// Under the layer's lock: no one unpacks it meanwhile (no one
		// should: an import leases what it unpacks).
		l, err := tryLock(layerLock(s.dir, h))
		if errors.Is(err, errLocked) {
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		size := diskUsage(filepath.Join(dir, e.Name())) + diskUsage(notePath(s.dir, h))
		if err := s.deleteLayerDir(h); err != nil {
			errs = append(errs, fmt.Errorf("delete layer %s: %w", h, err))
			l.unlock()
			continue
		}
		freed += size
		l.removeAndUnlock()
	}
	// Lock files of layers that are not there (an unpacking that failed
	// in a process that died before it removed its lock file).
	locks := filepath.Join(s.dir, "locks")
	entries, err = os.ReadDir(locks)
	if err != nil {
		return freed, errors.Join(append(errs, err)...)
	}
	for _, e := range entries {
		h, err := v1.NewHash("sha256:" + strings.TrimPrefix(e.Name(), "layer-"))
		if err != nil || keep[h] {
			continue
		}
		l, err := tryLock(layerLock(s.dir, h))
		if err != nil {
			continue // held: being unpacked
		}
		if _, err := os.Lstat(layerDir(s.dir, h)); errors.Is(err, fs.ErrNotExist) {
			l.removeAndUnlock()
		} else {
			l.unlock()
		}
	}
	return freed, errors.Join(errs...)
}

// diskUsage is the disk space the tree at path takes, each inode counted
// once (hard links), as du(1) counts it.
func diskUsage(path string) int64 {
	seen := map[uint64]bool{}
	var total int64
	filepath.WalkDir(path, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			total += fi.Size()
			return nil
		}
		if seen[st.Ino] {
			return nil
		}
		seen[st.Ino] = true
		total += st.Blocks * 512
		return nil
	})
	return total
}
