package integration

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
	"github.com/corral-dev/corral/runtime/cgroup"
)

// The images of the containerd tests, made offline: the host's
// busybox-static, and a pause image (the pod's sandbox) of a reaper the
// test builds.
const (
	ociBusybox = "corral.test/busybox:1"
	ociPause   = "corral.test/pause:1"
)

// engine is a containerd of the test's own: its config, root, state,
// socket and corral-runc's --root all in one directory under the run's
// work dir, in a network namespace the test made (so that a host-network
// pod shares that one, never the host's). It is stopped by PID when the
// test ends, after every container it still has is removed.
type engine struct {
	t    *testing.T
	dir  string
	addr string
	// link is corral-runc: a link to the corral under test, the runtime's
	// BinaryName.
	link string
	// runtimeRoot is corral-runc's --root for the namespace ns.
	runtimeRoot string
	ns          string
	// cgroup is the cgroup parent of the test's containers.
	cgroup string
	log    string
	// netns is the network namespace (a file) it runs in.
	netns string
	cmd   *exec.Cmd
	done  chan struct{}
}

// newEngine starts containerd: with cri, its CRI plugin, with a runtime
// handler "corral" and the pause image as the sandbox image; without,
// the plugins ctr needs only.
func newEngine(t *testing.T, cri bool) *engine {
	t.Helper()
	bin, err := exec.LookPath("containerd")
	testenv.Need(t, err == nil, "containerd is not installed (make deps installs it)")
	_, err = exec.LookPath("ctr")
	testenv.Need(t, err == nil, "ctr is not installed (make deps installs containerd, which has it)")
	_, err = exec.LookPath("containerd-shim-runc-v2")
	testenv.Need(t, err == nil, "containerd-shim-runc-v2 is not installed (make deps installs containerd, which has it)")
	dir, err := os.MkdirTemp(workDir, "containerd-")
	if err != nil {
		t.Fatal(err)
	}
	e := &engine{t: t, dir: dir, addr: filepath.Join(dir, "containerd.sock"), link: corralRunc(t),
		ns: "corral-test", cgroup: fmt.Sprintf("%s/%s", cgroupParent, filepath.Base(dir)), log: filepath.Join(dir, "containerd.log"),
		done: make(chan struct{})}
	if cri {
		e.ns = "k8s.io" // the CRI plugin's
	}
	e.runtimeRoot = filepath.Join(dir, "corral-runc", e.ns)
	config := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(config, []byte(e.config(cri)), 0o644); err != nil {
		t.Fatal(err)
	}
	netns := netnsFile(t, "containerd")
	e.netns = netns
	if err := inNetns(t, netns, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		return netlink.LinkSetUp(lo)
	}); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(e.log)
	if err != nil {
		t.Fatal(err)
	}
	// nsenter executes containerd: the same process, in that namespace.
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatal(err)
	}
	e.cmd = exec.Command(nsenter, "--net="+netns, "--", bin, "--config", config)
	e.cmd.Stdout, e.cmd.Stderr = logf, logf
	// Its own process group: a shim it starts outlives it by design, and
	// must not get the test's terminal signals.
	e.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := e.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = e.cmd.Wait(); logf.Close(); close(e.done) }()
	t.Cleanup(e.stop)
	for deadline := time.Now().Add(patience); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("unix", e.addr); err == nil {
			c.Close()
			break
		}
		select {
		case <-e.done:
			t.Fatalf("containerd ended at start:\n%s", e.logTail())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not answer on %s within %s:\n%s", e.addr, patience, e.logTail())
		}
	}
	return e
}

