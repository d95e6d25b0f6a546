package source

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// File is an image archive file: a `docker save` tarball (either form) or
// an OCI archive, plain or gzip-compressed. A compressed one is spooled
// uncompressed into the scratch directory.
func File(path string) Source { return fileSource(path) }

type fileSource string

func (s fileSource) String() string { return "archive " + string(s) }

func (s fileSource) Open(ctx context.Context, scratch string) (Reader, error) {
	f, err := os.Open(string(s))
	if err != nil {
		return nil, fmt.Errorf("open image archive: %w", err)
	}
	gz, err := isGzip(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", s, err)
	}
	if gz {
		defer f.Close()
		return spool(ctx, f, scratch, s.String())
	}
	r, err := openArchive(f, s.String())
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

// Stream is an image archive read from r (stdin): spooled into the
// scratch directory, uncompressed, to be read at random.
func Stream(r io.Reader) Source { return streamSource{r} }

type streamSource struct{ r io.Reader }

func (streamSource) String() string { return "archive on stdin" }

func (s streamSource) Open(ctx context.Context, scratch string) (Reader, error) {
	return spool(ctx, s.r, scratch, s.String())
}

// spool copies the archive r (gzip-compressed or not) uncompressed into a
// file in scratch and opens that.
func spool(ctx context.Context, r io.Reader, scratch, what string) (Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var in io.Reader = br
	if head, _ := br.Peek(2); len(head) == 2 && head[0] == 0x1f && head[1] == 0x8b {
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("%s: gzip: %w", what, err)
		}
		defer zr.Close()
		in = zr
	}
	f, err := os.CreateTemp(scratch, "archive-*.tar")
	if err != nil {
		return nil, fmt.Errorf("spool %s: %w", what, err)
	}
	// The file is unlinked at once: it lives as long as it is open.
	os.Remove(f.Name())
	if _, err := io.Copy(f, ctxReader{ctx, in}); err != nil {
		f.Close()
		return nil, fmt.Errorf("spool %s: %w", what, err)
	}
	r2, err := openArchive(f, what)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r2, nil
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

func isGzip(f *os.File) (bool, error) {
	var head [2]byte
	n, err := f.ReadAt(head[:], 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, err
	}
	return n == 2 && head[0] == 0x1f && head[1] == 0x8b, nil
}

// member is a file in an archive.
type member struct {
	offset, size int64
	// link is the target of a symlink or hard link member, cleaned.
	link string
}

// maxMembers bounds the files of an archive indexed in memory.
const maxMembers = 1 << 20

// archiveReader reads blobs out of an uncompressed archive file at the
// offsets one pass over it found.
type archiveReader struct {
	f       *os.File
	what    string
	members map[string]member
	entries []Entry
	// blobs maps the digests of a legacy archive's blobs to their members,
	// synth holds the manifests made for its images.
	blobs map[v1.Hash]string
	synth map[v1.Hash][]byte
}

// openArchive indexes the members of the archive f and reads its index:
// index.json if it lists images, else the legacy manifest.json.
func openArchive(f *os.File, what string) (*archiveReader, error) {
	a := &archiveReader{f: f, what: what, members: map[string]member{}}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: not a tar archive: %v: %w", what, err, ErrNotImage)
		}
		if len(a.members) == maxMembers {
			return nil, fmt.Errorf("%s: over %d files: %w", what, maxMembers, ErrUnsupported)
		}
		name := cleanMember(hdr.Name)
		switch hdr.Typeflag {
		case tar.TypeReg, tar.TypeRegA: //nolint:staticcheck // TypeRegA: old archives still use it
			// tar.Reader reads no further than a member's header: the
			// file's offset is where its content starts.
			off, err := f.Seek(0, io.SeekCurrent)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", what, err)
			}
			a.members[name] = member{offset: off, size: hdr.Size}
		case tar.TypeSymlink:
			a.members[name] = member{link: cleanMember(path.Join(path.Dir(name), hdr.Linkname))}
		case tar.TypeLink:
			a.members[name] = member{link: cleanMember(hdr.Linkname)}
		}
	}
	if data, err := a.read("index.json", maxDocument); err == nil {
		var idx v1.IndexManifest
		if err := json.Unmarshal(data, &idx); err != nil {
			return nil, fmt.Errorf("%s: index.json: %w", what, err)
		}
		for _, d := range idx.Manifests {
			a.entries = append(a.entries, Entry{Descriptor: d, Names: entryNames(d)})
		}
	}
	if len(a.entries) == 0 {
		// No index.json, or one that lists nothing (`docker save
		// image@digest` may write such a one beside a whole
		// manifest.json).
		if err := a.legacy(); err != nil {
			return nil, err
		}
	}
	return a, nil
}

// cleanMember is an archive member's name as the archive's manifests
// name it: relative, without "./".
func cleanMember(name string) string {
	return path.Clean("/" + name)[1:]
}

// open returns a reader of the member name, following links.
func (a *archiveReader) open(name string) (*io.SectionReader, error) {
	name = cleanMember(name)
	for range 16 {
		m, ok := a.members[name]
		if !ok {
			return nil, fmt.Errorf("%s: no file %s: %w", a.what, name, ErrNotFound)
		}
		if m.link == "" {
			return io.NewSectionReader(a.f, m.offset, m.size), nil
		}
		name = m.link
	}
	return nil, fmt.Errorf("%s: %s: too many links", a.what, name)
}

