package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

var daemonSeq atomic.Int32

// daemonProc is a `corral daemon` run by a test, with its own state dir,
// log dir and cgroup parent.
type daemonProc struct {
	t        *testing.T
	dir      string
	config   string
	stateDir string
	logDir   string
	cgroup   string
	// dataDir is its image store: the one all tests share, unless a test
	// needs one of its own.
	dataDir string
	// netns, when set, is the network namespace (a file) it runs in.
	netns    string
	services string
	// daemonExtra is more of the daemon section (indented by two spaces).
	daemonExtra string
	cmd         *exec.Cmd
	done        chan struct{}
	out         *os.File
}

// newDaemon prepares a daemon whose service file is services (the YAML
// under "services:", indented by two spaces) with the test's daemon
// section; start runs it.
func newDaemon(t *testing.T, services string) *daemonProc {
	t.Helper()
	n := daemonSeq.Add(1)
	d := &daemonProc{t: t, dir: t.TempDir()}
	d.config = filepath.Join(d.dir, "corral.yaml")
	d.stateDir = filepath.Join(workDir, fmt.Sprintf("daemon-%d", n))
	d.logDir = filepath.Join(d.dir, "logs")
	d.cgroup = fmt.Sprintf("%s/daemon-%d", cgroupParent, n)
	d.dataDir = dataDir
	d.write(services)
	return d
}

func (d *daemonProc) write(services string) {
	d.t.Helper()
	d.services = services
	body := fmt.Sprintf("daemon:\n  cgroup_parent: %s\n  log_dir: %s\n%sservices:\n%s", d.cgroup, d.logDir, d.daemonExtra, services)
	if err := os.WriteFile(d.config, []byte(body), 0o644); err != nil {
		d.t.Fatal(err)
	}
}

// start runs the daemon and waits until its socket answers.
func (d *daemonProc) start() *daemonProc {
	t := d.t
	t.Helper()
	var err error
	if d.out, err = os.Create(filepath.Join(d.dir, fmt.Sprintf("daemon-%d.log", time.Now().UnixNano()))); err != nil {
		t.Fatal(err)
	}
	d.cmd = exec.Command(corralBin, "--state-dir", d.stateDir, "--data-dir", d.dataDir, "daemon", "--config", d.config)
	if d.netns != "" {
		// nsenter executes corral: the same process, in that namespace.
		nsenter, err := exec.LookPath("nsenter")
		if err != nil {
			t.Fatal(err)
		}
		d.cmd.Args = append([]string{nsenter, "--net=" + d.netns, "--"}, d.cmd.Args...)
		d.cmd.Path = nsenter
	}
	d.cmd.Stdout, d.cmd.Stderr = d.out, d.out
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	d.done = make(chan struct{})
	go func() { _ = d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			_ = d.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-d.done:
			case <-time.After(30 * time.Second):
				_ = d.cmd.Process.Kill()
				t.Errorf("daemon did not stop within 30s after SIGTERM; log:\n%s", d.log())
			}
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := api.NewClient(filepath.Join(d.stateDir, "corral.sock")).List(context.Background()); err == nil {
			return d
		}
		select {
		case <-d.done:
			t.Fatalf("daemon exited at start; log:\n%s", d.log())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon socket not up after 20s; log:\n%s", d.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d *daemonProc) log() string {
	data, _ := os.ReadFile(d.out.Name())
	return string(data)
}

// stop sends SIGTERM, expects exit 0, and checks nothing is left behind.
func (d *daemonProc) stop() {
	t := d.t
	t.Helper()
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("daemon still running 30s after SIGTERM; log:\n%s", d.log())
	}
	if code := d.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("daemon exited %d after SIGTERM; log:\n%s", code, d.log())
	}
	d.assertClean()
}

// assertClean checks that no cgroup, sandbox state or socket of the
// daemon is left.
func (d *daemonProc) assertClean() {
	t := d.t
	t.Helper()
	var left []string
	for _, root := range host.Roots {
		if _, err := os.Stat(filepath.Join(root, d.cgroup)); err == nil {
			left = append(left, "cgroup "+filepath.Join(root, d.cgroup))
		}
	}
	for _, sub := range []string{"sandboxes", "roots", "libcontainer"} {
		entries, _ := os.ReadDir(filepath.Join(d.stateDir, sub))
		for _, e := range entries {
			if sub != "roots" || !isRootTemplate(e.Name()) {
				left = append(left, "state "+filepath.Join(sub, e.Name()))
			}
		}
	}
	if _, err := os.Stat(filepath.Join(d.stateDir, "corral.sock")); err == nil {
		left = append(left, "socket")
	}
	if mounts, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mounts), "\n") {
			if strings.Contains(line, " "+d.stateDir+"/") {
				left = append(left, "mount "+line)
			}
		}
	}
	if len(left) > 0 {
		t.Fatalf("daemon left behind:\n  %s\nlog:\n%s", strings.Join(left, "\n  "), d.log())
	}
}

