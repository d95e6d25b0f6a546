// Package image keeps OCI images on disk for sandbox roots: a store of
// content-addressed blobs, one unpacked directory per layer (shared by
// every image that has it, in overlayfs form), and an index of images by
// name. Several corral processes may use one store at once.
//
// The store's directory:
//
//	index.json, index.lock    images by manifest digest, with their names;
//	                          replaced whole under the flock of index.lock
//	blobs/sha256/<hex>        manifests, configs, compressed layers,
//	                          verified while written, published by rename
//	layers/sha256/<hex>/      a layer unpacked, by diff ID; <hex>.json beside
//	                          it says what its unpacking skipped
//	locks/layer-<hex>         flock held while that layer is unpacked or
//	                          deleted
//	leases/*.json             images in use: by a sandbox, or being imported
//	tmp/                      imports' scratch (a stream spooled)
//
// What a crash can leave (temporary blobs, half-unpacked layers, scratch,
// leases of dead processes) is named so that Open can tell it from the
// work of a live process, and sweeps it.
//
// The protocol for a user of an image (a sandbox): Lease the image, build
// the root from Lease.Image.LayerDirs(), release the lease when the
// sandbox is gone (or let it lapse with the process it names). Remove
// refuses a leased image; Prune frees only what no image and no live
// lease references.
package image

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/corral-dev/corral/rootfs/image/source"
)

var (
	// ErrNotFound: no image by that name or digest.
	ErrNotFound = errors.New("image not found")
	// ErrAmbiguous: a digest prefix that more than one image has.
	ErrAmbiguous = errors.New("ambiguous image reference")
	// ErrInUse: the image is leased (a sandbox runs on it, or an import
	// is writing it).
	ErrInUse = errors.New("image in use")
	// ErrInvalid: a malformed name or reference.
	ErrInvalid = errors.New("invalid image reference")
	// ErrDigestMismatch: content whose digest or size is not the one its
	// descriptor gives (the same error as the source package's).
	ErrDigestMismatch = source.ErrDigestMismatch
)

// Store is an image store in a directory. Its methods are safe for
// concurrent use, also by several processes on one directory.
type Store struct {
	dir string
}

// Image is an image in the store.
type Image struct {
	// Names are the references the image is known by, normalised
	// ("index.docker.io/library/busybox:latest"). An image imported with
	// no name has none, and is reached by its digest.
	Names []string `json:"names,omitempty"`
	// Digest is the manifest's digest: the image's identity.
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	Size      int64           `json:"size"`
	// ConfigDigest is the digest of the image's config.
	ConfigDigest v1.Hash     `json:"config"`
	Platform     v1.Platform `json:"platform"`
	// Layers are the image's layers, bottom first.
	Layers   []Layer   `json:"layers"`
	Imported time.Time `json:"imported"`

	store string
}

// Layer is one layer of an image.
type Layer struct {
	// Digest, MediaType and Size describe the layer's blob (as the
	// manifest gives it, often compressed).
	Digest    v1.Hash         `json:"digest"`
	MediaType types.MediaType `json:"mediaType"`
	Size      int64           `json:"size"`
	// DiffID is the digest of the uncompressed tar: the name of the
	// layer's directory.
	DiffID v1.Hash `json:"diffID"`
	// Skipped lists the entries the unpacking left out, with why
	// (device nodes).
	Skipped []string `json:"skipped,omitempty"`
}

// LayerDirs returns the directories of the image's layers, bottom first
// (an overlay's lowerdir lists them top first).
func (img *Image) LayerDirs() []string {
	dirs := make([]string, len(img.Layers))
	for i, l := range img.Layers {
		dirs[i] = layerDir(img.store, l.DiffID)
	}
	return dirs
}

// Config reads the image's config (Entrypoint, Cmd, Env, WorkingDir,
// User, ...) from the store, checking its digest.
func (img *Image) Config() (*v1.ConfigFile, error) {
	data, err := os.ReadFile(blobPath(img.store, img.ConfigDigest))
	if err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	if err := source.Check(data, v1.Descriptor{Digest: img.ConfigDigest, Size: int64(len(data))}); err != nil {
		return nil, fmt.Errorf("image config: %w", err)
	}
	return v1.ParseConfigFile(bytes.NewReader(data))
}

// Name is the image's first name, or its digest if it has none: for
// messages.
func (img *Image) Name() string {
	if len(img.Names) > 0 {
		return img.Names[0]
	}
	return img.Digest.String()
}

