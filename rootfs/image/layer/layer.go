// Package layer unpacks one image layer (a tar stream, compressed or not)
// into an empty directory of its own, in the form overlayfs stacks: a
// whiteout is a 0/0 character device, an opaque directory carries the
// trusted.overlay.opaque xattr. Entries are written by umoci's extractor,
// which resolves every name (and every hard link's target) inside the
// directory, so no entry can write outside it whatever its "..", absolute
// or symlinked path. Around it, this package verifies the layer's diff ID,
// bounds its size, skips device nodes, and names the entry that failed.
//
// Layers are unpacked one to a directory, never onto the layers below:
// an entry is placed at its own path in the layer, even where a lower
// layer has a symlink in that path (Docker would follow it there).
package layer

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	umoci "github.com/opencontainers/umoci/oci/layer"
)

// DefaultMaxSize bounds a layer's unpacked size when Options.MaxSize is 0.
const DefaultMaxSize int64 = 8 << 30

var (
	// ErrTooLarge: the layer's uncompressed tar, or the files it holds,
	// exceed the size limit.
	ErrTooLarge = errors.New("layer exceeds the size limit")
	// ErrDiffIDMismatch: the uncompressed tar's digest is not the diff ID
	// the image's config gives it.
	ErrDiffIDMismatch = errors.New("layer does not match its diff ID")
	// ErrCorrupt: the stream is not a (compressed) tar archive, or ends
	// before the archive does.
	ErrCorrupt = errors.New("layer is not a valid tar archive")
)

// Options tune Unpack.
type Options struct {
	// MaxSize bounds the uncompressed tar stream and, separately, the sum
	// of its regular files' sizes (a sparse file counts its full size: it
	// is written out whole). 0 means DefaultMaxSize.
	MaxSize int64
}

// Result is what Unpack did.
type Result struct {
	// Size is the uncompressed tar stream's length in bytes.
	Size int64
	// Entries is the number of tar entries read.
	Entries int
	// Skipped names the entries that were not unpacked, with why: device
	// nodes (a sandbox runs in a user namespace, where they could not be
	// made and would not open), and hard links to them.
	Skipped []string
}

// EntryError is an entry that could not be unpacked.
type EntryError struct {
	// Entry is the entry's name as the tar gives it.
	Entry string
	Err   error
}

func (e *EntryError) Error() string { return fmt.Sprintf("entry %q: %v", e.Entry, e.Err) }

func (e *EntryError) Unwrap() error { return e.Err }

// Unpack writes the layer read from blob into dir, which must exist and
// be empty, and checks that the uncompressed tar's digest is diffID. The
// compression (gzip, zstd or none) is recognised from the stream itself.
// Unpack needs root (it sets owners, and trusted.* xattrs for opaque
// directories). On error dir holds part of the layer: the caller unpacks
// into a temporary directory and publishes it only on success.
func Unpack(ctx context.Context, dir string, blob io.Reader, diffID v1.Hash, opts Options) (*Result, error) {
	if diffID.Algorithm != "sha256" {
		return nil, fmt.Errorf("unpack layer: diff ID %q: only sha256 is supported", diffID)
	}
	limit := opts.MaxSize
	if limit <= 0 {
		limit = DefaultMaxSize
	}
	root, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("unpack layer: %w", err)
	}
	plain, closeFn, err := decompress(blob)
	if err != nil {
		return nil, fmt.Errorf("unpack layer: %w", err)
	}
	defer closeFn()

	digest := sha256.New()
	stream := &meter{ctx: ctx, r: plain, h: digest, limit: limit}
	res := &Result{}
	dirs, err := extract(root, stream, limit, res)
	if err != nil {
		return nil, err
	}
	if err := fixImplicitDirs(root, dirs); err != nil {
		return nil, fmt.Errorf("unpack layer: %w", err)
	}
	// The diff ID covers the whole stream, the padding after the tar's
	// end included.
	if _, err := io.Copy(io.Discard, stream); err != nil {
		return nil, fmt.Errorf("unpack layer: read after the archive's end: %w", err)
	}
	res.Size = stream.n
	got := v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", digest.Sum(nil))}
	if got != diffID {
		return nil, fmt.Errorf("%w: the config says %s, the content is %s", ErrDiffIDMismatch, diffID, got)
	}
	return res, nil
}

