package image_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/corral-dev/corral/internal/testenv"
	"github.com/corral-dev/corral/rootfs/image"
	. "github.com/corral-dev/corral/rootfs/image/imagetest"
	"github.com/corral-dev/corral/rootfs/image/layer"
	"github.com/corral-dev/corral/rootfs/image/source"
)

var ctx = context.Background()

func open(t *testing.T) *image.Store {
	t.Helper()
	testenv.NeedRoot(t, "the store unpacks layers: owners, whiteout devices, trusted.* xattrs")
	s, err := image.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// layout writes the content as an OCI layout and returns it as a source.
func layout(t *testing.T, c *Content, top ...v1.Descriptor) source.Source {
	t.Helper()
	dir := t.TempDir()
	c.WriteLayout(t, dir, top...)
	return source.Dir(dir)
}

func archiveFile(t *testing.T, data []byte) source.Source {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.tar")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return source.File(path)
}

// Layers of the multi-layer image, bottom first.
func baseLayers(t *testing.T) []Layer {
	return []Layer{
		GzipLayer(t,
			Dir("bin/"), Entry{Name: "bin/busybox", Body: "bb", Mode: 0o755}, Hardlink("bin/sh", "bin/busybox"), Symlink("bin/ls", "busybox"),
			Dir("etc/"), File("etc/motd", "welcome"), File("etc/hosts", "127.0.0.1 localhost"),
			Dir("home/"), Dir("home/old/"), File("home/old/notes", "old"),
			Dir("usr/"), Dir("usr/share/"), Dir("usr/share/doc/"), File("usr/share/doc/README", "docs"), File("usr/share/keep", "k"),
			Entry{Name: "tmp/", Type: '5', Mode: 0o1777},
		),
		GzipLayer(t,
			Dir("etc/"), Whiteout("etc/motd"),
			Dir("home/"), Opaque("home"), Entry{Name: "home/app/", Type: '5', Mode: 0o700, UID: 1000, GID: 1000}, Entry{Name: "home/app/data", Body: "d", UID: 1000, GID: 1000},
			Dir("bin/"), Entry{Name: "bin/su", Body: "su", Mode: 0o4755}, Hardlink("bin/sudo", "bin/su"),
			Dir("usr/"), Dir("usr/share/"), Whiteout("usr/share/doc"),
		),
		{Blob: Zstd(t, Tar(t, Dir("etc/"), File("etc/motd", "new motd"), Dir("usr/"), Dir("usr/share/"), Dir("usr/share/doc/"), File("usr/share/doc/NEW", "n"))),
			MediaType: types.OCILayerZStd, DiffID: Digest(Tar(t, Dir("etc/"), File("etc/motd", "new motd"), Dir("usr/"), Dir("usr/share/"), Dir("usr/share/doc/"), File("usr/share/doc/NEW", "n")))},
	}
}

// TestImportMultiLayer: a three-layer image with whiteouts, an opaque
// directory, hard links, a setuid file and owners is stored as one
// directory per layer in overlayfs form, checked file by file; the
// kernel's overlay of those directories is the image's root as Docker
// would build it; the config and the index record are right.
func TestImportMultiLayer(t *testing.T) {
	s := open(t)
	c := NewContent()
	d := c.Image(t, Spec{Layers: baseLayers(t)})
	img, err := s.Import(ctx, layout(t, c, Named(d, "localhost:5000/app:1")), image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if img.Digest != d.Digest || !slices.Equal(img.Names, []string{"localhost:5000/app:1"}) || img.Platform.Architecture != Host().Architecture || len(img.Layers) != 3 {
		t.Fatalf("image %+v", img)
	}
	dirs := img.LayerDirs()
	for i, l := range img.Layers {
		if dirs[i] != filepath.Join(s.Dir(), "layers/sha256", l.DiffID.Hex) {
			t.Errorf("layer dir %d = %s", i, dirs[i])
		}
	}

	want := []map[string]string{{
		"bin": "dir 755", "bin/busybox": `file 755 "bb"`, "bin/sh": `file 755 "bb" =bin/busybox`, "bin/ls": "-> busybox",
		"etc": "dir 755", "etc/motd": `file 644 "welcome"`, "etc/hosts": `file 644 "127.0.0.1 localhost"`,
		"home": "dir 755", "home/old": "dir 755", "home/old/notes": `file 644 "old"`,
		"usr": "dir 755", "usr/share": "dir 755", "usr/share/doc": "dir 755", "usr/share/doc/README": `file 644 "docs"`, "usr/share/keep": `file 644 "k"`,
		"tmp": "dir 1777",
	}, {
		"etc": "dir 755", "etc/motd": "whiteout",
		"home": "dir 755 opaque", "home/app": "dir 700 1000:1000", "home/app/data": `file 644 "d" 1000:1000`,
		"bin": "dir 755", "bin/su": `file 4755 "su"`, "bin/sudo": `file 4755 "su" =bin/su`,
		"usr": "dir 755", "usr/share": "dir 755", "usr/share/doc": "whiteout",
	}, {
		"etc": "dir 755", "etc/motd": `file 644 "new motd"`,
		"usr": "dir 755", "usr/share": "dir 755", "usr/share/doc": "dir 755", "usr/share/doc/NEW": `file 644 "n"`,
	}}
	for i, dir := range dirs {
		if diff := diffTrees(tree(t, dir), want[i]); diff != "" {
			t.Errorf("layer %d:\n%s", i+1, diff)
		}
	}

	merged := map[string]string{
		"bin": "dir 755", "bin/busybox": `file 755 "bb"`, "bin/sh": `file 755 "bb" =bin/busybox`, "bin/ls": "-> busybox",
		"bin/su": `file 4755 "su"`, "bin/sudo": `file 4755 "su" =bin/su`,
		"etc": "dir 755", "etc/motd": `file 644 "new motd"`, "etc/hosts": `file 644 "127.0.0.1 localhost"`,
		"home": "dir 755", "home/app": "dir 700 1000:1000", "home/app/data": `file 644 "d" 1000:1000`,
		"usr": "dir 755", "usr/share": "dir 755", "usr/share/doc": "dir 755", "usr/share/doc/NEW": `file 644 "n"`, "usr/share/keep": `file 644 "k"`,
		"tmp": "dir 1777",
	}
	if diff := diffTrees(overlayTree(t, dirs), merged); diff != "" {
		t.Errorf("the overlay of the layers:\n%s", diff)
	}

	cfg, err := img.Config()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Config.Entrypoint, []string{"/bin/app"}) || !slices.Equal(cfg.Config.Cmd, []string{"--serve"}) ||
		!slices.Equal(cfg.Config.Env, []string{"PATH=/bin"}) || cfg.Config.WorkingDir != "/srv" || cfg.Config.User != "1000:1000" {
		t.Errorf("config %+v", cfg.Config)
	}
	for _, ref := range []string{"localhost:5000/app:1", d.Digest.String(), d.Digest.String()[:12], "localhost:5000/app@" + d.Digest.String()} {
		got, err := s.Get(ref)
		if err != nil || got.Digest != d.Digest {
			t.Errorf("Get(%q) = %v, %v", ref, got, err)
		}
	}
	// Another store on the same directory sees it.
	s2, err := image.Open(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if list, err := s2.List(); err != nil || len(list) != 1 || !slices.Equal(list[0].LayerDirs(), dirs) {
		t.Errorf("List from a second Open: %v, %v", list, err)
	}
}

// TestImportSourceForms: one image imported from each form of source
// shares its layer directories with the others; each form gives the
// config.
func TestImportSourceForms(t *testing.T) {
	s := open(t)
	c := NewContent()
	raw := Tar(t, Dir("etc/"), File("etc/os-release", "ID=corral"))
	d := c.Image(t, Spec{Layers: []Layer{
		{Blob: raw, MediaType: types.OCIUncompressedLayer, DiffID: Digest(raw)},
		GzipLayer(t, File("app", "binary")),
	}})
	legacy := []LegacyImage{{Manifest: d, RepoTags: []string{"app:1"}}}
	oci := c.OCIArchive(t, []v1.Descriptor{Named(d, "app:1")}, nil)
	var first []string
	for i, src := range []source.Source{
		layout(t, c, d),
		archiveFile(t, c.OCIArchive(t, []v1.Descriptor{Named(d, "app:1")}, legacy)),
		archiveFile(t, c.DockerArchive(t, legacy)),
		source.Stream(bytes.NewReader(oci)),
		source.Stream(bytes.NewReader(Gzip(t, c.DockerArchive(t, legacy)))),
	} {
		img, err := s.Import(ctx, src, image.ImportOptions{Name: fmt.Sprintf("form:%d", i)})
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		if i == 0 {
			first = img.LayerDirs()
		} else if !slices.Equal(img.LayerDirs(), first) {
			t.Errorf("%s: layer dirs %q, want %q", src, img.LayerDirs(), first)
		}
		if cfg, err := img.Config(); err != nil || cfg.Config.Entrypoint[0] != "/bin/app" {
			t.Errorf("%s: config %v, %v", src, cfg, err)
		}
	}
	if got := tree(t, first[0]); got["etc/os-release"] != `file 644 "ID=corral"` {
		t.Errorf("layer 1: %v", got)
	}
	entries, _ := os.ReadDir(filepath.Join(s.Dir(), "layers/sha256"))
	if len(entries) != 4 { // two directories, two notes
		t.Errorf("layers/sha256 holds %d entries, want 4", len(entries))
	}
}

// TestImportGoContainerRegistry: an image go-containerregistry makes
// (random layers, docker save tarball) imports.
func TestImportGoContainerRegistry(t *testing.T) {
	s := open(t)
	img, err := random.Image(2048, 3)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := img.ConfigFile()
	cfg.OS, cfg.Architecture = "linux", Host().Architecture
	cfg.Config.Entrypoint = []string{"/random"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "save.tar")
	tag, _ := name.NewTag("random:1")
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
	got, err := s.Import(ctx, source.File(path), image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Names, []string{"index.docker.io/library/random:1"}) || len(got.LayerDirs()) != 3 {
		t.Fatalf("image %+v", got)
	}
	gotCfg, err := got.Config()
	if err != nil || gotCfg.Config.Entrypoint[0] != "/random" {
		t.Fatalf("config %v, %v", gotCfg, err)
	}
	layers, _ := img.Layers()
	for i, dir := range got.LayerDirs() {
		rc, _ := layers[i].Uncompressed()
		n := 0
		for e := range tarEntries(t, rc) {
			if _, err := os.Lstat(filepath.Join(dir, e)); err != nil {
				t.Errorf("layer %d: %s: %v", i, e, err)
			}
			n++
		}
		if n == 0 {
			t.Errorf("layer %d has no entries", i)
		}
	}
}

// TestImportFailures: each way an import fails says which, leaves no
// image, no temporary file or directory, no lease and no layer directory
// of the layer that failed; a retry from a good source completes.
func TestImportFailures(t *testing.T) {
	good := GzipLayer(t, File("good", "g"))
	other := Foreign()
	for _, tc := range []struct {
		name  string
		build func(t *testing.T, c *Content) source.Source
		opts  image.ImportOptions
		want  error
		layer int // the layer a *LayerError names, if any
		entry string
	}{
		{name: "hostile layer", want: errors.New("link"), layer: 2, entry: "hl", build: func(t *testing.T, c *Content) source.Source {
			return layout(t, c, c.Image(t, Spec{Layers: []Layer{good, GzipLayer(t, File("x", ""), Hardlink("hl", "../../../../etc/passwd"))}}))
		}},
		{name: "layer over the size limit", want: layer.ErrTooLarge, layer: 2, entry: "big", opts: image.ImportOptions{MaxLayerSize: 3000},
			build: func(t *testing.T, c *Content) source.Source {
				return layout(t, c, c.Image(t, Spec{Layers: []Layer{good, GzipLayer(t, File("big", strings.Repeat("b", 4000)))}}))
			}},
		{name: "layer digest", want: image.ErrDigestMismatch, layer: 2, build: func(t *testing.T, c *Content) source.Source {
			bad := GzipLayer(t, File("bad", "b"))
			d := c.Image(t, Spec{Layers: []Layer{good, bad}})
			c.Blobs[Digest(bad.Blob)] = GzipLayer(t, File("bad", "X")).Blob
			return layout(t, c, d)
		}},
		{name: "layer diff ID", want: layer.ErrDiffIDMismatch, layer: 1, build: func(t *testing.T, c *Content) source.Source {
			l := GzipLayer(t, File("a", "1"))
			l.DiffID = Digest([]byte("another tar"))
			return layout(t, c, c.Image(t, Spec{Layers: []Layer{l}}))
		}},
		{name: "corrupt layer", want: layer.ErrCorrupt, layer: 2, build: func(t *testing.T, c *Content) source.Source {
			l := GzipLayer(t, File("a", strings.Repeat("x", 5000)))
			l.Blob = l.Blob[:len(l.Blob)-12]
			return layout(t, c, c.Image(t, Spec{Layers: []Layer{good, l}}))
		}},
		{name: "missing layer blob", want: source.ErrNotFound, layer: 2, build: func(t *testing.T, c *Content) source.Source {
			l := GzipLayer(t, File("gone", ""))
			d := c.Image(t, Spec{Layers: []Layer{good, l}})
			delete(c.Blobs, Digest(l.Blob))
			return layout(t, c, d)
		}},
		{name: "corrupt archive", want: source.ErrNotImage, build: func(t *testing.T, c *Content) source.Source {
			data := c.OCIArchive(t, []v1.Descriptor{c.Image(t, Spec{Layers: []Layer{good}})}, nil)
			return source.Stream(bytes.NewReader(data[:300]))
		}},
		{name: "stream cut mid-way", want: io.ErrUnexpectedEOF, build: func(t *testing.T, c *Content) source.Source {
			data := c.OCIArchive(t, []v1.Descriptor{c.Image(t, Spec{Layers: []Layer{good}})}, nil)
			return source.Stream(io.MultiReader(bytes.NewReader(data[:len(data)/2]), errReader{io.ErrUnexpectedEOF}))
		}},
		{name: "another platform only", want: source.ErrNoPlatform, build: func(t *testing.T, c *Content) source.Source {
			return layout(t, c, c.Index(t, c.Image(t, Spec{Layers: []Layer{good}, Platform: &other})))
		}},
		{name: "unknown media type", want: source.ErrUnsupported, build: func(t *testing.T, c *Content) source.Source {
			return layout(t, c, c.Image(t, Spec{Layers: []Layer{good, {Blob: []byte("x"), DiffID: Digest([]byte("x")), MediaType: "application/x-squashfs"}}}))
		}},
		{name: "bad name", want: image.ErrInvalid, opts: image.ImportOptions{Name: "Not A Name"}, build: func(t *testing.T, c *Content) source.Source {
			return layout(t, c, c.Image(t, Spec{Layers: []Layer{good}}))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			_, err := s.Import(ctx, tc.build(t, NewContent()), tc.opts)
			if err == nil {
				t.Fatal("imported")
			}
			if tc.want != nil && !errors.Is(err, tc.want) && !strings.Contains(err.Error(), tc.want.Error()) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			t.Logf("error: %v", err)
			var le *image.LayerError
			if tc.layer != 0 && (!errors.As(err, &le) || le.Index != tc.layer) {
				t.Errorf("error %v does not name layer %d", err, tc.layer)
			}
			var ee *layer.EntryError
			if tc.entry != "" && (!errors.As(err, &ee) || ee.Entry != tc.entry) {
				t.Errorf("error %v does not name entry %q", err, tc.entry)
			}
			assertNoDebris(t, s)
			if list, _ := s.List(); len(list) != 0 {
				t.Errorf("the index has %d images", len(list))
			}
			if le != nil {
				if _, err := os.Lstat(filepath.Join(s.Dir(), "layers/sha256", le.DiffID.Hex)); err == nil {
					t.Errorf("the failed layer's directory is there")
				}
			}
			// The store is usable: a good import completes.
			c := NewContent()
			if _, err := s.Import(ctx, layout(t, c, c.Image(t, Spec{Layers: []Layer{good, GzipLayer(t, File("second", ""))}})), image.ImportOptions{Name: "retry"}); err != nil {
				t.Fatalf("retry: %v", err)
			}
		})
	}
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// assertNoDebris checks that the store holds no temporary file or
// directory, no scratch, no lease, and no lock file but those of the
// layers it has.
func assertNoDebris(t *testing.T, s *image.Store) {
	t.Helper()
	locks, err := os.ReadDir(filepath.Join(s.Dir(), "locks"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range locks {
		if _, err := os.Stat(filepath.Join(s.Dir(), "layers/sha256", strings.TrimPrefix(e.Name(), "layer-"))); err != nil {
			t.Errorf("left behind: locks/%s, of a layer that is not there", e.Name())
		}
	}
	for _, dir := range []string{".", "blobs/sha256", "layers/sha256", "tmp", "leases"} {
		entries, err := os.ReadDir(filepath.Join(s.Dir(), dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), ".") || dir == "tmp" || dir == "leases" {
				t.Errorf("left behind: %s/%s", dir, e.Name())
			}
		}
	}
}

// TestConcurrentImportsShareLayer: imports of two images that share a
// layer, run at once, unpack the shared layer once, and both are stored.
func TestConcurrentImportsShareLayer(t *testing.T) {
	s := open(t)
	base := GzipLayer(t, Dir("usr/"), File("usr/lib", strings.Repeat("l", 1<<20)))
	c := NewContent()
	a := c.Image(t, Spec{Layers: []Layer{base, GzipLayer(t, File("a", "a"))}})
	b := c.Image(t, Spec{Layers: []Layer{base, GzipLayer(t, File("b", "b"))}})
	src := layout(t, c, Named(a, "a:1"), Named(b, "b:1"))

	var (
		mu       sync.Mutex
		unpacked = map[string]int{}
	)
	defer image.SetTestHook(func(point string) {
		if diffID, ok := strings.CutPrefix(point, "unpack "); ok {
			mu.Lock()
			unpacked[diffID]++
			mu.Unlock()
		}
	})()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pick := []string{"a:1", "b:1"}[i%2]
			_, err := s.Import(ctx, src, image.ImportOptions{Pick: pick})
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := unpacked[base.DiffID.String()]; n != 1 {
		t.Errorf("the shared layer was unpacked %d times", n)
	}
	if len(unpacked) != 3 {
		t.Errorf("unpacked %v, want three layers once each", unpacked)
	}
	ia, err1 := s.Get("a:1")
	ib, err2 := s.Get("b:1")
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	if ia.LayerDirs()[0] != ib.LayerDirs()[0] {
		t.Errorf("the shared layer has two directories")
	}
	assertNoDebris(t, s)
}

// TestNames: names are normalised; a name moves to the image imported
// under it, and an image left without a name goes; Remove takes a name
// off an image that has others; digests and prefixes find images.
func TestNames(t *testing.T) {
	s := open(t)
	c := NewContent()
	imgs := []v1.Descriptor{}
	for i := range 3 {
		imgs = append(imgs, c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File(fmt.Sprint(i), ""))}}))
	}
	imp := func(d v1.Descriptor, names ...string) {
		t.Helper()
		var top []v1.Descriptor
		for _, n := range names {
			top = append(top, Named(d, n))
		}
		if len(top) == 0 {
			top = []v1.Descriptor{d}
		}
		if _, err := s.Import(ctx, layout(t, c, top...), image.ImportOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	imp(imgs[0], "busybox")
	imp(imgs[1], "docker.io/library/app:1", "app:latest")
	imp(imgs[2])
	if img, err := s.Get("index.docker.io/library/busybox:latest"); err != nil || img.Digest != imgs[0].Digest {
		t.Fatalf("busybox: %v, %v", img, err)
	}
	if img, err := s.Get(imgs[2].Digest.String()); err != nil || len(img.Names) != 0 {
		t.Fatalf("the unnamed image: %v, %v", img, err)
	}
	// app:latest moves to image 0; image 1 keeps app:1.
	if _, err := s.Import(ctx, layout(t, c, imgs[0]), image.ImportOptions{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	if img, _ := s.Get("app"); img.Digest != imgs[0].Digest || len(img.Names) != 2 {
		t.Errorf("app:latest is on %v", img)
	}
	if img, _ := s.Get("app:1"); !slices.Equal(img.Names, []string{"index.docker.io/library/app:1"}) {
		t.Errorf("image 1 has names %q", img.Names)
	}
	// busybox moves to image 1: image 0 keeps app:latest.
	if _, err := s.Import(ctx, layout(t, c, imgs[1]), image.ImportOptions{Name: "busybox"}); err != nil {
		t.Fatal(err)
	}
	// app:1 moves to image 2: image 1 keeps busybox.
	if _, err := s.Import(ctx, layout(t, c, imgs[2]), image.ImportOptions{Name: "app:1"}); err != nil {
		t.Fatal(err)
	}
	// app (latest) moves to image 2: image 0 had no other name and goes.
	if _, err := s.Import(ctx, layout(t, c, imgs[2]), image.ImportOptions{Name: "app"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(imgs[0].Digest.String()); !errors.Is(err, image.ErrNotFound) {
		t.Errorf("image 0, left without a name: %v", err)
	}
	list, _ := s.List()
	if len(list) == 2 {
		slices.Sort(list[0].Names)
	}
	if len(list) != 2 || !slices.Equal(list[0].Names, []string{"index.docker.io/library/app:1", "index.docker.io/library/app:latest"}) {
		for _, img := range list {
			t.Logf("%s %q", img.Digest, img.Names)
		}
		t.Fatalf("list")
	}
	if err := s.Remove(ctx, "app:1"); err != nil {
		t.Fatal(err)
	}
	if img, err := s.Get("app"); err != nil || len(img.Names) != 1 {
		t.Errorf("after removing app:1: %v, %v", img, err)
	}
	for ref, want := range map[string]error{
		"nginx":         image.ErrNotFound,
		"sha256:":       image.ErrInvalid,
		"sha256:xyz":    image.ErrInvalid,
		"x@sha256:abc":  image.ErrInvalid,
		"Bad Name":      image.ErrInvalid,
		"sha256:ffffff": nil, // not found or found: checked below
	} {
		if _, err := s.Get(ref); want != nil && !errors.Is(err, want) {
			t.Errorf("Get(%q): %v, want %v", ref, err, want)
		}
	}
}

// TestDigestPrefixAmbiguous: a prefix two images share finds neither.
func TestDigestPrefixAmbiguous(t *testing.T) {
	s := open(t)
	c := NewContent()
	byFirst := map[byte]v1.Hash{}
	for i := 0; ; i++ {
		d := c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File(fmt.Sprint(i), ""))}})
		if _, err := s.Import(ctx, layout(t, c, d), image.ImportOptions{}); err != nil {
			t.Fatal(err)
		}
		if prev, ok := byFirst[d.Digest.Hex[0]]; ok {
			if _, err := s.Get("sha256:" + d.Digest.Hex[:1]); !errors.Is(err, image.ErrAmbiguous) {
				t.Fatalf("prefix of %s and %s: %v", prev, d.Digest, err)
			}
			if img, err := s.Get(d.Digest.String()); err != nil || img.Digest != d.Digest {
				t.Fatalf("whole digest: %v", err)
			}
			return
		}
		byFirst[d.Digest.Hex[0]] = d.Digest
	}
}

// TestConfigTampered: a config blob changed on disk is refused.
func TestConfigTampered(t *testing.T) {
	s := open(t)
	c := NewContent()
	img, err := s.Import(ctx, layout(t, c, c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File("f", ""))}})), image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(s.Dir(), "blobs/sha256", img.ConfigDigest.Hex)
	data, _ := os.ReadFile(path)
	if err := os.WriteFile(path, bytes.Replace(data, []byte("/bin/app"), []byte("/bin/bad"), 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := img.Config(); !errors.Is(err, image.ErrDigestMismatch) {
		t.Fatalf("error %v, want ErrDigestMismatch", err)
	}
}

// TestRemovePruneLeases: a leased image cannot be removed; Prune frees
// what no image and no live lease references (a layer two images share
// stays while one has it), and nothing once all is removed; a lease whose
// holder process is gone counts for nothing.
func TestRemovePruneLeases(t *testing.T) {
	s := open(t)
	base := GzipLayer(t, File("base", strings.Repeat("b", 100000)))
	c := NewContent()
	a := c.Image(t, Spec{Layers: []Layer{base, GzipLayer(t, File("a", "a"))}})
	b := c.Image(t, Spec{Layers: []Layer{base, GzipLayer(t, File("b", "b"))}})
	src := layout(t, c, Named(a, "a"), Named(b, "b"))
	imgA, err := s.Import(ctx, src, image.ImportOptions{Pick: "a"})
	if err != nil {
		t.Fatal(err)
	}
	imgB, err := s.Import(ctx, src, image.ImportOptions{Pick: "b"})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := s.Prune(ctx); err != nil || n != 0 {
		t.Fatalf("prune with everything in use freed %d: %v", n, err)
	}

	lease, err := s.Lease(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if lease.Image.Digest != a.Digest || len(lease.Image.LayerDirs()) != 2 {
		t.Fatalf("lease of %v", lease.Image)
	}
	if err := s.Remove(ctx, "a"); !errors.Is(err, image.ErrInUse) {
		t.Fatalf("remove of a leased image: %v", err)
	}
	if err := s.Remove(ctx, a.Digest.String()); !errors.Is(err, image.ErrInUse) {
		t.Fatalf("remove of a leased image by digest: %v", err)
	}
	if err := s.Remove(ctx, "b"); err != nil {
		t.Fatal(err)
	}
	freed, err := s.Prune(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if freed <= 0 {
		t.Errorf("prune freed %d bytes", freed)
	}
	// B's own blobs and layer went; the shared layer and A's stayed.
	for _, l := range imgB.Layers {
		_, errBlob := os.Stat(filepath.Join(s.Dir(), "blobs/sha256", l.Digest.Hex))
		_, errDir := os.Stat(filepath.Join(s.Dir(), "layers/sha256", l.DiffID.Hex))
		shared := l.DiffID == base.DiffID
		if (errBlob == nil) != shared || (errDir == nil) != shared {
			t.Errorf("layer %s (shared %v): blob %v, dir %v", l.DiffID, shared, errBlob, errDir)
		}
	}
	for _, p := range append(imgA.LayerDirs(), filepath.Join(s.Dir(), "blobs/sha256", imgA.ConfigDigest.Hex)) {
		if _, err := os.Stat(p); err != nil {
			t.Errorf("A's %s: %v", p, err)
		}
	}

	if err := lease.Release(); err != nil {
		t.Fatal(err)
	}
	lease2, err := s.Lease(ctx, "a", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := lease2.Release(); err != nil || lease2.Release() != nil {
		t.Fatalf("release twice: %v", err)
	}

	// A lease held for a child process lapses when it exits.
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lease(ctx, "a", child.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, "a"); !errors.Is(err, image.ErrInUse) {
		t.Fatalf("remove while the child holds a lease: %v", err)
	}
	child.Process.Kill()
	child.Wait()
	if _, err := s.Lease(ctx, "a", child.Process.Pid); err == nil {
		t.Fatal("a lease for a process that is gone was taken")
	}
	if err := s.Remove(ctx, "a"); err != nil {
		t.Fatalf("remove after the holder exited: %v", err)
	}
	if _, err := s.Prune(ctx); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{"blobs/sha256", "layers/sha256", "leases", "locks"} {
		if entries, _ := os.ReadDir(filepath.Join(s.Dir(), dir)); len(entries) != 0 {
			t.Errorf("%s still holds %d entries after everything was removed and pruned", dir, len(entries))
		}
	}
}

// TestPruneKeepsImportInFlight: an import's content is leased from
// before its first blob is written until its image is in the index: a
// Prune at any point in between frees none of it.
func TestPruneKeepsImportInFlight(t *testing.T) {
	s := open(t)
	c := NewContent()
	d := c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File("1", "")), GzipLayer(t, File("2", ""))}})
	var pruneErrs []error
	defer image.SetTestHook(func(point string) {
		// Prune at each point; it runs in this goroutine, under the
		// index lock the import does not hold here.
		if _, err := s.Prune(ctx); err != nil {
			pruneErrs = append(pruneErrs, err)
		}
	})()
	img, err := s.Import(ctx, layout(t, c, d), image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pruneErrs) != 0 {
		t.Fatal(pruneErrs)
	}
	for _, dir := range img.LayerDirs() {
		if _, err := os.Stat(dir); err != nil {
			t.Error(err)
		}
	}
	for _, h := range []v1.Hash{img.Digest, img.ConfigDigest, img.Layers[0].Digest, img.Layers[1].Digest} {
		if _, err := os.Stat(filepath.Join(s.Dir(), "blobs/sha256", h.Hex)); err != nil {
			t.Error(err)
		}
	}
}

