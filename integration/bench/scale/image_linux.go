package scale

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/corral-dev/corral/integration/bench/coldstart"
	"github.com/corral-dev/corral/integration/bench/daemon"
	"github.com/corral-dev/corral/integration/bench/procfs"
)

// The scale part's image side: the same daemon and services as corral's,
// each service's root made from one image (the busybox root, imported
// once into a store of the part's own) rather than the built-in root.

// prepareImage imports the busybox image into the part's store, and
// returns the store's data dir.
func (b *bench) prepareImage() (string, error) {
	root := b.path("busybox-root")
	if err := coldstart.MakeBusyboxRoot(root); err != nil {
		return "", err
	}
	layout := b.path("busybox-oci")
	if err := coldstart.WriteImageLayout(root, b.path("busybox-layer.tar"), layout); err != nil {
		return "", fmt.Errorf("busybox image: %w", err)
	}
	data := b.path("data")
	if out, err := exec.Command(b.cfg.Corral, "--data-dir", data, "image", "import", layout).CombinedOutput(); err != nil {
		return "", fmt.Errorf("busybox image: corral image import: %v: %s", err, out)
	}
	return data, nil
}

// imageConfig is the daemon's service file: corralConfig's services, each
// from the image (never pulled), without the metrics endpoint.
func (b *bench) imageConfig() string {
	var s strings.Builder
	fmt.Fprintf(&s, "daemon:\n  cgroup_parent: %s\n  log_dir: %s\n  defaults:\n    resources: {memory: %s, pids: %s}\nservices:\n",
		cgroupParent, daemon.YAMLString(b.path("logs")), memoryFlag, pidsFlag)
	for i := 0; i < b.cfg.Services; i++ {
		fmt.Fprintf(&s, "  %s: {image: %s, pull: never, command: %s}\n", name(i), daemon.YAMLString(coldstart.BenchImage), daemon.YAMLList(strings.Fields(command)...))
	}
	return s.String()
}

// imageOnce starts the daemon on the image's services, times them up as
// corralOnce does, and stops it: only the times are measured.
func (b *bench) imageOnce(ctx context.Context, rep int, data string) (run Repetition, err error) {
	cfg := b.path("corral-image.yaml")
	if err := os.WriteFile(cfg, []byte(b.imageConfig()), 0o644); err != nil {
		return run, fmt.Errorf("write scale service file: %w", err)
	}
	state, err := b.sc.StateDir("scale", fmt.Sprintf("state-image-%d", rep))
	if err != nil {
		return run, err
	}
	var busy0 time.Duration
	up, err := StartCorral(ctx, b.cfg.Services, func() (*daemon.Daemon, error) {
		var err error
		if busy0, err = procfs.HostBusy(); err != nil {
			return nil, err
		}
		return daemon.Start(b.g, b.cfg.Corral, state, cfg, b.path(fmt.Sprintf("daemon-image-%d.log", rep)), "--data-dir", data)
	})
	if err != nil {
		return run, err
	}
	b.note(up.Note)
	if run.HostCPUS, err = hostCPUSince(busy0); err != nil {
		return run, err
	}
	run.FirstUpS, run.UpS, run.StartFailures = up.First.Seconds(), up.All.Seconds(), up.Failures
	down, err := up.Daemon.StopAndCheck(cgroupParent)
	if err != nil {
		return run, err
	}
	run.DownS = down.Seconds()
	return run, nil
}
