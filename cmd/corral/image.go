package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/spf13/cobra"

	"github.com/corral-dev/corral/rootfs/image"
	"github.com/corral-dev/corral/rootfs/image/source"
	"github.com/corral-dev/corral/runtime/imagerun"
)

// openStore opens the image store under the data dir.
func (g *globalOptions) openStore() (*image.Store, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("must be run as root: the image store keeps layers with their owners")
	}
	return image.Open(imagerun.StoreDir(g.dataDir))
}

func newImageCommand(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Manage the images services run from: pull, import, ls, inspect, rm, prune",
		Long: `The image store (under --data-dir) holds OCI images, each blob verified
against its digest and each layer unpacked once into a directory of its own,
shared by every image that has it. A service with image: REF (or corral run
--image REF) runs on an overlay of its layers.`,
	}
	cmd.AddCommand(newImagePullCommand(g), newImageImportCommand(g), newImageLsCommand(g), newImageInspectCommand(g), newImageRmCommand(g), newImagePruneCommand(g))
	return cmd
}

func newImagePullCommand(g *globalOptions) *cobra.Command {
	var opt source.RegistryOptions
	var maxLayer int64
	cmd := &cobra.Command{
		Use:   "pull REF",
		Short: "Pull an image from a registry: NAME[:TAG] or NAME@sha256:DIGEST",
		Long: `Pull an image over the OCI distribution (registry v2) protocol: HTTPS, or
plain HTTP for a loopback registry or with --insecure; credentials from
~/.docker/config.json (docker login) and its helpers. A multi-platform
image gives the host's platform; NAME@sha256:DIGEST pins the image. Blobs
and layers the store has already are not fetched again. On a terminal it
shows the layers and bytes as they come.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			if isTerminal(os.Stderr) {
				p := &pullProgress{w: os.Stderr}
				opt.Progress = p.report
				defer p.finish()
			}
			start := time.Now()
			img, err := imagerun.Pull(ctx, store, args[0], opt, maxLayer)
			if err != nil {
				return fmt.Errorf("pull %s: %w", args[0], err)
			}
			fmt.Printf("pulled %s %s (%d layers, %s) in %s\n", img.Name(), img.Digest, len(img.Layers), humanBytes(layersSize(img)), time.Since(start).Round(time.Millisecond))
			return nil
		},
	}
	cmd.Flags().BoolVar(&opt.Insecure, "insecure", false, "allow plain HTTP, and TLS without a verified certificate, for this registry")
	cmd.Flags().DurationVar(&opt.Timeout, "timeout", source.DefaultRegistryTimeout, "how long the registry may take to answer each request")
	cmd.Flags().Var(bytesValue{&maxLayer}, "max-layer-size", "refuse a layer that unpacks to more than this, e.g. 2G (default 8G)")
	return cmd
}

// pullProgress shows a pull's layers and bytes on one terminal line.
type pullProgress struct {
	w     io.Writer
	mu    sync.Mutex
	read  map[string]int64
	done  map[string]bool
	total map[string]int64
}

func (p *pullProgress) report(d v1.Descriptor, read int64, done bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.read == nil {
		p.read, p.done, p.total = map[string]int64{}, map[string]bool{}, map[string]int64{}
	}
	k := d.Digest.String()
	p.read[k], p.total[k] = read, d.Size
	if done {
		p.done[k] = true
	}
	var got, want int64
	for k := range p.read {
		got += p.read[k]
		want += p.total[k]
	}
	fmt.Fprintf(p.w, "\rlayers %d of %d done, %s of %s", len(p.done), len(p.read), humanBytes(got), humanBytes(want))
}

func (p *pullProgress) finish() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.read != nil {
		fmt.Fprintln(p.w)
	}
}

func newImageImportCommand(g *globalOptions) *cobra.Command {
	var opts image.ImportOptions
	cmd := &cobra.Command{
		Use:   "import FILE|DIR|-",
		Short: "Import an image: a docker save archive, an OCI archive or layout, or such a tar on stdin",
		Long: `Import an image into the store: a docker save archive (either form), an OCI
image layout directory or archive, plain or gzip, or such an archive on stdin
(-). A source with several images needs --name (one of its names); one whose
index lists several platforms gives the host's. Every blob is verified
against its digest, every layer's diff ID too; a layer is unpacked only if
no image already has it. An import that fails leaves nothing behind.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore()
			if err != nil {
				return err
			}
			src, err := source.Parse(args[0], os.Stdin)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			start := time.Now()
			img, err := store.Import(ctx, src, opts)
			if err != nil {
				return fmt.Errorf("import %s: %w", args[0], err)
			}
			fmt.Printf("imported %s %s (%d layers, %s) in %s\n", img.Name(), img.Digest, len(img.Layers), humanBytes(layersSize(img)), time.Since(start).Round(time.Millisecond))
			for _, l := range img.Layers {
				for _, s := range l.Skipped {
					fmt.Printf("  layer %s: skipped %s\n", l.DiffID.Hex[:12], s)
				}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&opts.Name, "name", "", "the image to take from a source that holds several (and the name it gets)")
	cmd.Flags().Var(bytesValue{&opts.MaxLayerSize}, "max-layer-size", "refuse a layer that unpacks to more than this, e.g. 2G (default 8G)")
	return cmd
}

func newImageLsCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ls",
		Short: "List the images in the store",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore()
			if err != nil {
				return err
			}
			imgs, err := store.List()
			if err != nil {
				return err
			}
			if asJSON {
				return printJSON(imgs)
			}
			printImages(os.Stdout, imgs)
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printImages(w io.Writer, imgs []*image.Image) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tDIGEST\tLAYERS\tSIZE\tIMPORTED")
	for _, img := range imgs {
		names := img.Names
		if len(names) == 0 {
			names = []string{"<none>"}
		}
		for _, n := range names {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", field(n), img.Digest.Hex[:12], len(img.Layers), humanBytes(layersSize(img)), img.Imported.Format(time.DateTime))
		}
	}
	tw.Flush()
}

func newImageInspectCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "inspect REF",
		Short: "Show an image: its names, digest, platform, layers and config, as JSON",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore()
			if err != nil {
				return err
			}
			img, err := store.Get(args[0])
			if err != nil {
				return err
			}
			cfg, err := img.Config()
			if err != nil {
				return err
			}
			return printJSON(struct {
				*image.Image
				LayerDirs []string `json:"layerDirs"`
				Config    any      `json:"config"`
			}{img, img.LayerDirs(), cfg})
		},
	}
}

func newImageRmCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "rm REF...",
		Short: "Remove images' names (an image goes with its last name); prune frees the space",
		Long: `Remove each named image: by a name, that name (the image goes when it has
no name left); by a digest (sha256:..., or a unique prefix), the image. An
image a running sandbox uses is refused. Its layers stay on disk until
corral image prune.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			var failed []string
			for _, ref := range args {
				if err := store.Remove(ctx, ref); err != nil {
					fmt.Fprintf(os.Stderr, "corral: image rm %s: %v\n", ref, err)
					failed = append(failed, ref)
					continue
				}
				fmt.Println("removed", ref)
			}
			if len(failed) > 0 {
				return &exitError{code: 1, err: fmt.Errorf("image rm: not removed: %s", strings.Join(failed, ", "))}
			}
			return nil
		},
	}
}

func newImagePruneCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Free what no image, running sandbox or import in flight uses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := g.openStore()
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			freed, err := store.Prune(ctx)
			if err != nil {
				return err
			}
			fmt.Printf("freed %s\n", humanBytes(freed))
			return nil
		},
	}
}

// layersSize is what the image's layers weigh as stored (compressed).
func layersSize(img *image.Image) int64 {
	var n int64
	for _, l := range img.Layers {
		n += l.Size
	}
	return n
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