// config is containerd's config (version 2): everything under e.dir, the
// plugins it cannot use here off.
func (e *engine) config(cri bool) string {
	disabled := `"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"`
	if !cri {
		disabled += `, "io.containerd.grpc.v1.cri"`
	}
	c := fmt.Sprintf(`version = 2
root = %[1]q
state = %[2]q
disabled_plugins = [%[3]s]
[grpc]
  address = %[4]q
[ttrpc]
  address = %[5]q
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = %[6]q
`, filepath.Join(e.dir, "root"), filepath.Join(e.dir, "state"), disabled, e.addr, e.addr+".ttrpc", filepath.Join(e.dir, "opt"))
	if cri {
		// No CNI: the test's pods use the node's network (the test's own
		// namespace). The streaming server (crictl exec without -s)
		// listens on that namespace's loopback. A pod's sandbox asks for
		// an OOM score of -998, which needs CAP_SYS_RESOURCE: restricted
		// to containerd's own, so that the test also runs where root
		// lacks it (some CI sandboxes).
		c += fmt.Sprintf(`[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %[1]q
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %[2]q
    conf_dir = %[3]q
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "corral"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.corral]
      runtime_type = "io.containerd.runc.v2"
      # The pod's corral policy annotations reach its containers' specs.
      pod_annotations = ["run.corral.policy/*"]
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.corral.options]
        BinaryName = %[4]q
        Root = %[5]q
`, ociPause, filepath.Join(e.dir, "cni", "bin"), filepath.Join(e.dir, "cni", "conf"), e.link, filepath.Dir(e.runtimeRoot))
	}
	return c
}