// ctl runs a corral client command against the daemon.
func (d *daemonProc) ctl(args ...string) result {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return finish(d.t, exec.CommandContext(ctx, corralBin, append([]string{"--state-dir", d.stateDir, "--data-dir", d.dataDir}, args...)...))
}

// status reads one service's detail through the API.
func (d *daemonProc) status(name string) *api.ServiceDetail {
	d.t.Helper()
	st, err := api.NewClient(filepath.Join(d.stateDir, "corral.sock")).Status(context.Background(), name)
	if err != nil {
		d.t.Fatalf("status %s: %v", name, err)
	}
	return st
}

// waitFor polls a service's status until ok says so (at most timeout).
func (d *daemonProc) waitFor(name string, timeout time.Duration, what string, ok func(*api.ServiceDetail) bool) *api.ServiceDetail {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := d.status(name)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(st, "", "  ")
			d.t.Fatalf("service %s: not %s after %s; status:\n%s\ndaemon log:\n%s", name, what, timeout, js, d.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (d *daemonProc) waitRunning(name string) *api.ServiceDetail {
	d.t.Helper()
	return d.waitFor(name, 10*time.Second, "running", func(st *api.ServiceDetail) bool { return st.State == "running" && st.PID != 0 })
}

// kill9 kills the daemon with SIGKILL, as a crash would, and waits for it
// to be gone. Its sandboxes keep running; if the test ends without
// starting a daemon again, cleanup starts one to adopt and stop them.
func (d *daemonProc) kill9() {
	t := d.t
	t.Helper()
	if err := d.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-d.done
	t.Cleanup(func() {
		select {
		case <-d.done:
			if left, _ := os.ReadDir(filepath.Join(d.stateDir, "sandboxes")); len(left) > 0 {
				d.start().stop()
			}
		default:
		}
	})
}

// restart starts the daemon again on the same state dir.
func (d *daemonProc) restart() *daemonProc { return d.start() }

// sandboxInits lists, for each cgroup directly under the daemon's cgroup
// parent, the processes whose parent is outside that cgroup: the inits
// of the sandboxes living there. One sandbox per service means exactly
// one such process per cgroup.
func (d *daemonProc) sandboxInits() map[string][]int {
	d.t.Helper()
	out := map[string][]int{}
	root := host.Mounts["pids"] // on v2, the unified mount
	entries, _ := os.ReadDir(filepath.Join(root, d.cgroup))
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		pids := cgroupProcs(d.t, filepath.Join(root, d.cgroup, e.Name()))
		in := map[int]bool{}
		for _, p := range pids {
			in[p] = true
		}
		out[e.Name()] = []int{}
		for _, p := range pids {
			if ppid := parentPID(p); ppid != 0 && !in[ppid] { // 0: gone meanwhile
				out[e.Name()] = append(out[e.Name()], p)
			}
		}
	}
	return out
}

func cgroupProcs(t *testing.T, dir string) []int {
	data, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(string(data)) {
		var p int
		if _, err := fmt.Sscan(f, &p); err == nil {
			pids = append(pids, p)
		}
	}
	return pids
}

// parentPID is field 4 of /proc/PID/stat (0 if the process is gone).
func parentPID(pid int) int {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := strings.LastIndexByte(string(data), ')')
	fields := strings.Fields(string(data[i+1:]))
	var ppid int
	if len(fields) > 1 {
		fmt.Sscan(fields[1], &ppid)
	}
	return ppid
}

// waitLogged waits until the service's log holds a line ending in text.
func (d *daemonProc) waitLogged(name, text string) {
	d.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, _ := os.ReadFile(filepath.Join(d.logDir, name, "output.log"))
		for _, line := range strings.Split(string(data), "\n") {
			if strings.HasSuffix(line, " "+text) {
				return
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("service %s never logged %q; log:\n%s\ndaemon log:\n%s", name, text, data, d.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeDaemon adds lines to the daemon section of the service file.
func (d *daemonProc) writeDaemon(extra string) {
	d.t.Helper()
	d.daemonExtra = extra
	d.write(d.services)
}