// TestSymlinkedParentFromLowerLayer: a layer whose entries go through a
// symlink an earlier layer made (to an absolute path outside, or up with
// "..") writes nothing outside: each layer is unpacked in a directory of
// its own, so the later entry makes a real directory in its layer, which
// in the overlay hides the lower symlink (Docker, applying layers on one
// tree, would write through the link, inside the root).
func TestSymlinkedParentFromLowerLayer(t *testing.T) {
	s := open(t)
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("original"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := tree(t, outside)
	c := NewContent()
	d := c.Image(t, Spec{Layers: []Layer{
		GzipLayer(t, Symlink("abs", outside), Symlink("rel", "../../../../../.."+outside), Symlink("up", "..")),
		GzipLayer(t, Dir("abs/"), File("abs/victim", "pwned"), File("rel/victim", "pwned"), File("up/new", "x")),
	}})
	img, err := s.Import(ctx, layout(t, c, d), image.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := diffTrees(tree(t, outside), before); diff != "" {
		t.Fatalf("outside changed:\n%s", diff)
	}
	upper := tree(t, img.LayerDirs()[1])
	for _, p := range []string{"abs/victim", "rel/victim", "up/new"} {
		if !strings.HasPrefix(upper[p], "file") {
			t.Errorf("layer 2 %s: %q, want a file in the layer", p, upper[p])
		}
	}
	merged := overlayTree(t, img.LayerDirs())
	if merged["abs"] != "dir 755" || merged["abs/victim"] != `file 644 "pwned"` {
		t.Errorf("the overlay: abs %q, abs/victim %q", merged["abs"], merged["abs/victim"])
	}
}