// stop removes what the test left (a failed test's containers), stops
// containerd by its PID, then any shim of its still running, and checks
// that nothing of it is left: no shim, no mount under its directory.
func (e *engine) stop() {
	t := e.t
	t.Helper()
	e.sweep()
	_ = e.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-e.done:
	case <-time.After(15 * time.Second):
		_ = e.cmd.Process.Kill()
		<-e.done
	}
	for _, pid := range e.shims() {
		t.Errorf("a shim of containerd is left: PID %d", pid)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if mounts := mountsUnder(e.dir); len(mounts) > 0 {
		t.Errorf("mounts left under containerd's directory:\n  %s", strings.Join(mounts, "\n  "))
		for i := len(mounts) - 1; i >= 0; i-- {
			_ = unix.Unmount(mounts[i], unix.MNT_DETACH)
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		t.Error(err)
	}
	removeEmptyCgroup(e.cgroup)
	removeEmptyCgroup(cgroupParent)
	// containerd 1.6 puts its shims' sockets in /run/containerd/s
	// whatever its config says; they go with the shims, the directory
	// stays: another containerd may be using it.
}

// sweep removes every container the engine still has (none, when the
// test passed).
func (e *engine) sweep() {
	out, err := exec.Command("ctr", "-a", e.addr, "-n", e.ns, "containers", "list", "-q").Output()
	if err != nil {
		return
	}
	for _, id := range strings.Fields(string(out)) {
		_ = exec.Command("ctr", "-a", e.addr, "-n", e.ns, "task", "delete", "--force", id).Run()
		_ = exec.Command("ctr", "-a", e.addr, "-n", e.ns, "containers", "delete", id).Run()
	}
}

// shims are the PIDs of the shims of this containerd (their command
// line names its socket).
func (e *engine) shims() []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, ent := range ents {
		var pid int
		if _, err := fmt.Sscanf(ent.Name(), "%d", &pid); err != nil {
			continue
		}
		cmdline, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if err == nil && bytes.Contains(cmdline, []byte("containerd-shim")) && bytes.Contains(cmdline, []byte(e.addr)) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func (e *engine) logTail() string {
	data, _ := os.ReadFile(e.log)
	if len(data) > 8000 {
		data = data[len(data)-8000:]
	}
	return string(data)
}

// ctr runs ctr on the engine (in the test's namespace) to completion.
func (e *engine) ctr(args ...string) result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return finish(e.t, exec.CommandContext(ctx, "ctr", append([]string{"-a", e.addr, "-n", e.ns}, args...)...))
}

// mustCtr runs ctr and fails the test unless it exits 0.
func (e *engine) mustCtr(args ...string) result {
	e.t.Helper()
	r := e.ctr(args...)
	if r.code != 0 {
		e.t.Fatalf("ctr %s: %s\ncontainerd's log:\n%s", strings.Join(args, " "), r, e.logTail())
	}
	return r
}

// importImages imports the test's images into the engine's namespace.
func (e *engine) importImages() {
	e.t.Helper()
	r := e.mustCtr("images", "import", ociImages(e.t))
	for _, ref := range []string{ociBusybox, ociPause} {
		wantContains(e.t, "ctr images import", r.stdout, ref)
	}
}

// assertNoContainer fails the test if anything of container id is left:
// its state under corral-runc's root, its cgroup, its processes.
func (e *engine) assertNoContainer(id, cgroup string) {
	t := e.t
	t.Helper()
	if exists(filepath.Join(e.runtimeRoot, id)) {
		t.Errorf("container %s: its state is left under corral-runc's root %s", id, e.runtimeRoot)
	}
	for _, root := range host.Roots {
		if dir := filepath.Join(root, cgroup); exists(dir) {
			t.Errorf("container %s: its cgroup %s is left (processes %v)", id, dir, cgroupProcs(t, dir))
		}
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// mountsUnder lists the mount points under dir, outermost first.
func mountsUnder(dir string) []string {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			out = append(out, f[4])
		}
	}
	return out
}

// ociImages writes the test's two images to a docker archive (what
// `ctr images import` and `docker load` read): busybox, and a pause
// image (the pod's sandbox) of a static reaper the test builds.
func ociImages(t *testing.T) string {
	t.Helper()
	layer := busyboxLayer(t)
	image := func(entrypoint, cmd []string, layers ...v1.Layer) v1.Image {
		img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
			Architecture: runtime.GOARCH, OS: "linux",
			Config: v1.Config{Env: []string{"PATH=/bin"}, Entrypoint: entrypoint, Cmd: cmd, WorkingDir: "/"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if img, err = mutate.AppendLayers(img, layers...); err != nil {
			t.Fatal(err)
		}
		return img
	}
	refs := map[name.Reference]v1.Image{}
	for ref, img := range map[string]v1.Image{
		ociBusybox: image(nil, []string{"/bin/sh"}, layer),
		ociPause:   image([]string{"/pause"}, nil, pauseLayer(t)),
	} {
		r, err := name.ParseReference(ref)
		if err != nil {
			t.Fatal(err)
		}
		refs[r] = img
	}
	path := filepath.Join(t.TempDir(), "images.tar")
	if err := tarball.MultiRefWriteToFile(path, refs); err != nil {
		t.Fatalf("write the images: %v", err)
	}
	return path
}

// pauseSource is the pod sandbox's init: PID 1 of a PID namespace the
// pod's containers may share, it reaps the orphans they leave, and ends
// on SIGTERM or SIGINT.
const pauseSource = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD, syscall.SIGTERM, syscall.SIGINT)
	for s := range sigs {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			if pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil); pid <= 0 || err != nil {
				break
			}
		}
	}
}
`

// pauseLayer is a root holding only /pause, built static from
// pauseSource.
func pauseLayer(t *testing.T) v1.Layer {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "pause.go")
	if err := os.WriteFile(src, []byte(pauseSource), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, src)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GO111MODULE=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the pause binary: %v\n%s", err, out)
	}
	data, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	return tarLayer(t, func(w *layerWriter) { w.file("pause", 0o755, data) })
}

// busyboxLayer is a root of the host's static busybox: a few applets,
// root and a user 1000, a /tmp.
func busyboxLayer(t *testing.T) v1.Layer {
	t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		t.Fatal(err)
	}
	return tarLayer(t, func(w *layerWriter) {
		for _, d := range []string{"bin", "etc", "proc", "dev", "sys"} {
			w.dir(d, 0o755)
		}
		w.dir("tmp", 0o1777)
		w.file("bin/busybox", 0o755, bb)
		for _, applet := range []string{"sh", "sleep", "cat", "echo", "id", "ls", "hostname", "grep", "tr", "tty", "true"} {
			w.symlink("bin/"+applet, "busybox")
		}
		w.file("etc/passwd", 0o644, []byte("root:x:0:0:root:/:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n"))
		w.file("etc/group", 0o644, []byte("root:x:0:\nuser:x:1000:\n"))
	})
}

// layerWriter writes a layer's tar; the first error fails the test.
type layerWriter struct {
	t  *testing.T
	tw *tar.Writer
}

func (w *layerWriter) must(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

func (w *layerWriter) dir(path string, mode int64) {
	w.must(w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: path + "/", Mode: mode}))
}

func (w *layerWriter) file(path string, mode int64, data []byte) {
	w.must(w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: mode, Size: int64(len(data))}))
	_, err := w.tw.Write(data)
	w.must(err)
}

func (w *layerWriter) symlink(path, target string) {
	w.must(w.tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: path, Linkname: target, Mode: 0o777}))
}

// tarLayer is the layer that fill writes.
func tarLayer(t *testing.T, fill func(*layerWriter)) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	w := &layerWriter{t: t, tw: tar.NewWriter(&buf)}
	fill(w)
	w.must(w.tw.Close())
	data := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return layer
}

// TestContainerdRunsCorral: containerd's runc shim drives corral-runc
// (ctr run --runc-binary): a container's output and its exit code come
// back through the shim; a long-running one takes an exec (output and
// status), a pause, a SIGTERM whose exit status ctr reports; once
// deleted nothing of it is left.
func TestContainerdRunsCorral(t *testing.T) {
	e := newEngine(t, false)
	e.importImages()
	fifos := filepath.Join(e.dir, "fifo")
	runtimeFlags := []string{"--runc-binary", e.link, "--runc-root", filepath.Dir(e.runtimeRoot), "--fifo-dir", fifos}

	// Attached, removed at its end: output, and a failing status as
	// ctr's own.
	cg := e.cgroup + "/once"
	r := e.ctr(append(append([]string{"run", "--rm"}, runtimeFlags...), "--cgroup", cg, ociBusybox, "once",
		"sh", "-c", "echo hello from corral; id -u; exit 3")...)
	if r.code != 3 || !strings.Contains(r.stdout, "hello from corral\n0\n") {
		t.Fatalf("ctr run: want exit 3 and the output; %s\ncontainerd's log:\n%s", r, e.logTail())
	}
	e.assertNoContainer("once", cg)

	// Detached, its output in a file.
	cg = e.cgroup + "/long"
	out := filepath.Join(e.dir, "long.out")
	e.mustCtr(append(append([]string{"run", "-d"}, runtimeFlags...), "--cgroup", cg, "--log-uri", "file://"+out, ociBusybox, "long",
		"sh", "-c", `trap "echo got TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done`)...)
	waitFile(t, out, "ready")
	if r := e.mustCtr("task", "list"); !regexpLine(r.stdout, `^long\s+\d+\s+RUNNING$`) {
		t.Errorf("task list: want long RUNNING: %s", r.stdout)
	}
	// corral-runc's, not runc's: its state is under the root given.
	if !exists(filepath.Join(e.runtimeRoot, "long", "state.json")) {
		t.Errorf("long runs, but not under corral-runc's root %s", e.runtimeRoot)
	}
	r = e.ctr("task", "exec", "--exec-id", "x1", "--fifo-dir", fifos, "long", "sh", "-c", "echo exec sees $(cat /proc/1/cmdline | tr '\\0' ' '); exit 5")
	if r.code != 5 || !strings.Contains(r.stdout, "exec sees sh -c trap") {
		t.Errorf("ctr task exec: want exit 5 and the container's init seen; %s", r)
	}
	e.mustCtr("task", "pause", "long")
	if r := e.mustCtr("task", "list"); !regexpLine(r.stdout, `^long\s+\d+\s+PAUSED$`) {
		t.Errorf("task list: want long PAUSED: %s", r.stdout)
	}
	e.mustCtr("task", "resume", "long")
	e.mustCtr("task", "kill", "long")
	waitFile(t, out, "got TERM")
	for deadline := time.Now().Add(patience); !regexpLine(e.mustCtr("task", "list").stdout, `^long\s+\d+\s+STOPPED$`); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("long not STOPPED %s after SIGTERM", patience)
		}
	}
	r = e.mustCtr("task", "delete", "long")
	wantContains(t, "ctr task delete", r.stdout+r.stderr, "exit code 7")
	e.mustCtr("containers", "delete", "long")
	e.assertNoContainer("long", cg)
	if ids, _ := os.ReadDir(e.runtimeRoot); len(ids) > 0 {
		t.Errorf("corral-runc's root is not empty: %v", ids)
	}
}

