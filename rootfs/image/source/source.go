// Package source reads the images an import takes: an OCI image layout
// directory; an archive file, plain or gzip-compressed, that is either a
// `docker save` tarball in its legacy form (manifest.json) or a tar of an
// OCI layout (index.json: an OCI archive, and what Docker 25 and later
// save); or such an archive on a stream. Resolve picks one image of a
// source, by the name the source gives it and by platform, and reads and
// verifies its manifest and config. Copying the blobs is the caller's.
package source

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

var (
	// ErrNotImage: the source is neither an OCI layout nor an image
	// archive.
	ErrNotImage = errors.New("not an image source")
	// ErrNotFound: no image of that name in the source, or a blob the
	// image needs is missing from it.
	ErrNotFound = errors.New("not found in the source")
	// ErrAmbiguous: the source holds several images and none was picked.
	ErrAmbiguous = errors.New("source holds several images")
	// ErrNoPlatform: the image has no variant for this host's platform.
	ErrNoPlatform = errors.New("no image for this platform")
	// ErrUnsupported: a media type, digest algorithm or document this
	// package does not take.
	ErrUnsupported = errors.New("unsupported")
	// ErrDigestMismatch: content whose digest or size is not the one its
	// descriptor gives.
	ErrDigestMismatch = errors.New("content does not match its digest")
)

// A Source is where images are read from. Open it for a Reader.
type Source interface {
	// Open opens the source. scratch is an empty directory the Reader
	// may spool into (a stream, a compressed archive); it is the
	// caller's to remove after Close.
	Open(ctx context.Context, scratch string) (Reader, error)
	// String names the source for messages.
	String() string
}

// A Reader is an open source.
type Reader interface {
	// Index lists the images the source holds at its top level: image
	// manifests or indexes.
	Index() []Entry
	// Blob opens the blob d names. What it reads is not verified.
	Blob(ctx context.Context, d v1.Descriptor) (io.ReadCloser, error)
	Close() error
}

// Entry is one image of a source.
type Entry struct {
	Descriptor v1.Descriptor
	// Names are the references the source gives the image, normalised
	// (see Normalize).
	Names []string
}

// Annotations that name an image in an OCI index.
const (
	// AnnotationImageName holds a full reference (containerd, Docker).
	AnnotationImageName = "io.containerd.image.name"
	// AnnotationRefName holds a tag, or sometimes a full reference.
	AnnotationRefName = "org.opencontainers.image.ref.name"
)

// Normalize returns the full form of an image reference with a tag, as
// go-containerregistry's name package gives it: "busybox" is
// "index.docker.io/library/busybox:latest". Digest references are
// refused: a name is a tag.
func Normalize(ref string) (string, error) {
	if strings.Contains(ref, "@") {
		return "", fmt.Errorf("image name %q: a name is a tag, not a digest", ref)
	}
	t, err := name.NewTag(ref)
	if err != nil {
		return "", fmt.Errorf("image name %q: %w", ref, err)
	}
	return t.Name(), nil
}

// Parse returns the source an argument names, as a command line gives
// it: "-" is stdin (an archive), a directory an OCI layout, anything else
// an archive file.
func Parse(arg string, stdin io.Reader) (Source, error) {
	if arg == "-" {
		return Stream(stdin), nil
	}
	fi, err := os.Stat(arg)
	if err != nil {
		return nil, fmt.Errorf("image source: %w", err)
	}
	if fi.IsDir() {
		return Dir(arg), nil
	}
	return File(arg), nil
}

// entryNames returns the names OCI annotations give an image: the full
// reference of io.containerd.image.name, and the ref.name one when it is a
// full reference itself (a repository and a tag: a bare tag such as
// "latest" names no image on its own).
func entryNames(d v1.Descriptor) []string {
	var names []string
	if n, err := Normalize(d.Annotations[AnnotationImageName]); err == nil && d.Annotations[AnnotationImageName] != "" {
		names = append(names, n)
	}
	if ref := d.Annotations[AnnotationRefName]; strings.ContainsAny(ref, ":/") {
		if n, err := Normalize(ref); err == nil && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// maxDocument bounds a manifest, index or config read into memory.
const maxDocument = 8 << 20

// readDocument reads the blob d names from r, at most maxDocument
// bytes, and checks its size and digest.
func readDocument(ctx context.Context, r Reader, d v1.Descriptor) ([]byte, error) {
	if d.Size > maxDocument {
		return nil, fmt.Errorf("%s %s: %d bytes, over the %d a document may have: %w", d.MediaType, d.Digest, d.Size, maxDocument, ErrUnsupported)
	}
	if d.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("%s: digest %q: only sha256 is supported: %w", d.MediaType, d.Digest, ErrUnsupported)
	}
	rc, err := r.Blob(ctx, d)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	data, err := io.ReadAll(io.LimitReader(rc, d.Size+1))
	if err != nil {
		return nil, fmt.Errorf("read %s %s: %w", d.MediaType, d.Digest, err)
	}
	if err := Check(data, d); err != nil {
		return nil, err
	}
	return data, nil
}

// Check tells whether data is the content d describes: its size and its
// sha256 digest.
func Check(data []byte, d v1.Descriptor) error {
	if int64(len(data)) != d.Size {
		return fmt.Errorf("%w: %s is %d bytes, its descriptor says %d", ErrDigestMismatch, d.Digest, len(data), d.Size)
	}
	got, _, err := v1.SHA256(bytes.NewReader(data))
	if err != nil {
		return err
	}
	if got != d.Digest {
		return fmt.Errorf("%w: content of %s has digest %s", ErrDigestMismatch, d.Digest, got)
	}
	return nil
}
