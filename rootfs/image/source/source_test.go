package source_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	. "github.com/corral-dev/corral/rootfs/image/imagetest"
	"github.com/corral-dev/corral/rootfs/image/source"
)

func resolve(t *testing.T, src source.Source, want source.Want) (*source.Image, error) {
	t.Helper()
	r, err := src.Open(context.Background(), t.TempDir())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { r.Close() })
	return source.Resolve(context.Background(), r, want)
}

func writeFile(t *testing.T, data []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "archive.tar")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// twoLayers is an image content of two gzip layers, and its manifest.
func twoLayers(t *testing.T) (*Content, v1.Descriptor) {
	c := NewContent()
	d := c.Image(t, Spec{Layers: []Layer{
		GzipLayer(t, Dir("etc/"), File("etc/os-release", "ID=test")),
		GzipLayer(t, File("app", "binary")),
	}})
	return c, d
}

// TestSourceForms: one image read from each form of source gives the
// same config and diff IDs; the manifest digest is the source's own
// where it has a manifest (OCI layout, OCI archive), and one made from
// the legacy manifest.json otherwise.
func TestSourceForms(t *testing.T) {
	c, d := twoLayers(t)
	named := Named(d, "localhost:5000/app:1")
	layoutDir := t.TempDir()
	c.WriteLayout(t, layoutDir, named)
	legacy := []LegacyImage{{Manifest: d, RepoTags: []string{"localhost:5000/app:1"}}}
	oci := c.OCIArchive(t, []v1.Descriptor{named}, nil)
	docker25 := c.OCIArchive(t, []v1.Descriptor{named}, legacy)
	dockerLegacy := c.DockerArchive(t, legacy)

	for _, tc := range []struct {
		name       string
		src        source.Source
		sameDigest bool
	}{
		{"layout", source.Dir(layoutDir), true},
		{"OCI archive", source.File(writeFile(t, oci)), true},
		{"OCI archive, gzip", source.File(writeFile(t, Gzip(t, oci))), true},
		{"docker 25 archive", source.File(writeFile(t, docker25)), true},
		{"legacy docker archive", source.File(writeFile(t, dockerLegacy)), false},
		{"OCI archive on a stream", source.Stream(bytes.NewReader(oci)), true},
		{"legacy docker archive on a gzip stream", source.Stream(bytes.NewReader(Gzip(t, dockerLegacy))), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			img, err := resolve(t, tc.src, source.Want{})
			if err != nil {
				t.Fatal(err)
			}
			if tc.sameDigest && img.Manifest.Digest != d.Digest {
				t.Errorf("manifest digest %s, source's %s", img.Manifest.Digest, d.Digest)
			}
			if !slices.Equal(img.Names, []string{"localhost:5000/app:1"}) {
				t.Errorf("names %q", img.Names)
			}
			if img.Config.Config.Entrypoint[0] != "/bin/app" || len(img.Layers) != 2 {
				t.Fatalf("config %+v, %d layers", img.Config.Config, len(img.Layers))
			}
			for i, l := range img.Layers {
				want := []v1.Hash{Digest(Tar(t, Dir("etc/"), File("etc/os-release", "ID=test"))), Digest(Tar(t, File("app", "binary")))}[i]
				if l.DiffID != want {
					t.Errorf("layer %d diff ID %s, want %s", i, l.DiffID, want)
				}
			}
		})
	}
}

