package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// hasBlob reports whether the blob d names is in the store. A blob is
// only ever published whole and verified, so one that is there is good.
func (s *Store) hasBlob(d v1.Descriptor) bool {
	fi, err := os.Lstat(blobPath(s.dir, d.Digest))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == d.Size
}

// writeBlob stores the blob d describes, read from r, unless the store has
// it. The content is checked against d's size and digest as it is
// written, into a temporary file that becomes the blob (rename, then a
// sync of the directory) only if it matches: a crash, a kill or a full
// disk leaves no partial blob under the blob's name.
func (s *Store) writeBlob(ctx context.Context, d v1.Descriptor, r io.Reader) error {
	if d.Digest.Algorithm != "sha256" {
		return fmt.Errorf("blob %s: only sha256 is supported", d.Digest)
	}
	if s.hasBlob(d) {
		return nil
	}
	path := blobPath(s.dir, d.Digest)
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, tempPattern())
	if err != nil {
		return fmt.Errorf("write blob %s: %w", d.Digest, err)
	}
	defer os.Remove(f.Name())
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), ctxReader{ctx, io.LimitReader(r, d.Size+1)})
	if err == nil && n != d.Size {
		err = fmt.Errorf("%w: %s is %s, its descriptor says %d bytes", ErrDigestMismatch, d.Digest, sizeWord(n, d.Size), d.Size)
	}
	if got := hex.EncodeToString(h.Sum(nil)); err == nil && got != d.Digest.Hex {
		err = fmt.Errorf("%w: content of %s has digest sha256:%s", ErrDigestMismatch, d.Digest, got)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		hook("blob " + d.Digest.String())
		err = os.Rename(f.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write blob %s: %w", d.Digest, err)
	}
	return nil
}

func sizeWord(n, want int64) string {
	if n > want {
		return "longer"
	}
	return fmt.Sprintf("%d bytes", n)
}

type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
