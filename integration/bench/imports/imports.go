// Package imports is the bench's image part: importing and unpacking a
// multi-layer image of about 100 MB into corral's store, beside `umoci
// unpack` (unpacking the same OCI layout into a bundle) and `skopeo copy`
// (copying its blobs, unpacking nothing), each into a fresh directory,
// in interleaved rounds. Then the disk that Config.Services services
// from one such image take under one daemon, beside a copy of its root
// per service.
package imports

import (
	"context"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/corral-dev/corral/integration/bench/child"
	"github.com/corral-dev/corral/integration/bench/scratch"
	"github.com/corral-dev/corral/integration/bench/stats"
)

// GoalRatio bounds corral's import against each tool's time, at the
// median.
const GoalRatio = 1.0

// Config is what the part runs.
type Config struct {
	Corral string
	Rounds int
	// Layers and LayerBytes make the image: Layers of random content,
	// LayerBytes each (random data: it does not compress).
	Layers     int
	LayerBytes int64
	// Services run from the image for the disk measurement.
	Services int
}

// Result is one tool's line.
type Result struct {
	Name string `json:"name"`
	Note string `json:"note"`
	stats.Summary
	// VsCorral is the tool's median over corral's.
	VsCorral float64 `json:"corral_vs_this"`
}

// Report is the part's result.
type Report struct {
	Rounds     int      `json:"rounds"`
	ImageBytes int64    `json:"image_bytes"`
	Results    []Result `json:"results"`
	Disk       *Disk    `json:"disk,omitempty"`
	Notes      []string `json:"notes,omitempty"`
}

const imageRef = "bench"

type tool struct {
	name, note string
	// run imports the layout into the fresh directory dir.
	run func(ctx context.Context, layoutDir, dir string) error
}

// Run makes the image in sc and times each tool on it, then measures the
// disk its services take; the daemon it runs them under is started in g.
func Run(ctx context.Context, cfg Config, sc *scratch.Dir, g *child.Group, w io.Writer) (*Report, error) {
	layoutDir := sc.Path("images-layout")
	layers, err := randomLayers(cfg.Layers, cfg.LayerBytes)
	if err != nil {
		return nil, fmt.Errorf("images: make the image: %w", err)
	}
	size, err := makeLayout(layoutDir, imageRef, layers)
	if err != nil {
		return nil, fmt.Errorf("images: make the image: %w", err)
	}
	r := &Report{Rounds: cfg.Rounds, ImageBytes: size}
	tools := []tool{{
		name: "corral image import", note: "verified blobs, each layer unpacked (umoci's layer code), fsync'd",
		run: func(ctx context.Context, layoutDir, dir string) error {
			return command(ctx, cfg.Corral, "--data-dir", dir, "image", "import", layoutDir)
		},
	}}
	for _, t := range []struct {
		bin, note string
		run       func(bin string) func(ctx context.Context, layoutDir, dir string) error
	}{
		{"umoci", "umoci unpack: the layers unpacked into one bundle rootfs", func(bin string) func(context.Context, string, string) error {
			return func(ctx context.Context, layoutDir, dir string) error {
				return command(ctx, bin, "unpack", "--image", layoutDir+":"+imageRef, filepath.Join(dir, "bundle"))
			}
		}},
		{"skopeo", "skopeo copy oci: to dir: (the blobs only, nothing unpacked)", func(bin string) func(context.Context, string, string) error {
			return func(ctx context.Context, layoutDir, dir string) error {
				return command(ctx, bin, "copy", "--quiet", "oci:"+layoutDir+":"+imageRef, "dir:"+filepath.Join(dir, "copy"))
			}
		}},
	} {
		bin, err := exec.LookPath(t.bin)
		if err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("%s: not installed (apt-get install %s): left out", t.bin, t.bin))
			continue
		}
		tools = append(tools, tool{name: t.bin, note: t.note, run: t.run(bin)})
	}
	fmt.Fprintf(w, "images: %d rounds of importing a %d-layer image of %.0f MB, each tool into a fresh directory\n", cfg.Rounds, cfg.Layers, float64(size)/1e6)
	samples := make([][]time.Duration, len(tools))
	for round := 0; round < cfg.Rounds; round++ {
		for i := range tools {
			k := (round + i) % len(tools)
			dir := sc.Path(fmt.Sprintf("images-run-%d-%d", round, k))
			if err := os.Mkdir(dir, 0o700); err != nil {
				return nil, fmt.Errorf("images: %w", err)
			}
			start := time.Now()
			err := tools[k].run(ctx, layoutDir, dir)
			took := time.Since(start)
			if rerr := os.RemoveAll(dir); err == nil {
				err = rerr
			}
			if err != nil {
				return nil, fmt.Errorf("images: %s: %w", tools[k].name, err)
			}
			samples[k] = append(samples[k], took)
		}
	}
	for i, t := range tools {
		r.Results = append(r.Results, Result{Name: t.name, Note: t.note, Summary: stats.Summarize(samples[i])})
	}
	if c := r.Results[0].MedianMS; c > 0 {
		for i := range r.Results {
			r.Results[i].VsCorral = c / r.Results[i].MedianMS
		}
	}
	if r.Disk, err = measureDisk(ctx, cfg.Corral, cfg.Services, layers, sc, g, w); err != nil {
		return nil, fmt.Errorf("images: disk: %w", err)
	}
	return r, nil
}

// Print writes the table and the ratios against the goal.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nImport of a %.0f MB image (%d rounds)\n", float64(r.ImageBytes)/1e6, r.Rounds)
	fmt.Fprintf(w, "%-22s %10s %8s  %s\n", "tool", "median ms", "p95 ms", "notes")
	for _, res := range r.Results {
		fmt.Fprintf(w, "%-22s %10.1f %8.1f  %s\n", res.Name, res.MedianMS, res.P95MS, res.Note)
	}
	for _, res := range r.Results[1:] {
		fmt.Fprintf(w, "corral / %s median ratio: %.2f (goal <= %.2f)\n", res.Name, res.VsCorral, GoalRatio)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	if r.Disk != nil {
		r.Disk.Print(w)
	}
}

// randomLayers are n layers of random content (it does not compress),
// size bytes each; the same in every call.
func randomLayers(n int, size int64) ([]v1.Layer, error) {
	// OCI media types throughout: umoci takes no other.
	src := rand.NewSource(1)
	var ls []v1.Layer
	for range n {
		l, err := random.Layer(size, types.OCILayer, random.WithSource(src))
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
	}
	return ls, nil
}

// makeLayout writes an OCI layout at dir of one image of ls (ls[0] the
// bottom) named ref, and returns the size of its layers.
func makeLayout(dir, ref string, ls []v1.Layer) (int64, error) {
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, ls...)
	if err != nil {
		return 0, err
	}
	// For this host: the store takes an image for its own platform.
	cf, err := img.ConfigFile()
	if err != nil {
		return 0, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		return 0, err
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return 0, err
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": ref})); err != nil {
		return 0, err
	}
	var size int64
	for _, l := range ls {
		n, err := l.Size()
		if err != nil {
			return 0, err
		}
		size += n
	}
	return size, nil
}

func command(ctx context.Context, bin string, args ...string) error {
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