// TestSourceBlobsReadBack: the blobs a source gives are the ones its
// descriptors describe, in an archive read at the offsets of its index.
func TestSourceBlobsReadBack(t *testing.T) {
	c, d := twoLayers(t)
	for name, data := range map[string][]byte{
		"OCI archive":    c.OCIArchive(t, []v1.Descriptor{d}, nil),
		"legacy archive": c.DockerArchive(t, []LegacyImage{{Manifest: d}}),
	} {
		t.Run(name, func(t *testing.T) {
			r, err := source.File(writeFile(t, data)).Open(context.Background(), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			img, err := source.Resolve(context.Background(), r, source.Want{})
			if err != nil {
				t.Fatal(err)
			}
			for _, l := range img.Layers {
				rc, err := r.Blob(context.Background(), l.Descriptor)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(rc)
				rc.Close()
				if err := source.Check(b, l.Descriptor); err != nil {
					t.Errorf("layer blob: %v", err)
				}
			}
		})
	}
}

// TestSourceGoContainerRegistry: images go-containerregistry writes (an
// OCI layout with a multi-platform index, a docker save tarball with
// gzip layers) are read.
func TestSourceGoContainerRegistry(t *testing.T) {
	img, err := random.Image(512, 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg.OS, cfg.Architecture = "linux", Host().Architecture
	img, err = mutate.ConfigFile(img, cfg)
	if err != nil {
		t.Fatal(err)
	}
	other, err := random.Image(512, 1)
	if err != nil {
		t.Fatal(err)
	}
	foreign := Foreign()
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &foreign}},
		mutate.IndexAddendum{Add: img, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: Host().Architecture}}},
	)
	dir := t.TempDir()
	if _, err := layout.Write(dir, idx); err != nil {
		t.Fatal(err)
	}
	// layout.Write makes index.json list the two manifests: wrap them in
	// an index of their own, as a pushed multi-platform image is.
	p, _ := layout.FromPath(dir)
	if err := p.WriteIndex(mutate.AppendManifests(empty.Index, mutate.IndexAddendum{Add: idx})); err != nil {
		t.Fatal(err)
	}
	wantDigest, _ := img.Digest()
	got, err := resolve(t, source.Dir(dir), source.Want{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Manifest.Digest != wantDigest || len(got.Layers) != 3 {
		t.Errorf("picked %s with %d layers, want %s (the host's)", got.Manifest.Digest, len(got.Layers), wantDigest)
	}

	tag, _ := name.NewTag("busybox:1")
	path := filepath.Join(t.TempDir(), "save.tar")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
	got, err = resolve(t, source.File(path), source.Want{})
	if err != nil {
		t.Fatal(err)
	}
	wantDiffIDs := cfg.RootFS.DiffIDs
	if !slices.Equal(got.Names, []string{"index.docker.io/library/busybox:1"}) || len(got.Layers) != 3 {
		t.Fatalf("names %q, %d layers", got.Names, len(got.Layers))
	}
	layers, _ := img.Layers()
	for i, l := range got.Layers {
		digest, _ := layers[i].Digest()
		if l.DiffID != wantDiffIDs[i] || l.Descriptor.Digest != digest || l.Descriptor.MediaType != types.OCILayer {
			t.Errorf("layer %d: %+v, want diff ID %s, digest %s, gzip", i, l, wantDiffIDs[i], digest)
		}
	}
}

// TestResolvePlatform: of a multi-platform image, the host's variant;
// none for the host is refused naming those there are.
func TestResolvePlatform(t *testing.T) {
	c := NewContent()
	host := c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File("host", ""))}})
	foreign := Foreign()
	other := c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File("other", ""))}, Platform: &foreign})
	arm := v1.Platform{OS: "linux", Architecture: "riscv64"}
	third := c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File("third", ""))}, Platform: &arm})

	for _, tc := range []struct {
		name string
		top  []v1.Descriptor
		want *v1.Descriptor
		err  []string
	}{
		{name: "index", top: []v1.Descriptor{c.Index(t, other, host, third)}, want: &host},
		{name: "manifests at the top", top: []v1.Descriptor{other, host}, want: &host},
		{name: "nested index", top: []v1.Descriptor{c.Index(t, c.Index(t, other, host))}, want: &host},
		{name: "index without the host", top: []v1.Descriptor{c.Index(t, other, third)}, err: []string{"none for linux/" + Host().Architecture, foreign.String(), arm.String()}},
		{name: "manifest for another platform", top: []v1.Descriptor{other}, err: []string{"the image is for " + foreign.String()}},
		{name: "manifest whose config is for another platform", top: []v1.Descriptor{withoutPlatform(other)}, err: []string{"the image is for " + foreign.String()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			c.WriteLayout(t, dir, tc.top...)
			img, err := resolve(t, source.Dir(dir), source.Want{})
			if tc.want != nil {
				if err != nil {
					t.Fatal(err)
				}
				if img.Manifest.Digest != tc.want.Digest || img.Manifest.Platform == nil || img.Manifest.Platform.Architecture != Host().Architecture {
					t.Fatalf("picked %s (%v), want %s", img.Manifest.Digest, img.Manifest.Platform, tc.want.Digest)
				}
				return
			}
			if !errors.Is(err, source.ErrNoPlatform) {
				t.Fatalf("error %v, want ErrNoPlatform", err)
			}
			for _, s := range tc.err {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
	// Asked for, another platform is picked.
	dir := t.TempDir()
	c.WriteLayout(t, dir, c.Index(t, other, host))
	img, err := resolve(t, source.Dir(dir), source.Want{Platform: &foreign})
	if err != nil {
		t.Fatal(err)
	}
	if img.Manifest.Digest != other.Digest {
		t.Fatalf("asked for %s, got %s", foreign, img.Manifest.Digest)
	}
}

func withoutPlatform(d v1.Descriptor) v1.Descriptor {
	d.Platform = nil
	return d
}

// TestResolveNames: images are picked by the names the source gives them;
// several without a pick are refused, listing the names.
func TestResolveNames(t *testing.T) {
	c := NewContent()
	a := c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File("a", ""))}})
	b := c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File("b", ""))}})
	dir := t.TempDir()
	tagOnly := b
	tagOnly.Annotations = map[string]string{source.AnnotationRefName: "v2"}
	c.WriteLayout(t, dir, Named(a, "busybox"), Named(a, "busybox:stable"), tagOnly)

	_, err := resolve(t, source.Dir(dir), source.Want{})
	if !errors.Is(err, source.ErrAmbiguous) || !strings.Contains(err.Error(), "index.docker.io/library/busybox:latest") {
		t.Fatalf("error %v, want ErrAmbiguous listing the names", err)
	}
	img, err := resolve(t, source.Dir(dir), source.Want{Name: "docker.io/library/busybox:latest"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Manifest.Digest != a.Digest || !slices.Equal(img.Names, []string{"index.docker.io/library/busybox:latest"}) {
		t.Fatalf("by name: %v %q, %v", img.Manifest.Digest, img.Names, err)
	}
	img, err = resolve(t, source.Dir(dir), source.Want{Name: "v2"})
	if err != nil {
		t.Fatal(err)
	}
	if img.Manifest.Digest != b.Digest || img.Names != nil {
		t.Fatalf("by bare tag: %v, %v", img.Manifest.Digest, err)
	}
	if _, err := resolve(t, source.Dir(dir), source.Want{Name: "nginx"}); !errors.Is(err, source.ErrNotFound) {
		t.Fatalf("error %v, want ErrNotFound", err)
	}

	// One image under two names is one image.
	dir = t.TempDir()
	c.WriteLayout(t, dir, Named(a, "busybox"), Named(a, "busybox:stable"))
	img, err = resolve(t, source.Dir(dir), source.Want{})
	if err != nil {
		t.Fatal(err)
	}
	if len(img.Names) != 2 {
		t.Fatalf("one image under two names: %q, %v", img.Names, err)
	}
}

// TestResolveRefusals: what is not a container image, or does not match
// its digests, is refused with its class of error.
func TestResolveRefusals(t *testing.T) {
	layer := GzipLayer(t, File("f", ""))
	for _, tc := range []struct {
		name  string
		build func(c *Content) v1.Descriptor
		want  error
	}{
		{name: "manifest media type", want: source.ErrUnsupported, build: func(c *Content) v1.Descriptor {
			d := c.Image(t, Spec{Layers: []Layer{layer}})
			d.MediaType = "application/vnd.example.manifest+json"
			return d
		}},
		{name: "schema 1", want: source.ErrUnsupported, build: func(c *Content) v1.Descriptor {
			return c.Add(types.DockerManifestSchema1, []byte(`{"schemaVersion":1}`))
		}},
		{name: "config media type", want: source.ErrUnsupported, build: func(c *Content) v1.Descriptor {
			return c.Image(t, Spec{Layers: []Layer{layer}, ConfigType: "application/vnd.cncf.helm.config.v1+json"})
		}},
		{name: "layer media type", want: source.ErrUnsupported, build: func(c *Content) v1.Descriptor {
			return c.Image(t, Spec{Layers: []Layer{{Blob: layer.Blob, DiffID: layer.DiffID, MediaType: "application/vnd.example.squashfs"}}})
		}},
		{name: "foreign layer", want: source.ErrUnsupported, build: func(c *Content) v1.Descriptor {
			return c.Image(t, Spec{Layers: []Layer{{Blob: layer.Blob, DiffID: layer.DiffID, MediaType: types.DockerForeignLayer}}})
		}},
		{name: "manifest digest", want: source.ErrDigestMismatch, build: func(c *Content) v1.Descriptor {
			d := c.Image(t, Spec{Layers: []Layer{layer}})
			c.Blobs[d.Digest] = append(slices.Clone(c.Blobs[d.Digest]), ' ')
			return d
		}},
		{name: "manifest size", want: source.ErrDigestMismatch, build: func(c *Content) v1.Descriptor {
			d := c.Image(t, Spec{Layers: []Layer{layer}})
			d.Size--
			return d
		}},
		{name: "config digest", want: source.ErrDigestMismatch, build: func(c *Content) v1.Descriptor {
			d := c.Image(t, Spec{Layers: []Layer{layer}})
			var m v1.Manifest
			mustUnmarshal(t, c.Blobs[d.Digest], &m)
			c.Blobs[m.Config.Digest] = bytes.Replace(c.Blobs[m.Config.Digest], []byte("/bin/app"), []byte("/bin/evil"), 1)
			return d
		}},
		{name: "missing config", want: source.ErrNotFound, build: func(c *Content) v1.Descriptor {
			d := c.Image(t, Spec{Layers: []Layer{layer}})
			var m v1.Manifest
			mustUnmarshal(t, c.Blobs[d.Digest], &m)
			delete(c.Blobs, m.Config.Digest)
			return d
		}},
		{name: "empty index", want: source.ErrNotFound, build: func(c *Content) v1.Descriptor { return c.Index(t) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := NewContent()
			d := tc.build(c)
			dir := t.TempDir()
			c.WriteLayout(t, dir, d)
			if _, err := resolve(t, source.Dir(dir), source.Want{}); !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
		})
	}
}

// TestSourceNotImage: what is not an image source says so.
func TestSourceNotImage(t *testing.T) {
	for name, src := range map[string]source.Source{
		"empty directory": source.Dir(t.TempDir()),
		"tar of files":    source.File(writeFile(t, Tar(t, File("hello", "world")))),
		"not a tar":       source.Stream(strings.NewReader(strings.Repeat("junk", 1000))),
		"empty stream":    source.Stream(strings.NewReader("")),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := resolve(t, src, source.Want{}); !errors.Is(err, source.ErrNotImage) {
				t.Fatalf("error %v, want ErrNotImage", err)
			}
		})
	}
	// An archive cut short: whatever it lacks, it is refused.
	c, d := twoLayers(t)
	oci := c.OCIArchive(t, []v1.Descriptor{d}, nil)
	if _, err := resolve(t, source.Stream(bytes.NewReader(oci[:len(oci)/2])), source.Want{}); err == nil {
		t.Fatal("a truncated archive resolved")
	}
}

