package image

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/image/layer"
	"github.com/corral-dev/corral/rootfs/image/source"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// Name names the image in the store ("app:1"), instead of the names
	// the source gives it. A name another image had moves to this one.
	Name string
	// Pick selects, in a source that holds several images, the one the
	// source names so.
	Pick string
	// Platform selects the variant of a multi-platform image; nil means
	// this host's platform.
	Platform *v1.Platform
	// MaxLayerSize bounds each layer's unpacked size; 0 means
	// layer.DefaultMaxSize.
	MaxLayerSize int64
}

// LayerError is a layer that could not be stored or unpacked.
type LayerError struct {
	// Index is the layer's place, from 1 at the bottom, of Count.
	Index, Count int
	Digest       v1.Hash
	DiffID       v1.Hash
	// Err says why; a *layer.EntryError names the entry.
	Err error
}

func (e *LayerError) Error() string {
	return fmt.Sprintf("layer %d of %d (%s, diff ID %s): %v", e.Index, e.Count, e.Digest, e.DiffID, e.Err)
}

func (e *LayerError) Unwrap() error { return e.Err }

// Import reads an image from src and adds it to the store: its blobs, its
// layers unpacked (those the store lacks), and its record in the index
// under opts.Name or the names src gives it. The image is leased while it
// is imported, so a concurrent Prune leaves its content alone. On error
// nothing half-written is visible: blobs and layers that were stored
// whole stay, for a retry to reuse, and Prune frees them otherwise.
func (s *Store) Import(ctx context.Context, src source.Source, opts ImportOptions) (*Image, error) {
	var name string
	if opts.Name != "" {
		n, err := source.Normalize(opts.Name)
		if err != nil {
			return nil, fmt.Errorf("import: %w: %v", ErrInvalid, err)
		}
		name = n
	}
	scratch, err := os.MkdirTemp(filepath.Join(s.dir, "tmp"), tempPattern())
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer os.RemoveAll(scratch)
	r, err := src.Open(ctx, scratch)
	if err != nil {
		return nil, fmt.Errorf("import from %s: %w", src, err)
	}
	defer r.Close()
	res, err := source.Resolve(ctx, r, source.Want{Name: opts.Pick, Platform: opts.Platform})
	if err != nil {
		return nil, fmt.Errorf("import from %s: %w", src, err)
	}

	img := &Image{
		Names:        res.Names,
		Digest:       res.Manifest.Digest,
		MediaType:    res.Manifest.MediaType,
		Size:         res.Manifest.Size,
		ConfigDigest: res.ConfigDescriptor.Digest,
		Imported:     time.Now().UTC().Truncate(time.Second),
	}
	if name != "" {
		img.Names = []string{name}
	}
	if res.Manifest.Platform != nil {
		img.Platform = *res.Manifest.Platform
	}
	for _, l := range res.Layers {
		img.Layers = append(img.Layers, Layer{Digest: l.Descriptor.Digest, MediaType: l.Descriptor.MediaType, Size: l.Descriptor.Size, DiffID: l.DiffID})
	}

	// The lease covers the content from before the first blob is written:
	// a Prune either runs before it, or sees it.
	lease, err := s.lease(ctx, img, 0)
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", img.Name(), err)
	}
	defer lease.Release()

	if err := s.writeBlob(ctx, res.Manifest, bytes.NewReader(res.RawManifest)); err != nil {
		return nil, fmt.Errorf("import %s: manifest: %w", img.Name(), err)
	}
	if err := s.writeBlob(ctx, res.ConfigDescriptor, bytes.NewReader(res.RawConfig)); err != nil {
		return nil, fmt.Errorf("import %s: config: %w", img.Name(), err)
	}
	for i, l := range res.Layers {
		skipped, err := s.storeLayer(ctx, r, l, opts.MaxLayerSize)
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", img.Name(), &LayerError{
				Index: i + 1, Count: len(res.Layers), Digest: l.Descriptor.Digest, DiffID: l.DiffID, Err: err,
			})
		}
		img.Layers[i].Skipped = skipped
	}

	var rec *Image
	err = s.update(ctx, func(ix *index) (bool, error) {
		rec = s.image(ix.put(img))
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("import %s: %w", img.Name(), err)
	}
	return rec, nil
}

// testHook, if set (by tests), is called at points of an import: "unpack
// DIFFID" as a layer's unpacking starts, "unpacked DIFFID" before the
// unpacked layer is published, "blob DIGEST" before a written blob is.
var testHook func(point string)

func hook(point string) {
	if testHook != nil {
		testHook(point)
	}
}

// layerNote is what layers/sha256/<hex>.json keeps of a layer's
// unpacking, for the images that share the layer later.
type layerNote struct {
	DiffID  v1.Hash  `json:"diffID"`
	Size    int64    `json:"size"`
	Entries int      `json:"entries"`
	Skipped []string `json:"skipped,omitempty"`
}

func notePath(dir string, diffID v1.Hash) string { return layerDir(dir, diffID) + ".json" }