// Open opens the store in dir, making it if needed, and sweeps what
// crashed writers left.
func Open(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	s := &Store{dir: abs}
	// Layer directories stay searchable by others: a root built on them
	// is reached by a sandbox's own (mapped) root user.
	for _, d := range []struct {
		path string
		mode os.FileMode
	}{
		{abs, 0o711},
		{filepath.Join(abs, "blobs", "sha256"), 0o700},
		{filepath.Join(abs, "layers"), 0o711},
		{filepath.Join(abs, "layers", "sha256"), 0o711},
		{filepath.Join(abs, "locks"), 0o700},
		{filepath.Join(abs, "leases"), 0o700},
		{filepath.Join(abs, "tmp"), 0o700},
	} {
		if err := os.MkdirAll(d.path, d.mode); err != nil {
			return nil, fmt.Errorf("open image store: %w", err)
		}
	}
	if err := s.sweep(); err != nil {
		return nil, fmt.Errorf("open image store %s: %w", abs, err)
	}
	return s, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Get returns the image ref names: a name ("busybox", "localhost:5000/
// app:1"), a manifest digest or a prefix of one ("sha256:3f2a"), or
// "name@sha256:..." (by that digest; the name part is not checked).
func (s *Store) Get(ref string) (*Image, error) {
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	img, err := ix.find(ref)
	if err != nil {
		return nil, err
	}
	return s.image(img), nil
}

// List returns the store's images, by name.
func (s *Store) List() ([]*Image, error) {
	ix, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	imgs := make([]*Image, 0, len(ix.Images))
	for _, img := range ix.Images {
		imgs = append(imgs, s.image(img))
	}
	slices.SortFunc(imgs, func(a, b *Image) int { return strings.Compare(a.Name(), b.Name()) })
	return imgs, nil
}

// image is a copy of an index record that the caller owns.
func (s *Store) image(rec *Image) *Image {
	img := *rec
	img.Names = slices.Clone(rec.Names)
	img.Layers = slices.Clone(rec.Layers)
	img.store = s.dir
	return &img
}

func blobPath(dir string, h v1.Hash) string {
	return filepath.Join(dir, "blobs", h.Algorithm, h.Hex)
}

func layerDir(dir string, diffID v1.Hash) string {
	return filepath.Join(dir, "layers", diffID.Algorithm, diffID.Hex)
}

func layerLock(dir string, diffID v1.Hash) string {
	return filepath.Join(dir, "locks", "layer-"+diffID.Hex)
}

// Temporary names. A temporary file or scratch directory carries its
// writer's PID (".tmp-PID-RANDOM"): it is swept once that process is gone.
// A layer being unpacked or deleted carries its diff ID (".tmp-HEX-RANDOM",
// ".del-HEX-RANDOM") and is swept when the layer's lock is free.
const (
	tempPrefix   = ".tmp-"
	deletePrefix = ".del-"
)

func tempPattern() string { return tempPrefix + strconv.Itoa(os.Getpid()) + "-*" }

// tempOwner parses the PID out of a temporary name.
func tempOwner(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, tempPrefix)
	if !ok {
		return 0, false
	}
	pidStr, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(pidStr)
	return pid, err == nil && pid > 0
}

// processExists reports whether a process (even a zombie) has the PID. A
// reused PID only keeps a temporary file a while longer.
func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// sweep removes what writers killed mid-way left.
func (s *Store) sweep() error {
	var errs []error
	// Temporary blobs, index files and scratch directories of dead
	// processes.
	for _, dir := range []string{s.dir, filepath.Join(s.dir, "blobs", "sha256"), filepath.Join(s.dir, "leases"), filepath.Join(s.dir, "tmp")} {
		entries, err := os.ReadDir(dir)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		for _, e := range entries {
			if pid, ok := tempOwner(e.Name()); ok && !processExists(pid) {
				if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	// Layers half unpacked or half deleted, and the notes of layers that
	// were never published.
	layers := filepath.Join(s.dir, "layers", "sha256")
	entries, err := os.ReadDir(layers)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, e := range entries {
		n := e.Name()
		var hex string
		switch {
		case strings.HasPrefix(n, tempPrefix):
			hex, _, _ = strings.Cut(strings.TrimPrefix(n, tempPrefix), "-")
			if pid, ok := tempOwner(n); ok && len(hex) != 64 {
				// A layer's note written aside (.tmp-PID-*), not a layer
				// unpacked aside (.tmp-DIFFID-*).
				if !processExists(pid) {
					if err := os.Remove(filepath.Join(layers, n)); err != nil {
						errs = append(errs, err)
					}
				}
				continue
			}
		case strings.HasPrefix(n, deletePrefix):
			hex, _, _ = strings.Cut(strings.TrimPrefix(n, deletePrefix), "-")
		case strings.HasSuffix(n, ".json"):
			hex = strings.TrimSuffix(n, ".json")
			if _, err := os.Lstat(filepath.Join(layers, hex)); err == nil {
				continue
			}
		default:
			continue
		}
		diffID, err := v1.NewHash("sha256:" + hex)
		if err != nil {
			continue
		}
		l, err := tryLock(layerLock(s.dir, diffID))
		if errors.Is(err, errLocked) {
			continue // being unpacked or deleted now
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if strings.HasSuffix(n, ".json") {
			// Look again under the lock: the layer may have been
			// published since.
			if _, err := os.Lstat(filepath.Join(layers, hex)); !errors.Is(err, fs.ErrNotExist) {
				l.unlock()
				continue
			}
		}
		if err := os.RemoveAll(filepath.Join(layers, n)); err != nil {
			errs = append(errs, err)
		}
		if _, err := os.Lstat(filepath.Join(layers, hex)); errors.Is(err, fs.ErrNotExist) {
			l.removeAndUnlock()
		} else {
			l.unlock()
		}
	}
	// Leases of processes that are gone.
	if _, err := s.liveLeases(true); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
