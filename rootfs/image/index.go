package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/corral-dev/corral/rootfs/image/source"
)

// indexVersion is the format of index.json.
const indexVersion = 1

// index is index.json: the images, each with its names. A name belongs to
// one image at most.
type index struct {
	Version int      `json:"version"`
	Images  []*Image `json:"images"`
}

func (s *Store) indexPath() string { return filepath.Join(s.dir, "index.json") }

// readIndex reads index.json. It is replaced whole, by rename, so a
// reader needs no lock to see either the old index or the new one.
func (s *Store) readIndex() (*index, error) {
	data, err := os.ReadFile(s.indexPath())
	if errors.Is(err, fs.ErrNotExist) {
		return &index{Version: indexVersion}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read image index: %w", err)
	}
	var ix index
	if err := json.Unmarshal(data, &ix); err != nil {
		return nil, fmt.Errorf("read image index %s: corrupt: %w", s.indexPath(), err)
	}
	if ix.Version != indexVersion {
		return nil, fmt.Errorf("read image index %s: format version %d, this corral reads %d", s.indexPath(), ix.Version, indexVersion)
	}
	return &ix, nil
}

// update runs fn on the index under the store's lock, and writes the
// index back if fn changed it. Leases and prunes take the same lock.
func (s *Store) update(ctx context.Context, fn func(ix *index) (changed bool, err error)) error {
	l, err := lock(ctx, filepath.Join(s.dir, "index.lock"))
	if err != nil {
		return err
	}
	defer l.unlock()
	ix, err := s.readIndex()
	if err != nil {
		return err
	}
	changed, err := fn(ix)
	if err != nil || !changed {
		return err
	}
	data, err := json.MarshalIndent(ix, "", "  ")
	if err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	if err := writeFile(s.indexPath(), append(data, '\n'), true); err != nil {
		return fmt.Errorf("write image index: %w", err)
	}
	return nil
}

// find returns the record ref names: a digest prefix "sha256:...", a
// "name@digest", or a name.
func (ix *index) find(ref string) (*Image, error) {
	if strings.HasPrefix(ref, "sha256:") {
		return ix.byDigestPrefix(ref)
	}
	if _, digest, ok := strings.Cut(ref, "@"); ok {
		if !strings.HasPrefix(digest, "sha256:") || len(digest) != len("sha256:")+64 {
			return nil, fmt.Errorf("%w: %q: the digest is not a whole sha256 one", ErrInvalid, ref)
		}
		return ix.byDigestPrefix(digest)
	}
	name, err := source.Normalize(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	for _, img := range ix.Images {
		if slices.Contains(img.Names, name) {
			return img, nil
		}
	}
	return nil, fmt.Errorf("%w: %s", ErrNotFound, name)
}

func (ix *index) byDigestPrefix(prefix string) (*Image, error) {
	hex := strings.TrimPrefix(prefix, "sha256:")
	if hex == "" || strings.Trim(hex, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("%w: %q is not a sha256 digest or a prefix of one", ErrInvalid, prefix)
	}
	var found *Image
	for _, img := range ix.Images {
		if strings.HasPrefix(img.Digest.Hex, hex) {
			if found != nil {
				return nil, fmt.Errorf("%w: %s is a prefix of %s and %s", ErrAmbiguous, prefix, found.Digest, img.Digest)
			}
			found = img
		}
	}
	if found == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, prefix)
	}
	return found, nil
}

// put records img (merged with a record of the same digest), moves its
// names to it, and drops the images left with no name by that. It returns
// the record.
func (ix *index) put(img *Image) *Image {
	var rec *Image
	for _, other := range ix.Images {
		if other.Digest == img.Digest {
			rec = other
		}
	}
	if rec == nil {
		rec = img
		ix.Images = append(ix.Images, rec)
	} else {
		names := rec.Names
		*rec = *img
		for _, n := range names {
			if !slices.Contains(rec.Names, n) {
				rec.Names = append(rec.Names, n)
			}
		}
	}
	ix.Images = slices.DeleteFunc(ix.Images, func(other *Image) bool {
		if other == rec {
			return false
		}
		had := len(other.Names)
		other.Names = slices.DeleteFunc(other.Names, func(n string) bool { return slices.Contains(img.Names, n) })
		return had > 0 && len(other.Names) == 0
	})
	return rec
}

// writeFile replaces path with data through a temporary file in the same
// directory and a rename, so that a crash leaves the old file or the new
// one. Durable: the file and the rename are synced to disk too.
func writeFile(path string, data []byte, durable bool) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPattern())
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if durable {
		if err := f.Sync(); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return err
	}
	if durable {
		return syncDir(dir)
	}
	return nil
}

// syncDir makes the renames in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
