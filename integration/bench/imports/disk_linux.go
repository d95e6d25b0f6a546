package imports

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/corral-dev/corral/integration/bench/busybox"
	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/child"
	"github.com/corral-dev/corral/integration/bench/daemon"
	"github.com/corral-dev/corral/integration/bench/scratch"
)

const (
	// diskImage is the image the services run from: the timed import's
	// random layers, and busybox on top to run diskCommand.
	diskImage   = "corral-bench/disk:1"
	diskCommand = "/bin/sleep 100000"
	// diskReadOnly is the services' read_only: false gives each sandbox a
	// writable root, the costlier case.
	diskReadOnly = false
	// diskCgroupParent holds the services' sandboxes.
	diskCgroupParent = cgroupfs.Parent + "/images"
	diskTimeout      = 120 * time.Second
)

// rootDirs are the directories an image's root usually has (the mount
// points among them are then not made in each sandbox's writable layer).
var rootDirs = []string{"bin", "dev", "etc", "proc", "root", "run", "sys", "tmp"}

// measureDisk imports an image of layers (and busybox) into a fresh
// store, measures it, runs n services from it under one daemon, measures
// the data, state and log dirs with all running, and stops the daemon, which
// must leave nothing behind.
func measureDisk(ctx context.Context, corral string, n int, layers []v1.Layer, sc *scratch.Dir, g *child.Group, w io.Writer) (*Disk, error) {
	dir := sc.Path("images-disk")
	logs := filepath.Join(dir, "logs")
	if err := os.MkdirAll(logs, 0o755); err != nil {
		return nil, err
	}
	bin, err := busybox.Static()
	if err != nil {
		return nil, err
	}
	bb, err := busyboxLayer(bin)
	if err != nil {
		return nil, fmt.Errorf("busybox layer: %w", err)
	}
	layoutDir := filepath.Join(dir, "layout")
	if _, err := makeLayout(layoutDir, diskImage, append(layers[:len(layers):len(layers)], bb)); err != nil {
		return nil, fmt.Errorf("make the image: %w", err)
	}
	fmt.Fprintf(w, "images: disk used by %d services from one image, under one daemon\n", n)
	data := filepath.Join(dir, "data")
	if err := command(ctx, corral, "--data-dir", data, "image", "import", layoutDir); err != nil {
		return nil, err
	}
	mounts, err := mountPoints()
	if err != nil {
		return nil, err
	}
	store, err := newUsage(mounts).add(data)
	if err != nil {
		return nil, err
	}
	unpacked, err := newUsage(mounts).add(filepath.Join(data, "images", "layers"))
	if err != nil {
		return nil, err
	}

	state, err := sc.StateDir("images-disk", "state")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "corral.yaml")
	if err := os.WriteFile(cfg, []byte(diskConfig(n, logs)), 0o644); err != nil {
		return nil, fmt.Errorf("write the service file: %w", err)
	}
	d, err := daemon.Start(g, corral, state, cfg, filepath.Join(dir, "daemon.log"), "--data-dir", data)
	if err != nil {
		return nil, err
	}
	if err := d.WaitReady(ctx, diskTimeout); err != nil {
		return nil, err
	}
	if err := d.WaitRunning(ctx, n, diskTimeout); err != nil {
		return nil, err
	}
	// Read after the overlays are up, so that each is known to the walk.
	if mounts, err = mountPoints(); err != nil {
		return nil, err
	}
	r := &Disk{Services: n, ReadOnly: diskReadOnly, StoreBytes: store, UnpackedBytes: unpacked}
	u := newUsage(mounts)
	if r.DataBytes, err = u.add(data); err != nil {
		return nil, err
	}
	if r.StateEntries, err = u.addByEntry(state); err != nil {
		return nil, err
	}
	for _, v := range r.StateEntries {
		r.StateBytes += v
	}
	if r.LogBytes, err = u.add(logs); err != nil {
		return nil, err
	}
	r.SkippedMounts = len(u.Skipped)
	r.derive()
	if _, err := d.StopAndCheck(diskCgroupParent); err != nil {
		return nil, err
	}
	return r, nil
}

// diskConfig is the daemon's service file: n services running
// diskCommand from diskImage, never pulled.
func diskConfig(n int, logs string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "daemon:\n  cgroup_parent: %s\n  log_dir: %s\n  defaults:\n    resources: {memory: 32M, pids: 16}\nservices:\n",
		diskCgroupParent, daemon.YAMLString(logs))
	for i := range n {
		fmt.Fprintf(&s, "  d%03d: {image: %s, pull: never, read_only: %t, command: %s}\n",
			i, daemon.YAMLString(diskImage), diskReadOnly, daemon.YAMLList(strings.Fields(diskCommand)...))
	}
	return s.String()
}

// busyboxLayer is a layer that runs diskCommand: rootDirs, the static
// busybox at bin as /bin/busybox, and /bin/sleep linked to it.
func busyboxLayer(bin string) (v1.Layer, error) {
	prog, err := os.ReadFile(bin)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	tw := tar.NewWriter(&b)
	epoch := time.Unix(0, 0)
	for _, d := range rootDirs {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, ModTime: epoch}); err != nil {
			return nil, err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(prog)), ModTime: epoch}); err != nil {
		return nil, err
	}
	if _, err := tw.Write(prog); err != nil {
		return nil, err
	}
	sleep := filepath.Base(strings.Fields(diskCommand)[0])
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/" + sleep, Linkname: "busybox", ModTime: epoch}); err != nil {
		return nil, err
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b.Bytes())), nil
	}, tarball.WithMediaType(types.OCILayer))
}
