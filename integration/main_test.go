// Package integration drives the built corral binary as root and checks,
// from inside and outside real sandboxes, that each promised property
// holds. Run it with `make test` (as root).
package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/cgroup"
)

var (
	// corralBin is the binary under test: $CORRAL_BIN, or one built here.
	corralBin string
	// stateDir and cgroupParent are private to this test run, so it never
	// meets another corral's sandboxes, and leftovers are easy to find.
	stateDir     string
	cgroupParent string
	// dataDir holds the image store of every corral the tests run.
	dataDir string
	host    *cgroup.Host
	workDir string
)

// The main goroutine keeps the main thread for itself. A test that
// unshares a namespace on a locked thread (layeredTree) ends that thread
// when it is done; but Go never ends the main thread, it parks it, in
// the namespace it was left in, and /proc/self (the main thread's view)
// would then show that private mount namespace to every later test.
func init() { runtime.LockOSThread() }

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "integration tests run real sandboxes and need root (run: sudo make test)")
		if os.Getenv("CI") != "" {
			os.Exit(1)
		}
		os.Exit(0)
	}
	code, err := setUpAndRun(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration:", err)
		code = 1
	}
	os.Exit(code)
}

func setUpAndRun(m *testing.M) (int, error) {
	var err error
	// Not under /tmp: the tests check the sandbox's /tmp is private.
	workDir, err = os.MkdirTemp("/var/tmp", "corral-itest-")
	if err != nil {
		return 1, err
	}
	defer os.RemoveAll(workDir)
	// Readable by all, so the not-root test's unprivileged user can run
	// the binary in it; corral keeps its state dir 0700 on its own.
	if err := os.Chmod(workDir, 0o755); err != nil {
		return 1, err
	}
	stateDir = filepath.Join(workDir, "state")
	dataDir = filepath.Join(workDir, "data")
	cgroupParent = fmt.Sprintf("/corral-itest-%d", os.Getpid())
	if host, err = cgroup.Detect(); err != nil {
		return 1, err
	}
	corralBin = os.Getenv("CORRAL_BIN")
	if corralBin == "" {
		corralBin = filepath.Join(workDir, "bin", "corral")
		// Static, as `make build` makes it: the binary is also the init
		// of every sandbox, including roots without a libc.
		build := exec.Command("go", "build", "-tags", "seccomp netgo osusergo",
			"-ldflags", "-linkmode external -extldflags -static", "-o", corralBin, "../cmd/corral")
		if out, err := build.CombinedOutput(); err != nil {
			return 1, fmt.Errorf("build corral: %v\n%s", err, out)
		}
	}
	// The tests' networks live in namespaces they make: the host's own
	// must end as it began (no bridge, no veth).
	linksBefore := hostLinks()
	code := m.Run()
	if after := hostLinks(); after != linksBefore {
		return 1, fmt.Errorf("the host's network namespace changed: links %s before the tests, %s after", linksBefore, after)
	}
	if leftovers := findLeftovers(); len(leftovers) > 0 {
		// Reported as a failure, then removed, so that a failed run does
		// not leave its sandboxes loading the machine.
		removeLeftoverCgroups()
		return 1, fmt.Errorf("leftovers after all tests:\n  %s", strings.Join(leftovers, "\n  "))
	}
	return code, nil
}

// removeLeftoverCgroups kills the processes left in this run's cgroups
// (only there: they are this run's sandboxes) and removes the cgroups,
// deepest first.
func removeLeftoverCgroups() {
	for try := 0; try < 50; try++ {
		busy := false
		for _, root := range host.Roots {
			var dirs []string
			_ = filepath.WalkDir(filepath.Join(root, cgroupParent), func(p string, e os.DirEntry, err error) error {
				if err == nil && e.IsDir() {
					dirs = append(dirs, p)
				}
				return nil
			})
			for i := len(dirs) - 1; i >= 0; i-- {
				for _, pid := range cgroupProcs(nil, dirs[i]) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
					busy = true
				}
				_ = os.Remove(dirs[i])
			}
		}
		if !busy {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// findLeftovers lists every cgroup, mount and state entry of this run's
// sandboxes that still exists.
func findLeftovers() []string {
	var out []string
	for _, root := range host.Roots {
		if _, err := os.Stat(filepath.Join(root, cgroupParent)); err == nil {
			out = append(out, "cgroup "+filepath.Join(root, cgroupParent))
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, workDir) {
			out = append(out, "mount "+line)
		}
	}
	for _, sub := range []string{"sandboxes", "roots", "libcontainer"} {
		entries, _ := os.ReadDir(filepath.Join(stateDir, sub))
		for _, e := range entries {
			if sub != "roots" || !isRootTemplate(e.Name()) {
				out = append(out, "state "+filepath.Join(sub, e.Name()))
			}
		}
	}
	return out
}

// isRootTemplate: the shared tree of read-only built-in roots, which
// stays in the state dir for the next sandbox (as the init's copy does).
func isRootTemplate(name string) bool { return strings.HasPrefix(name, ".template-") }

// result is what one corral command did.
type result struct {
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
}

// corralCmd prepares `corral --state-dir ... run --cgroup-parent ... ARGS`.
func corralCmd(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--state-dir", stateDir, "--data-dir", dataDir}, args...)
	if len(args) > 0 && args[0] == "run" {
		full = append([]string{"--state-dir", stateDir, "--data-dir", dataDir, "run", "--cgroup-parent", cgroupParent}, args[1:]...)
	}
	cmd := exec.CommandContext(ctx, corralBin, full...)
	cmd.Stdin = nil
	return cmd
}

// corral runs corral to completion (at most a minute) and returns what it did.
func corral(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return finish(t, corralCmd(ctx, args...))
}

func finish(t *testing.T, cmd *exec.Cmd) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{stdout: stdout.String(), stderr: stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", cmd.Args, err)
	}
	return r
}

// mustRun runs `corral run ARGS` and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := corral(t, append([]string{"run"}, args...)...)
	if r.code != 0 {
		t.Fatalf("corral run %q: %s", args, r)
	}
	return r
}

