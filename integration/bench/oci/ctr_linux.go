package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/corral-dev/corral/integration/bench/netnsfile"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/integration/bench/scratch"
)

// ctrImage is the image `ctr run` runs: the host's static busybox.
const ctrImage = "bench.corral.test/busybox:1"

// ctrBench is a containerd of the bench's own (config, root, state and
// socket in the scratch dir, in a network namespace the bench makes),
// stopped by its PID at the end.
type ctrBench struct {
	dir, addr, netns string
	cmd              *exec.Cmd
	done             chan struct{}
}

// ctrRun times `ctr run --rm IMAGE ID /bin/true` through containerd's
// runc shim with each runtime of bins as its binary (--runc-binary), in
// rotating order: what a containerd user pays per container. It returns
// the times of each runtime in round order, or a note when containerd cannot run here.
func ctrRun(ctx context.Context, sc *scratch.Dir, bins map[string]string, order []string, rounds, warmup int, w io.Writer) (map[string][]time.Duration, string, error) {
	for _, tool := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Sprintf("ctr run: %s is not installed (make deps installs containerd)", tool), nil
		}
	}
	e, err := startContainerd(sc)
	if err != nil {
		return nil, "", err
	}
	defer e.stop()
	images := filepath.Join(e.dir, "images.tar")
	if err := writeImage(images); err != nil {
		return nil, "", err
	}
	if out, err := e.ctr("images", "import", images); err != nil {
		return nil, "", fmt.Errorf("ctr images import: %w: %s", err, out)
	}
	fmt.Fprintf(w, "oci: ctr run --rm of /bin/true, %d warm-up + %d measured rounds, runtimes in a rotating order\n", warmup, rounds)
	samples := map[string][]time.Duration{}
	n := 0
	for round := 0; round < warmup+rounds; round++ {
		for i := range order {
			if err := ctx.Err(); err != nil {
				return nil, "", err
			}
			name := order[(round+i)%len(order)]
			n++
			id := "bench-" + strconv.Itoa(n)
			start := time.Now()
			out, err := e.ctr("run", "--rm", "--runc-binary", bins[name], ctrImage, id, "/bin/true")
			d := time.Since(start)
			if err != nil {
				return nil, "", fmt.Errorf("ctr run with %s: %w: %s", name, err, out)
			}
			if round >= warmup {
				samples[name] = append(samples[name], d)
			}
		}
	}
	return samples, "", nil
}

func startContainerd(sc *scratch.Dir) (_ *ctrBench, err error) {
	e := &ctrBench{dir: sc.Path("containerd"), done: make(chan struct{})}
	e.addr = filepath.Join(e.dir, "containerd.sock")
	if err := os.MkdirAll(e.dir, 0o700); err != nil {
		return nil, err
	}
	// containerd's containers get namespaces of their own, but
	// containerd itself never runs in the host's.
	e.netns = filepath.Join(e.dir, "netns")
	if err := netnsfile.Make(e.netns); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			e.stop()
		}
	}()
	config := filepath.Join(e.dir, "config.toml")
	body := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing"]
[grpc]
  address = %q
[ttrpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, filepath.Join(e.dir, "root"), filepath.Join(e.dir, "state"), e.addr, e.addr+".ttrpc", filepath.Join(e.dir, "opt"))
	if err := os.WriteFile(config, []byte(body), 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(e.dir, "containerd.log"))
	if err != nil {
		return nil, err
	}
	e.cmd = exec.Command("nsenter", "--net="+e.netns, "--", "containerd", "--config", config)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	// Its own process group: the bench's terminal signals are not its.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	go func() { _ = e.cmd.Wait(); logf.Close(); close(e.done) }()
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", e.addr); err == nil {
			c.Close()
			return e, nil
		}
		select {
		case <-e.done:
			return nil, fmt.Errorf("containerd ended at start (its log: %s)", logf.Name())
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("containerd did not answer within 30s (its log: %s)", logf.Name())
		}
	}
}

func (e *ctrBench) ctr(args ...string) (string, error) {
	out, err := exec.Command("ctr", append([]string{"-a", e.addr, "-n", "corral-bench"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// stop ends containerd by its PID (the shims of `ctr run --rm` end with
// their containers), unmounts what is left under its directory and the
// namespace.
func (e *ctrBench) stop() {
	if e.cmd != nil && e.cmd.Process != nil {
		_ = e.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-e.done:
		case <-time.After(15 * time.Second):
			_ = e.cmd.Process.Kill()
			<-e.done
		}
	}
	unmountUnder(e.dir)
	_ = netnsfile.Remove(e.netns)
}

// unmountUnder unmounts every mount at or below dir, deepest first.
func unmountUnder(dir string) {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var points []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			points = append(points, f[4])
		}
	}
	for i := len(points) - 1; i >= 0; i-- {
		_ = unix.Unmount(points[i], unix.MNT_DETACH)
	}
}

// writeImage writes ctrImage, the host's static busybox as /bin/true, as
// a `docker save` tarball that `ctr images import` takes.
func writeImage(path string) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox: %w", err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []string{"bin/", "proc/", "dev/", "sys/", "tmp/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d, Mode: 0o755}); err != nil {
			return err
		}
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "bin/busybox", Mode: 0o755, Size: int64(len(data))}); err != nil {
		return err
	}
	if _, err := tw.Write(data); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: "bin/true", Linkname: "busybox", Mode: int64(fs.ModePerm)}); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	layerData := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layerData)), nil })
	if err != nil {
		return err
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{Architecture: runtime.GOARCH, OS: "linux",
		Config: v1.Config{Env: []string{"PATH=/bin"}, Cmd: []string{"/bin/true"}, WorkingDir: "/"}})
	if err != nil {
		return err
	}
	if img, err = mutate.AppendLayers(img, layer); err != nil {
		return err
	}
	ref, err := name.ParseReference(ctrImage)
	if err != nil {
		return err
	}
	if err := tarball.WriteToFile(path, ref, img); err != nil {
		return errors.Join(fmt.Errorf("write the image: %w", err), os.Remove(path))
	}
	return nil
}
