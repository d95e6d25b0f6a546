package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
)

// Dir is an OCI image layout directory (index.json, blobs/sha256/...).
func Dir(path string) Source { return dirSource(path) }

type dirSource string

func (s dirSource) String() string { return "OCI layout " + string(s) }

func (s dirSource) Open(ctx context.Context, _ string) (Reader, error) {
	p, err := layout.FromPath(string(s))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: no index.json: %w", s, ErrNotImage)
		}
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	idx, err := ii.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("%s: index.json: %w", s, err)
	}
	r := &dirReader{p: p}
	for _, d := range idx.Manifests {
		r.entries = append(r.entries, Entry{Descriptor: d, Names: entryNames(d)})
	}
	return r, nil
}

type dirReader struct {
	p       layout.Path
	entries []Entry
}

func (r *dirReader) Index() []Entry { return r.entries }

func (r *dirReader) Blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	if d.Digest.Algorithm != "sha256" {
		return nil, fmt.Errorf("blob %q: only sha256 is supported: %w", d.Digest, ErrUnsupported)
	}
	rc, err := r.p.Blob(d.Digest)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return rc, nil
}

func (r *dirReader) Close() error { return nil }