// started is a corral run left running in the background. Its output
// goes to files, not pipes: a sandbox that outlives corral (kill -9) keeps
// them open, and a pipe would make waiting for corral wait for it.
type started struct {
	cmd            *exec.Cmd
	name           string
	stdout, stderr *os.File
	done           chan error
}

// startRun starts `corral run --name NAME ARGS` and waits until the
// sandbox's command runs (its init has executed the command, so it is no
// longer corral's own binary).
func startRun(t *testing.T, name string, args ...string) *started {
	t.Helper()
	dir := t.TempDir()
	s := &started{name: name, done: make(chan error, 1)}
	var err error
	if s.stdout, err = os.Create(filepath.Join(dir, "stdout")); err != nil {
		t.Fatal(err)
	}
	if s.stderr, err = os.Create(filepath.Join(dir, "stderr")); err != nil {
		t.Fatal(err)
	}
	s.cmd = corralCmd(context.Background(), append([]string{"run", "--name", name}, args...)...)
	s.cmd.Stdout, s.cmd.Stderr = s.stdout, s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.done <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			// SIGTERM, so that corral removes its sandbox itself: a
			// killed corral leaves it for the next run's sweep, and the
			// test would depend on another test running after it.
			_ = s.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-s.done:
			case <-time.After(15 * time.Second):
				_ = s.cmd.Process.Kill()
				<-s.done
			}
		}
		s.stdout.Close()
		s.stderr.Close()
	})
	deadline := time.Now().Add(10 * time.Second)
	for !commandRunning(t, name) {
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s did not start; stderr: %s", name, s.output(t, s.stderr))
		}
		time.Sleep(10 * time.Millisecond)
	}
	return s
}

func (s *started) output(t *testing.T, f *os.File) string {
	t.Helper()
	data, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// wait waits (at most timeout) for the background corral run to end.
func (s *started) wait(t *testing.T, timeout time.Duration) result {
	t.Helper()
	select {
	case <-s.done:
	case <-time.After(timeout):
		t.Fatalf("corral run %s still running after %s; stderr: %s", s.name, timeout, s.output(t, s.stderr))
	}
	return result{stdout: s.output(t, s.stdout), stderr: s.output(t, s.stderr), code: s.cmd.ProcessState.ExitCode()}
}

// waitOutput waits (at most 10s) until the sandbox's standard output
// holds want: a command that says when it is ready, say after setting up
// its signal traps, which takes a while on a slow (emulated) machine.
func (s *started) waitOutput(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(s.output(t, s.stdout), want) {
		if time.Now().After(deadline) {
			t.Fatalf("sandbox %s did not print %q within 10s; stderr: %s", s.name, want, s.output(t, s.stderr))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (s *started) signal(t *testing.T, sig syscall.Signal) {
	t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// commandRunning reports whether the sandbox's init has executed its
// command: before that it is corral's own binary, setting the sandbox up.
func commandRunning(t *testing.T, name string) bool {
	t.Helper()
	for _, pid := range sandboxPids(t, name) {
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err == nil && !strings.Contains(exe, "corral") && !strings.Contains(exe, "memfd") {
			return true
		}
	}
	return false
}

// sandboxCgroup is the directory of a sandbox's cgroup in the hierarchy
// that holds controller.
func sandboxCgroup(controller, name string) string {
	return filepath.Join(host.Mounts[controller], cgroupParent, name)
}

// sandboxPids lists the host PIDs in a sandbox's cgroup.
func sandboxPids(t *testing.T, name string) []int {
	t.Helper()
	pids, err := host.Procs(filepath.Join(cgroupParent, name))
	if err != nil {
		t.Fatal(err)
	}
	return pids
}

// assertNoLeftovers fails the test if any sandbox of this run left state.
func assertNoLeftovers(t *testing.T) {
	t.Helper()
	if l := findLeftovers(); len(l) > 0 {
		t.Fatalf("leftovers:\n  %s", strings.Join(l, "\n  "))
	}
}

func wantContains(t *testing.T, what, got, want string) {
	t.Helper()
	if !strings.Contains(got, want) {
		t.Errorf("%s: want it to contain %q; got:\n%s", what, want, got)
	}
}

// sharedDir is a directory that sandboxes may write through a bind: in
// its own user namespace a sandbox's root is not host root, and
// t.TempDir's directories are root's alone (0700).
func sharedDir(t *testing.T) string {
	t.Helper()
	dir := passableDir(t)
	if err := os.Chmod(dir, 0o1777); err != nil {
		t.Fatal(err)
	}
	return dir
}

// passableDir is a t.TempDir that a sandbox's root, in its own user
// namespace, can reach (a directory rootfs must be): the directories
// above it open to search.
func passableDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// hostLinks names the links of this process's network namespace.
func hostLinks() string {
	ifs, err := net.Interfaces()
	if err != nil {
		return "unknown: " + err.Error()
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	return strings.Join(names, ",")
}