// TestContainerdShowsCorralRefusals: what corral-runc refuses reaches
// ctr's user as corral's own message (the shim reads it from --log's
// JSON lines), and a refused or failed create leaves nothing: a command
// that is not in the image; a privileged container, or one without a
// user namespace, under the annotations that refuse them.
func TestContainerdShowsCorralRefusals(t *testing.T) {
	e := newEngine(t, false)
	e.importImages()
	runtimeFlags := []string{"--runc-binary", e.link, "--runc-root", filepath.Dir(e.runtimeRoot), "--fifo-dir", filepath.Join(e.dir, "fifo")}
	for _, tc := range []struct {
		id   string
		args []string
		want string
	}{
		{"nocmd", []string{ociBusybox, "nocmd", "no-such-command"}, `exec: "no-such-command": executable file not found in $PATH`},
		{"priv", []string{"--privileged", "--annotation", "run.corral.policy/privileged=refuse", ociBusybox, "priv", "true"},
			"refused by corral's runtime policy: process.capabilities: CAP_AUDIT_CONTROL"},
		{"nouserns", []string{"--annotation", "run.corral.policy/user-namespace=required", ociBusybox, "nouserns", "true"},
			"refused by corral's runtime policy: linux.namespaces: no user namespace with ID mappings"},
	} {
		cg := e.cgroup + "/" + tc.id
		r := e.ctr(append(append([]string{"run", "--rm"}, runtimeFlags...), append([]string{"--cgroup", cg}, tc.args...)...)...)
		if r.code == 0 || !strings.Contains(r.stderr, "OCI runtime create failed: ") || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("ctr run %s: want it refused with %q; %s", tc.id, tc.want, r)
		}
		e.ctr("containers", "delete", tc.id) // ctr run --rm leaves a container whose task was never made
		e.assertNoContainer(tc.id, cg)
	}
	// (The same with --uidmap would pass the policy, but ctr 1.6 then
	// runs runc whatever --runc-binary says.)
}