// storeLayer stores the layer's blob from r and unpacks it, each unless
// the store has it. It returns what the unpacking skipped.
func (s *Store) storeLayer(ctx context.Context, r source.Reader, l source.Layer, maxSize int64) ([]string, error) {
	if note, err := s.readNote(l.DiffID); err == nil && s.hasBlob(l.Descriptor) {
		return note.Skipped, nil
	}
	if !s.hasBlob(l.Descriptor) {
		rc, err := r.Blob(ctx, l.Descriptor)
		if err != nil {
			return nil, err
		}
		err = s.writeBlob(ctx, l.Descriptor, rc)
		rc.Close()
		if err != nil {
			return nil, err
		}
	}
	// One unpacking of a layer at a time, across processes: whoever
	// comes second finds it done.
	lk, err := lock(ctx, layerLock(s.dir, l.DiffID))
	if err != nil {
		return nil, err
	}
	if note, err := s.readNote(l.DiffID); err == nil {
		lk.unlock()
		return note.Skipped, nil
	}
	note, err := s.unpack(ctx, l, maxSize)
	if err != nil {
		// No layer: no lock file to keep (a waiter makes a new one).
		lk.removeAndUnlock()
		return nil, err
	}
	lk.unlock()
	return note.Skipped, nil
}

// readNote returns the note of an unpacked layer; an error if the layer
// is not unpacked.
func (s *Store) readNote(diffID v1.Hash) (*layerNote, error) {
	fi, err := os.Lstat(layerDir(s.dir, diffID))
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("layer %s: not a directory", diffID)
	}
	data, err := os.ReadFile(notePath(s.dir, diffID))
	if err != nil {
		return nil, err
	}
	var note layerNote
	if err := json.Unmarshal(data, &note); err != nil {
		return nil, fmt.Errorf("layer %s: note: %w", diffID, err)
	}
	return &note, nil
}

// unpack unpacks the stored blob of l into a temporary directory beside
// the layer's and publishes it by rename. The caller holds the layer's
// lock.
func (s *Store) unpack(ctx context.Context, l source.Layer, maxSize int64) (*layerNote, error) {
	final := layerDir(s.dir, l.DiffID)
	parent := filepath.Dir(final)
	// A directory without its note is left from an earlier, broken
	// store: unpack again.
	if _, err := os.Lstat(final); err == nil {
		if err := s.deleteLayerDir(l.DiffID); err != nil {
			return nil, err
		}
	}
	tmp, err := os.MkdirTemp(parent, tempPrefix+l.DiffID.Hex+"-*")
	if err != nil {
		return nil, err
	}
	published := false
	defer func() {
		if !published {
			os.RemoveAll(tmp)
		}
	}()
	// The layer's root is 0755 unless the layer says otherwise (an entry
	// for "./").
	if err := os.Chmod(tmp, 0o755); err != nil {
		return nil, err
	}
	hook("unpack " + l.DiffID.String())
	blob, err := os.Open(blobPath(s.dir, l.Descriptor.Digest))
	if err != nil {
		return nil, err
	}
	res, err := layer.Unpack(ctx, tmp, blob, l.DiffID, layer.Options{MaxSize: maxSize})
	blob.Close()
	if err != nil {
		return nil, err
	}
	hook("unpacked " + l.DiffID.String())
	// Make the layer's files durable before the rename publishes them.
	if err := syncFS(tmp); err != nil {
		return nil, err
	}
	note := &layerNote{DiffID: l.DiffID, Size: res.Size, Entries: res.Entries, Skipped: res.Skipped}
	data, err := json.MarshalIndent(note, "", "  ")
	if err != nil {
		return nil, err
	}
	// The note first: a layer directory never goes without one. A note
	// without its directory (a crash between the two) is swept by Open.
	if err := writeFile(notePath(s.dir, l.DiffID), append(data, '\n'), true); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	published = true
	if err := syncDir(parent); err != nil {
		return nil, err
	}
	return note, nil
}

// deleteLayerDir unpublishes a layer directory by renaming it to a
// deletion name, then deletes it and its note. A crash half-way leaves a
// ".del-" directory that Open sweeps. The caller holds the layer's lock.
func (s *Store) deleteLayerDir(diffID v1.Hash) error {
	final := layerDir(s.dir, diffID)
	var rnd [8]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return err
	}
	del := filepath.Join(filepath.Dir(final), fmt.Sprintf("%s%s-%x", deletePrefix, diffID.Hex, rnd))
	if err := unix.Renameat2(unix.AT_FDCWD, final, unix.AT_FDCWD, del, unix.RENAME_NOREPLACE); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("rename %s: %w", final, err)
	}
	if err := os.Remove(notePath(s.dir, diffID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return os.RemoveAll(del)
}

// syncFS flushes the filesystem that holds dir: one call for every file
// of a layer just unpacked.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("syncfs %s: %w", dir, err)
	}
	return nil
}