// extract unpacks the tar entries from r into root. It returns the
// directories the tar has entries for.
func extract(root string, r io.Reader, limit int64, res *Result) (map[string]bool, error) {
	te := umoci.NewTarExtractor(&umoci.UnpackOptions{OnDiskFormat: umoci.OverlayfsRootfs{}})
	tr := tar.NewReader(r)
	var files int64
	skipped := map[string]bool{}
	dirs := map[string]bool{"/": true}
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return dirs, nil
		}
		if err != nil {
			if errors.Is(err, ErrTooLarge) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
				return nil, fmt.Errorf("after %d entries: %w", res.Entries, err)
			}
			return nil, fmt.Errorf("%w: after %d entries: %v", ErrCorrupt, res.Entries, err)
		}
		res.Entries++
		name := hdr.Name
		clean := path.Clean("/" + name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			dirs[clean] = true
		case tar.TypeXGlobalHeader:
			// A pax global header (git archive writes one) is not a file.
			continue
		case tar.TypeChar, tar.TypeBlock:
			kind := "character"
			if hdr.Typeflag == tar.TypeBlock {
				kind = "block"
			}
			res.Skipped = append(res.Skipped, fmt.Sprintf("%s: %s device %d:%d (device nodes are not made: sandboxes run in a user namespace)",
				strings.TrimPrefix(clean, "/"), kind, hdr.Devmajor, hdr.Devminor))
			skipped[clean] = true
			continue
		case tar.TypeLink:
			if skipped[path.Clean("/"+hdr.Linkname)] {
				res.Skipped = append(res.Skipped, fmt.Sprintf("%s: hard link to the skipped %s",
					strings.TrimPrefix(clean, "/"), strings.TrimPrefix(path.Clean("/"+hdr.Linkname), "/")))
				skipped[clean] = true
				continue
			}
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // TypeRegA: old archives still use it
			files += hdr.Size
			if hdr.Size < 0 || files > limit {
				return nil, &EntryError{Entry: name, Err: fmt.Errorf("%w: the files reach %d bytes, over %d", ErrTooLarge, files, limit)}
			}
		}
		if err := te.UnpackEntry(root, hdr, tr); err != nil {
			// A stream that ends in the middle of a file's content is
			// corrupt, not the entry.
			if errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, ErrCorrupt) {
				err = fmt.Errorf("%w: %v", ErrCorrupt, err)
			}
			return nil, &EntryError{Entry: name, Err: err}
		}
	}
}

// fixImplicitDirs makes the directories the layer holds without an entry
// of their own (the parents of its entries, made as the extraction went,
// with the process's umask) 0755, as Docker makes them, whatever the
// umask. Nothing else writes in root meanwhile: the walk meets real
// directories only, never a symlink to follow.
func fixImplicitDirs(root string, explicit map[string]bool) error {
	return filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if explicit[path.Clean("/"+filepath.ToSlash(rel))] {
			return nil
		}
		return os.Chmod(p, 0o755)
	})
}

// meter reads the uncompressed stream: it hashes and counts it, stops at
// the size limit and when ctx is done.
type meter struct {
	ctx   context.Context
	r     io.Reader
	h     hash.Hash
	n     int64
	limit int64
}

func (m *meter) Read(p []byte) (int, error) {
	if err := m.ctx.Err(); err != nil {
		return 0, err
	}
	// Read at most one byte past the limit: enough to tell a stream of
	// exactly limit bytes from a longer one.
	if rest := m.limit + 1 - m.n; int64(len(p)) > rest {
		p = p[:rest]
	}
	n, err := m.r.Read(p)
	m.h.Write(p[:n])
	m.n += int64(n)
	if m.n > m.limit {
		return n, fmt.Errorf("%w: the uncompressed tar is over %d bytes", ErrTooLarge, m.limit)
	}
	return n, err
}

// Magic numbers of the compressions a layer may use.
var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// decompress recognises blob's compression and returns the uncompressed
// stream.
func decompress(blob io.Reader) (io.Reader, func(), error) {
	br := bufio.NewReaderSize(blob, 64<<10)
	head, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, nil, err
	}
	switch {
	case len(head) >= 2 && head[0] == gzipMagic[0] && head[1] == gzipMagic[1]:
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: gzip: %v", ErrCorrupt, err)
		}
		return &corruptOnErr{r: zr, what: "gzip"}, func() { zr.Close() }, nil
	case len(head) == 4 && string(head) == string(zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(1<<30))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		return &corruptOnErr{r: zr, what: "zstd"}, zr.Close, nil
	}
	return br, func() {}, nil
}

// corruptOnErr marks a decompressor's errors (other than the end of the
// stream) as ErrCorrupt.
type corruptOnErr struct {
	r    io.Reader
	what string
}

func (c *corruptOnErr) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: %s: %v", ErrCorrupt, c.what, err)
	}
	return n, err
}