// TestKubernetesCRIRunsCorral: containerd's CRI plugin (what the kubelet
// talks to) with a runtime handler "corral" runs a pod (its pause
// sandbox) and a container in it through corral-runc, as crictl asks:
// the container's log, the pod's policy annotation (a pids limit) on its
// container, an exec's output and status, a memory limit updated in
// place, stop and removal of both; then nothing is left.
func TestKubernetesCRIRunsCorral(t *testing.T) {
	crictl := crictlBinary(t)
	e := newEngine(t, true)
	e.importImages()
	config := filepath.Join(e.dir, "crictl.yaml")
	endpoint := "unix://" + e.addr
	writeJSONFile(t, config, map[string]any{"runtime-endpoint": endpoint, "image-endpoint": endpoint, "timeout": 30})
	cri := func(args ...string) result {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// In containerd's network namespace: crictl exec reaches the
		// streaming server on its loopback.
		return finish(t, exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + e.netns, "--", crictl, "--config", config}, args...)...))
	}
	mustCri := func(args ...string) string {
		t.Helper()
		r := cri(args...)
		if r.code != 0 {
			t.Fatalf("crictl %s: %s\ncontainerd's log:\n%s", strings.Join(args, " "), r, e.logTail())
		}
		return strings.TrimSpace(r.stdout)
	}
	pod := filepath.Join(e.dir, "pod.json")
	writeJSONFile(t, pod, map[string]any{
		"metadata":      map[string]any{"name": "corral-pod", "namespace": "default", "uid": "corral-pod-uid", "attempt": 0},
		"annotations":   map[string]string{"run.corral.policy/pids-limit": "64"},
		"log_directory": filepath.Join(e.dir, "pods"),
		"linux": map[string]any{
			"cgroup_parent": e.cgroup,
			// The node's network: no CNI (which would make links). The
			// node is containerd's namespace, the test's own.
			"security_context": map[string]any{"namespace_options": map[string]any{"network": 2}},
		},
	})
	ctrConfig := filepath.Join(e.dir, "container.json")
	writeJSONFile(t, ctrConfig, map[string]any{
		"metadata": map[string]any{"name": "hello"},
		"image":    map[string]any{"image": ociBusybox},
		"command":  []string{"/bin/sh", "-c", `trap "echo got TERM; exit 0" TERM; echo hello from a pod; id -u; while :; do sleep 0.1; done`},
		"log_path": "hello.log",
		// Its own PID namespace, as the kubelet asks by default.
		"linux": map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2, "pid": 1}}},
	})

	// A failed test's pods go before containerd does.
	t.Cleanup(func() { _ = exec.Command(crictl, "--config", config, "rmp", "--force", "--all").Run() })
	podID := mustCri("runp", "--runtime", "corral", pod)
	ctrID := mustCri("create", "--no-pull", podID, ctrConfig, pod)
	mustCri("start", ctrID)
	for deadline := time.Now().Add(patience); !strings.Contains(cri("logs", ctrID).stdout, "hello from a pod\n0\n"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the container did not log its greeting within %s: %s", patience, cri("logs", ctrID))
		}
	}
	var inspect struct {
		Status struct{ State string }
		Info   struct {
			Pid            int
			RuntimeType    string
			RuntimeOptions struct {
				BinaryName string `json:"binary_name"`
			}
		}
	}
	if err := json.Unmarshal([]byte(mustCri("inspect", ctrID)), &inspect); err != nil {
		t.Fatal(err)
	}
	if inspect.Status.State != "CONTAINER_RUNNING" || inspect.Info.Pid <= 0 || inspect.Info.RuntimeOptions.BinaryName != e.link {
		t.Errorf("crictl inspect: %+v", inspect)
	}
	// ExecSync (a probe's exec), then Exec through the streaming server
	// (kubectl exec's): both run corral-runc exec.
	r := cri("exec", "-s", ctrID, "sh", "-c", "echo exec sees $(cat /proc/1/cmdline | tr '\\0' ' '); echo to stderr >&2")
	if r.code != 0 || !strings.Contains(r.stdout, "exec sees /bin/sh -c trap") || !strings.Contains(r.stdout, "to stderr") {
		t.Errorf("crictl exec -s: want the container's init seen, and stderr; %s", r)
	}
	if r := cri("exec", "-s", ctrID, "sh", "-c", "exit 4"); r.code == 0 || !strings.Contains(r.stderr, "exited with 4") {
		t.Errorf("crictl exec -s, exit 4: %s", r)
	}
	if r := cri("exec", ctrID, "sh", "-c", "echo streamed; exit 5"); r.stdout != "streamed\n" || !strings.Contains(r.stderr, "exit code 5") {
		t.Errorf("crictl exec, exit 5: %s", r)
	}
	if pids := readCgroupFile(t, "pids", e.cgroup+"/"+ctrID, "pids.max"); pids != "64" {
		t.Errorf("the pod's annotation run.corral.policy/pids-limit=64: the container's pids.max is %q", pids)
	}
	mustCri("update", "--memory", "67108864", ctrID)
	memoryLimit := "memory.limit_in_bytes"
	if host.Mode == cgroup.Unified {
		memoryLimit = "memory.max"
	}
	if lim := readCgroupFile(t, "memory", e.cgroup+"/"+ctrID, memoryLimit); lim != "67108864" {
		t.Errorf("after crictl update --memory 67108864: the container's cgroup limit is %q", lim)
	}
	mustCri("stop", "--timeout", "30", ctrID)
	if logs := cri("logs", ctrID).stdout; !strings.Contains(logs, "got TERM") {
		t.Errorf("crictl stop: the container did not get SIGTERM; its log: %s", logs)
	}
	mustCri("rm", ctrID)

	// A container in the pod's PID namespace leaves a child behind when
	// its init ends: the shim then has corral-runc kill --all, and that
	// must reach the child (in the container's cgroup, not its init's
	// namespace), else the cgroup could not go.
	orphans := filepath.Join(e.dir, "orphans.json")
	writeJSONFile(t, orphans, map[string]any{
		"metadata": map[string]any{"name": "orphans"},
		"image":    map[string]any{"image": ociBusybox},
		"command":  []string{"/bin/sh", "-c", "sleep 1000 & echo left child $!"},
		"log_path": "orphans.log",
		"linux":    map[string]any{"security_context": map[string]any{"namespace_options": map[string]any{"network": 2, "pid": 0}}},
	})
	orphansID := mustCri("create", "--no-pull", podID, orphans, pod)
	mustCri("start", orphansID)
	cg := filepath.Join(host.Mounts["pids"], e.cgroup, orphansID)
	for deadline := time.Now().Add(patience); ; time.Sleep(20 * time.Millisecond) {
		state := mustCri("inspect", "--output", "go-template", "--template", "{{.status.state}}", orphansID)
		procs := cgroupProcs(t, cg)
		if state == "CONTAINER_EXITED" && len(procs) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("container orphans: %s, processes %v in its cgroup %s after %s; its log: %s", state, procs, cg, patience, cri("logs", orphansID))
		}
	}
	wantContains(t, "the orphans' log", cri("logs", orphansID).stdout, "left child")
	mustCri("rm", orphansID)
	e.assertNoContainer(orphansID, e.cgroup+"/"+orphansID)
	mustCri("stopp", podID)
	mustCri("rmp", podID)
	e.assertNoContainer(ctrID, e.cgroup+"/"+ctrID)
	e.assertNoContainer(podID, e.cgroup+"/"+podID)
	if ids, _ := os.ReadDir(e.runtimeRoot); len(ids) > 0 {
		t.Errorf("corral-runc's root is not empty: %v", ids)
	}
	if m := mountsUnder(e.dir); len(m) > 0 {
		t.Errorf("mounts left after the pod's removal: %v", m)
	}
}

// crictlBinary is crictl: on PATH, or in the repository's .cache/bin,
// where `make deps` builds it.
func crictlBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	bin, err := filepath.Abs("../.cache/bin/crictl")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Need(t, exists(bin), "crictl is not installed (make deps builds it into .cache/bin)")
	return bin
}

func writeJSONFile(t *testing.T, path string, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFile waits (at most patience) until the file at path holds want.
func waitFile(t *testing.T, path, want string) {
	t.Helper()
	for deadline := time.Now().Add(patience); ; time.Sleep(20 * time.Millisecond) {
		data, _ := os.ReadFile(path)
		if strings.Contains(string(data), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not hold %q within %s; it holds:\n%s", path, want, patience, data)
		}
	}
}

// regexpLine reports whether a line of text matches expr.
func regexpLine(text, expr string) bool {
	return regexp.MustCompile(`(?m)` + expr).MatchString(text)
}