// read reads a whole member of at most limit bytes.
func (a *archiveReader) read(name string, limit int64) ([]byte, error) {
	sr, err := a.open(name)
	if err != nil {
		return nil, err
	}
	if sr.Size() > limit {
		return nil, fmt.Errorf("%s: %s is %d bytes, over %d: %w", a.what, name, sr.Size(), limit, ErrUnsupported)
	}
	return io.ReadAll(sr)
}

// legacy reads the manifest.json of a `docker save` archive, which lists
// each image's config and layer files, and makes an OCI manifest for each
// image: uncompressed layer files (what Docker writes) are described by
// their diff IDs, compressed ones by the digest of their content.
func (a *archiveReader) legacy() error {
	data, err := a.read("manifest.json", maxDocument)
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s: neither index.json nor manifest.json: %w", a.what, ErrNotImage)
	}
	if err != nil {
		return err
	}
	var m tarball.Manifest
	if err := json.Unmarshal(data, &m); err != nil {
		return fmt.Errorf("%s: manifest.json: %w", a.what, err)
	}
	a.blobs = map[v1.Hash]string{}
	a.synth = map[v1.Hash][]byte{}
	for i, desc := range m {
		d, err := a.synthesize(desc)
		if err != nil {
			return fmt.Errorf("%s: manifest.json image %d: %w", a.what, i+1, err)
		}
		e := Entry{Descriptor: d}
		for _, t := range desc.RepoTags {
			if n, err := Normalize(t); err == nil {
				e.Names = append(e.Names, n)
			}
		}
		a.entries = append(a.entries, e)
	}
	return nil
}

func (a *archiveReader) synthesize(desc tarball.Descriptor) (v1.Descriptor, error) {
	rawConfig, err := a.read(desc.Config, maxDocument)
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("config: %w", err)
	}
	configDigest, _, err := v1.SHA256(bytes.NewReader(rawConfig))
	if err != nil {
		return v1.Descriptor{}, err
	}
	cfg, err := v1.ParseConfigFile(bytes.NewReader(rawConfig))
	if err != nil {
		return v1.Descriptor{}, fmt.Errorf("config %s: %w", desc.Config, err)
	}
	if len(cfg.RootFS.DiffIDs) != len(desc.Layers) {
		return v1.Descriptor{}, fmt.Errorf("%d layer files, the config has %d diff IDs", len(desc.Layers), len(cfg.RootFS.DiffIDs))
	}
	a.blobs[configDigest] = desc.Config
	m := v1.Manifest{
		SchemaVersion: 2,
		MediaType:     types.OCIManifestSchema1,
		Config:        v1.Descriptor{MediaType: types.OCIConfigJSON, Size: int64(len(rawConfig)), Digest: configDigest},
	}
	for i, file := range desc.Layers {
		sr, err := a.open(file)
		if err != nil {
			return v1.Descriptor{}, fmt.Errorf("layer %d: %w", i+1, err)
		}
		l := v1.Descriptor{Size: sr.Size()}
		var head [4]byte
		n, _ := sr.ReadAt(head[:], 0)
		switch {
		case n >= 2 && head[0] == 0x1f && head[1] == 0x8b:
			l.MediaType = types.OCILayer
		case n == 4 && bytes.Equal(head[:], []byte{0x28, 0xb5, 0x2f, 0xfd}):
			l.MediaType = types.OCILayerZStd
		default:
			l.MediaType = types.OCIUncompressedLayer
			l.Digest = cfg.RootFS.DiffIDs[i]
		}
		if l.Digest == (v1.Hash{}) {
			if l.Digest, _, err = v1.SHA256(sr); err != nil {
				return v1.Descriptor{}, fmt.Errorf("layer %d: %w", i+1, err)
			}
		}
		a.blobs[l.Digest] = file
		m.Layers = append(m.Layers, l)
	}
	raw, err := json.Marshal(m)
	if err != nil {
		return v1.Descriptor{}, err
	}
	digest, _, err := v1.SHA256(bytes.NewReader(raw))
	if err != nil {
		return v1.Descriptor{}, err
	}
	a.synth[digest] = raw
	return v1.Descriptor{MediaType: m.MediaType, Size: int64(len(raw)), Digest: digest}, nil
}

func (a *archiveReader) Index() []Entry { return a.entries }

func (a *archiveReader) Blob(_ context.Context, d v1.Descriptor) (io.ReadCloser, error) {
	if raw, ok := a.synth[d.Digest]; ok {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}
	name, ok := a.blobs[d.Digest]
	if !ok {
		if d.Digest.Algorithm != "sha256" {
			return nil, fmt.Errorf("blob %q: only sha256 is supported: %w", d.Digest, ErrUnsupported)
		}
		name = filepath.Join("blobs", d.Digest.Algorithm, d.Digest.Hex)
	}
	sr, err := a.open(name)
	if err != nil {
		return nil, fmt.Errorf("blob %s: %w", d.Digest, err)
	}
	return io.NopCloser(sr), nil
}

func (a *archiveReader) Close() error { return a.f.Close() }
