package imports

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/corral-dev/corral/integration/bench/stats"
)

// The bench's image is one OCI image (umoci takes no Docker media types)
// named for the tools, with the layers asked for.
func TestMakeLayout(t *testing.T) {
	dir := t.TempDir()
	ls, err := randomLayers(3, 4096)
	if err != nil {
		t.Fatal(err)
	}
	size, err := makeLayout(dir, imageRef, ls)
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.FromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	ii, _ := p.ImageIndex()
	idx, err := ii.IndexManifest()
	if err != nil || len(idx.Manifests) != 1 {
		t.Fatalf("index: %+v, %v", idx, err)
	}
	d := idx.Manifests[0]
	if d.MediaType != types.OCIManifestSchema1 || d.Annotations["org.opencontainers.image.ref.name"] != imageRef {
		t.Errorf("manifest descriptor %+v", d)
	}
	img, _ := ii.Image(d.Digest)
	ls, _ = img.Layers()
	if len(ls) != 3 || size < 3*4096/2 {
		t.Errorf("%d layers, %d bytes", len(ls), size)
	}
	for _, l := range ls {
		if mt, _ := l.MediaType(); mt != types.OCILayer {
			t.Errorf("layer media type %s", mt)
		}
	}
}

func TestPrintRatios(t *testing.T) {
	r := &Report{Rounds: 3, ImageBytes: 100e6, Results: []Result{
		{Name: "corral image import", Summary: stats.Summary{MedianMS: 500}, VsCorral: 1},
		{Name: "umoci", Summary: stats.Summary{MedianMS: 800}, VsCorral: 0.625},
	}, Notes: []string{"skopeo: not installed"}}
	var b bytes.Buffer
	r.Print(&b)
	for _, want := range []string{"corral / umoci median ratio: 0.62 (goal <= 1.00)", "note: skopeo: not installed"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
