// Package imagetest builds images for the tests of the image packages:
// tar layers entry by entry (hostile ones too), and image content laid out
// as an OCI layout directory, an OCI archive or a `docker save` archive,
// by hand, so that a test can also lay out what no tool would write (a
// blob that does not match its digest, an unknown media type).
package imagetest

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"github.com/klauspost/compress/zstd"
)

// Entry is one tar entry.
type Entry struct {
	Name     string
	Type     byte // tar.TypeReg if 0
	Body     string
	Mode     int64 // 0644 for files, 0755 for directories if 0
	Link     string
	UID, GID int
	Xattrs   map[string]string
	Major    int64
	Minor    int64
}

// File is a regular file entry.
func File(name, body string) Entry { return Entry{Name: name, Body: body} }

// Dir is a directory entry.
func Dir(name string) Entry { return Entry{Name: name, Type: tar.TypeDir} }

// Symlink is a symbolic link entry.
func Symlink(name, target string) Entry {
	return Entry{Name: name, Type: tar.TypeSymlink, Link: target, Mode: 0o777}
}

// Hardlink is a hard link entry.
func Hardlink(name, target string) Entry { return Entry{Name: name, Type: tar.TypeLink, Link: target} }

// Whiteout deletes name (in the layers below) the OCI way.
func Whiteout(name string) Entry {
	return File(filepath.Join(filepath.Dir(name), ".wh."+filepath.Base(name)), "")
}

// Opaque hides what the layers below have in dir.
func Opaque(dir string) Entry { return File(filepath.Join(dir, ".wh..wh..opq"), "") }

// Device is a character (or, with block, a block) device node entry.
func Device(name string, major, minor int64, block bool) Entry {
	e := Entry{Name: name, Type: tar.TypeChar, Major: major, Minor: minor, Mode: 0o666}
	if block {
		e.Type = tar.TypeBlock
	}
	return e
}