// TestEmptyIndexFallsBack: an archive whose index.json lists nothing
// (`docker save image@digest`, moby issue 47210) is read by its
// manifest.json.
func TestEmptyIndexFallsBack(t *testing.T) {
	c, d := twoLayers(t)
	data := c.OCIArchive(t, nil, []LegacyImage{{Manifest: d, RepoTags: []string{"app:1"}}})
	img, err := resolve(t, source.File(writeFile(t, data)), source.Want{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(img.Names, []string{"index.docker.io/library/app:1"}) || len(img.Layers) != 2 {
		t.Fatalf("names %q, %d layers", img.Names, len(img.Layers))
	}
}

func TestNormalizeAndParse(t *testing.T) {
	for in, want := range map[string]string{
		"busybox":              "index.docker.io/library/busybox:latest",
		"busybox:1.36":         "index.docker.io/library/busybox:1.36",
		"docker.io/library/x":  "index.docker.io/library/x:latest",
		"localhost:5000/app:1": "localhost:5000/app:1",
		"ghcr.io/o/r":          "ghcr.io/o/r:latest",
	} {
		if got, err := source.Normalize(in); err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "UPPER", "busybox@sha256:" + strings.Repeat("a", 64), "a b"} {
		if got, err := source.Normalize(bad); err == nil {
			t.Errorf("Normalize(%q) = %q, want an error", bad, got)
		}
	}
	dir := t.TempDir()
	file := writeFile(t, nil)
	for arg, want := range map[string]string{"-": "archive on stdin", dir: "OCI layout " + dir, file: "archive " + file} {
		src, err := source.Parse(arg, os.Stdin)
		if err != nil || src.String() != want {
			t.Errorf("Parse(%q) = %v, %v; want %s", arg, src, err, want)
		}
	}
	if _, err := source.Parse(filepath.Join(dir, "missing"), nil); err == nil {
		t.Error("Parse of a missing path: no error")
	}
}

func mustUnmarshal(t *testing.T, data []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(data, v); err != nil {
		t.Fatal(err)
	}
}

// TestLegacyUncompressedLayers: a legacy `docker save` archive, whose
// layer files are uncompressed tars, gets a made-up OCI manifest whose
// layers are described by their diff IDs; a layer file that is not the
// tar its diff ID names is found out when its blob is read and checked.
func TestLegacyUncompressedLayers(t *testing.T) {
	raw := Tar(t, File("a", "1"))
	c := NewContent()
	d := c.Image(t, Spec{Layers: []Layer{{Blob: raw, MediaType: types.OCIUncompressedLayer, DiffID: Digest(raw)}}})
	data := c.DockerArchive(t, []LegacyImage{{Manifest: d, RepoTags: []string{"app:1", "app:latest"}}})
	r, err := source.File(writeFile(t, data)).Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	img, err := source.Resolve(context.Background(), r, source.Want{})
	if err != nil {
		t.Fatal(err)
	}
	l := img.Layers[0]
	if l.Descriptor.Digest != Digest(raw) || l.Descriptor.MediaType != types.OCIUncompressedLayer || l.Descriptor.Size != int64(len(raw)) {
		t.Errorf("layer %+v, want the uncompressed tar's", l.Descriptor)
	}
	if len(img.Names) != 2 || img.Manifest.MediaType != types.OCIManifestSchema1 {
		t.Errorf("names %q, manifest %s", img.Names, img.Manifest.MediaType)
	}

	// The config's diff ID says another tar.
	other := Tar(t, File("a", "2"))
	c2 := NewContent()
	d2 := c2.Image(t, Spec{Layers: []Layer{{Blob: raw, MediaType: types.OCIUncompressedLayer, DiffID: Digest(other)}}})
	r2, err := source.File(writeFile(t, c2.DockerArchive(t, []LegacyImage{{Manifest: d2}}))).Open(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	img2, err := source.Resolve(context.Background(), r2, source.Want{})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := r2.Blob(context.Background(), img2.Layers[0].Descriptor)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if err := source.Check(b, img2.Layers[0].Descriptor); !errors.Is(err, source.ErrDigestMismatch) {
		t.Fatalf("check of a layer file that is not its diff ID's tar: %v", err)
	}
}