// Tar writes the entries as an uncompressed tar.
func Tar(t testing.TB, entries ...Entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := &tar.Header{
			Name: e.Name, Typeflag: e.Type, Mode: e.Mode, Linkname: e.Link,
			Uid: e.UID, Gid: e.GID, Devmajor: e.Major, Devminor: e.Minor,
			ModTime: time.Unix(1700000000, 0), Format: tar.FormatPAX,
		}
		if hdr.Typeflag == 0 {
			hdr.Typeflag = tar.TypeReg
		}
		if hdr.Mode == 0 {
			hdr.Mode = 0o644
			if hdr.Typeflag == tar.TypeDir {
				hdr.Mode = 0o755
			}
		}
		if hdr.Typeflag == tar.TypeReg {
			hdr.Size = int64(len(e.Body))
		}
		for k, v := range e.Xattrs {
			if hdr.PAXRecords == nil {
				hdr.PAXRecords = map[string]string{}
			}
			hdr.PAXRecords["SCHILY.xattr."+k] = v
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("tar %s: %v", e.Name, err)
		}
		if hdr.Typeflag == tar.TypeReg {
			if _, err := tw.Write([]byte(e.Body)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Gzip compresses b.
func Gzip(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Zstd compresses b.
func Zstd(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// Digest is b's sha256 digest.
func Digest(b []byte) v1.Hash {
	sum := sha256.Sum256(b)
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(sum[:])}
}

// Layer is a layer's blob and what a manifest and config say of it.
type Layer struct {
	Blob      []byte
	MediaType types.MediaType
	DiffID    v1.Hash
}

// GzipLayer is a gzip-compressed layer of the entries.
func GzipLayer(t testing.TB, entries ...Entry) Layer {
	t.Helper()
	raw := Tar(t, entries...)
	return Layer{Blob: Gzip(t, raw), MediaType: types.OCILayer, DiffID: Digest(raw)}
}

// Host is this host's platform, as images give it.
func Host() v1.Platform { return v1.Platform{OS: "linux", Architecture: runtime.GOARCH} }

// Foreign is a platform that is not this host's.
func Foreign() v1.Platform {
	if runtime.GOARCH == "s390x" {
		return v1.Platform{OS: "linux", Architecture: "ppc64le"}
	}
	return v1.Platform{OS: "linux", Architecture: "s390x"}
}

// Content is a set of blobs, and the descriptors of the images and
// indexes built of them.
type Content struct {
	Blobs map[v1.Hash][]byte
}

// NewContent is an empty Content.
func NewContent() *Content { return &Content{Blobs: map[v1.Hash][]byte{}} }

// Add adds a blob.
func (c *Content) Add(mt types.MediaType, data []byte) v1.Descriptor {
	d := v1.Descriptor{MediaType: mt, Size: int64(len(data)), Digest: Digest(data)}
	c.Blobs[d.Digest] = data
	return d
}

// Spec describes an image to build.
type Spec struct {
	Layers []Layer
	// Platform defaults to Host.
	Platform *v1.Platform
	// Config defaults to one with an Entrypoint and Env.
	Config *v1.Config
	// Media types default to OCI's.
	ManifestType, ConfigType types.MediaType
}

// Image adds an image's layers, config and manifest, and returns the
// manifest's descriptor with its platform.
func (c *Content) Image(t testing.TB, s Spec) v1.Descriptor {
	t.Helper()
	p := Host()
	if s.Platform != nil {
		p = *s.Platform
	}
	cfg := v1.ConfigFile{
		Architecture: p.Architecture, OS: p.OS, Variant: p.Variant,
		RootFS: v1.RootFS{Type: "layers"},
		Config: v1.Config{Entrypoint: []string{"/bin/app"}, Cmd: []string{"--serve"}, Env: []string{"PATH=/bin"}, WorkingDir: "/srv", User: "1000:1000"},
	}
	if s.Config != nil {
		cfg.Config = *s.Config
	}
	m := v1.Manifest{SchemaVersion: 2, MediaType: s.ManifestType}
	if m.MediaType == "" {
		m.MediaType = types.OCIManifestSchema1
	}
	for _, l := range s.Layers {
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.DiffID)
		m.Layers = append(m.Layers, c.Add(l.MediaType, l.Blob))
	}
	ct := s.ConfigType
	if ct == "" {
		ct = types.OCIConfigJSON
	}
	m.Config = c.Add(ct, mustJSON(t, cfg))
	d := c.Add(m.MediaType, mustJSON(t, m))
	d.Platform = &p
	return d
}

// Index adds an index of the manifests.
func (c *Content) Index(t testing.TB, manifests ...v1.Descriptor) v1.Descriptor {
	t.Helper()
	idx := v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: manifests}
	return c.Add(types.OCIImageIndex, mustJSON(t, idx))
}

// Named is d with the annotations that name it name (an OCI index's).
func Named(d v1.Descriptor, name string) v1.Descriptor {
	d.Annotations = map[string]string{"io.containerd.image.name": name, "org.opencontainers.image.ref.name": "latest"}
	return d
}

// WriteLayout writes an OCI layout of the content in dir, its index.json
// listing top.
func (c *Content) WriteLayout(t testing.TB, dir string, top ...v1.Descriptor) {
	t.Helper()
	for name, data := range c.layoutFiles(t, top) {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (c *Content) layoutFiles(t testing.TB, top []v1.Descriptor) map[string][]byte {
	if top == nil {
		top = []v1.Descriptor{}
	}
	files := map[string][]byte{
		"oci-layout": []byte(`{"imageLayoutVersion":"1.0.0"}`),
		"index.json": mustJSON(t, v1.IndexManifest{SchemaVersion: 2, MediaType: types.OCIImageIndex, Manifests: top}),
	}
	for h, data := range c.Blobs {
		files["blobs/sha256/"+h.Hex] = data
	}
	return files
}

// LegacyImage is an image of a legacy `docker save` archive.
type LegacyImage struct {
	Manifest v1.Descriptor // an image manifest of the Content
	RepoTags []string
}

// OCIArchive is a tar of the OCI layout WriteLayout writes. With legacy,
// it also has the manifest.json Docker 25 writes beside it, naming the
// images' blobs.
func (c *Content) OCIArchive(t testing.TB, top []v1.Descriptor, legacy []LegacyImage) []byte {
	t.Helper()
	files := c.layoutFiles(t, top)
	if legacy != nil {
		files["manifest.json"] = c.legacyManifest(t, legacy, func(h v1.Hash) string { return "blobs/sha256/" + h.Hex })
	}
	return tarFiles(t, files)
}

// DockerArchive is a legacy `docker save` archive of the images: a
// manifest.json naming a config file and a layer file per layer, which
// holds the blob as the content has it (Docker writes uncompressed ones).
func (c *Content) DockerArchive(t testing.TB, imgs []LegacyImage) []byte {
	t.Helper()
	files := map[string][]byte{}
	name := func(h v1.Hash) string {
		var m v1.Manifest
		for _, img := range imgs {
			_ = json.Unmarshal(c.Blobs[img.Manifest.Digest], &m)
			if m.Config.Digest == h {
				return h.Hex + ".json"
			}
		}
		return h.Hex + "/layer.tar"
	}
	files["manifest.json"] = c.legacyManifest(t, imgs, name)
	for _, img := range imgs {
		var m v1.Manifest
		if err := json.Unmarshal(c.Blobs[img.Manifest.Digest], &m); err != nil {
			t.Fatal(err)
		}
		files[name(m.Config.Digest)] = c.Blobs[m.Config.Digest]
		for _, l := range m.Layers {
			files[name(l.Digest)] = c.Blobs[l.Digest]
		}
	}
	return tarFiles(t, files)
}

func (c *Content) legacyManifest(t testing.TB, imgs []LegacyImage, name func(v1.Hash) string) []byte {
	type entry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var out []entry
	for _, img := range imgs {
		var m v1.Manifest
		if err := json.Unmarshal(c.Blobs[img.Manifest.Digest], &m); err != nil {
			t.Fatal(err)
		}
		e := entry{Config: name(m.Config.Digest), RepoTags: img.RepoTags}
		for _, l := range m.Layers {
			e.Layers = append(e.Layers, name(l.Digest))
		}
		out = append(out, e)
	}
	return mustJSON(t, out)
}

// tarFiles is a tar of the files, with their directories, in name order.
func tarFiles(t testing.TB, files map[string][]byte) []byte {
	var names []string
	for n := range files {
		names = append(names, n)
	}
	slices.Sort(names)
	var entries []Entry
	dirs := map[string]bool{}
	for _, n := range names {
		var parents []Entry
		for d := filepath.Dir(n); d != "." && !dirs[d]; d = filepath.Dir(d) {
			dirs[d] = true
			parents = append(parents, Dir(d+"/"))
		}
		slices.Reverse(parents)
		entries = append(append(entries, parents...), File(n, string(files[n])))
	}
	return Tar(t, entries...)
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
