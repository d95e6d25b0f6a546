package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// The OCI runtime front end, driven as containerd's shim drives runc:
// global --root, --log and --log-format json, then the command.

// corralRunc is the path of a corral-runc link to the corral under test.
func corralRunc(t *testing.T) string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "corral-runc")
	abs, err := filepath.Abs(corralBin)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(abs, link); err != nil {
		t.Fatal(err)
	}
	return link
}

// ociRuntime is corral-runc with a root and a JSON log of the test's own.
type ociRuntime struct {
	t         *testing.T
	bin, root string
	log       string
	policy    string
}

func newOCIRuntime(t *testing.T) *ociRuntime {
	dir := t.TempDir()
	rt := &ociRuntime{t: t, bin: corralRunc(t), root: filepath.Join(dir, "root"), log: filepath.Join(dir, "log.json")}
	t.Cleanup(func() {
		// Whatever a failed test left: delete --force, by ID.
		ents, _ := os.ReadDir(rt.root)
		for _, e := range ents {
			_ = exec.Command(rt.bin, "--root", rt.root, "delete", "--force", e.Name()).Run()
		}
	})
	return rt
}

func (rt *ociRuntime) cmd(args ...string) *exec.Cmd {
	full := []string{"--root", rt.root, "--log", rt.log, "--log-format", "json"}
	if rt.policy != "" {
		full = append(full, "--policy", rt.policy)
	}
	return exec.Command(rt.bin, append(full, args...)...)
}

func (rt *ociRuntime) run(args ...string) result {
	rt.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := rt.cmd(args...)
	cmd = exec.CommandContext(ctx, cmd.Path, cmd.Args[1:]...)
	return finish(rt.t, cmd)
}

// lastError is the message of the log's last error line, as containerd
// reads it.
func (rt *ociRuntime) lastError() string {
	rt.t.Helper()
	f, err := os.Open(rt.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	var msg string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var line struct{ Level, Msg string }
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			rt.t.Errorf("a log line is not JSON: %q", sc.Text())
			continue
		}
		if line.Level == "error" {
			msg = line.Msg
		}
	}
	return msg
}

// refused checks that r failed as runc does (exit 1) with want in the
// log's last error.
func (rt *ociRuntime) refused(what string, r result, want string) {
	rt.t.Helper()
	if r.code != 1 {
		rt.t.Errorf("%s: exit %d, want 1: %s", what, r.code, r)
	}
	if msg := rt.lastError(); !strings.Contains(msg, want) {
		rt.t.Errorf("%s: the log's last error is %q, want it to say %q", what, msg, want)
	}
}

func (rt *ociRuntime) state(id string) rspec.State {
	rt.t.Helper()
	r := rt.run("state", id)
	var st rspec.State
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &st) != nil {
		rt.t.Fatalf("state %s: %s", id, r)
	}
	return st
}

// assertEmpty checks that the runtime's root holds no container and the
// test's OCI cgroups are gone.
func (rt *ociRuntime) assertEmpty(ids ...string) {
	rt.t.Helper()
	ents, _ := os.ReadDir(rt.root)
	for _, e := range ents {
		rt.t.Errorf("left under the runtime's root: %s", e.Name())
	}
	for _, id := range ids {
		for _, c := range []string{"memory", "pids", "cpu", "unified"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", c, ociCgroup(id))); err == nil {
				rt.t.Errorf("cgroup %s of %s left", c, id)
			}
		}
	}
}

// ociCgroup is the cgroup of the test's container id: one level only, as
// the runtime (as runc) removes the container's cgroup but not the
// parents it made, which are the caller's.
func ociCgroup(id string) string { return cgroupParent + "-oci-" + id }

// ociBundle is a bundle whose root is the host's static busybox and
// whose process runs args, in a cgroup under the test run's.
func ociBundle(t *testing.T, id string, args ...string) (string, *rspec.Spec) {
	t.Helper()
	dir := passableDir(t)
	bin := filepath.Join(dir, "rootfs", "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(bin, "busybox")).CombinedOutput(); err != nil {
		t.Fatalf("copy busybox: %v %s", err, out)
	}
	for _, applet := range []string{"sh", "echo", "cat", "sleep", "grep", "id", "hostname", "true"} {
		if err := os.Symlink("busybox", filepath.Join(bin, applet)); err != nil {
			t.Fatal(err)
		}
	}
	if r := finish(t, exec.Command(corralBin, "oci", "spec", "--bundle", dir)); r.code != 0 {
		t.Fatalf("corral oci spec: %s", r)
	}
	data, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var s rspec.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	s.Process.Terminal = false
	s.Process.Args = args
	s.Process.Env = append(s.Process.Env, "PATH=/bin")
	s.Linux.CgroupsPath = ociCgroup(id)
	writeSpec(t, dir, &s)
	return dir, &s
}

func writeSpec(t *testing.T, dir string, s *rspec.Spec) {
	t.Helper()
	data, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// create runs create with the container's stdout and stderr in a file,
// and returns the file and the init's PID from --pid-file.
func (rt *ociRuntime) create(id, bundle string) (string, int) {
	rt.t.Helper()
	out := filepath.Join(rt.t.TempDir(), "out")
	pidFile := filepath.Join(rt.t.TempDir(), "pid")
	f, err := os.Create(out)
	if err != nil {
		rt.t.Fatal(err)
	}
	defer f.Close()
	cmd := rt.cmd("create", "--bundle", bundle, "--pid-file", pidFile, id)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Run(); err != nil {
		data, _ := os.ReadFile(out)
		rt.t.Fatalf("create %s: %v: %s; log: %q", id, err, data, rt.lastError())
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		rt.t.Fatal(err)
	}
	pid, err := strconv.Atoi(string(data))
	if err != nil {
		rt.t.Fatalf("pid file: %q", data)
	}
	return out, pid
}

// waitStatus waits until the container's status is want.
func (rt *ociRuntime) waitStatus(id string, want rspec.ContainerState) rspec.State {
	rt.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		st := rt.state(id)
		if st.Status == want {
			return st
		}
		if time.Now().After(deadline) {
			rt.t.Fatalf("%s: status %s after 15s, want %s", id, st.Status, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestOCILifecycle: create leaves the process waiting (state created,
// its PID in the pid file), start runs it with the caller's stdio, the
// state follows, delete leaves nothing; then the container is unknown.
func TestOCILifecycle(t *testing.T) {
	rt := newOCIRuntime(t)
	id := "life"
	bundle, _ := ociBundle(t, id, "sh", "-c", "echo hello from $(hostname); grep -E '^(CapEff|NoNewPrivs)' /proc/self/status")
	out, pid := rt.create(id, bundle)
	st := rt.state(id)
	if st.Status != rspec.StateCreated || st.Pid != pid || st.Bundle != bundle || st.ID != id {
		t.Errorf("after create: %+v (pid file %d, bundle %s)", st, pid, bundle)
	}
	if data, _ := os.ReadFile(out); len(data) != 0 {
		t.Errorf("the process ran before start: %q", data)
	}
	if r := rt.run("start", id); r.code != 0 {
		t.Fatalf("start: %s", r)
	}
	rt.waitStatus(id, rspec.StateStopped)
	data, _ := os.ReadFile(out)
	if !strings.Contains(string(data), "hello from runc") || !strings.Contains(string(data), "NoNewPrivs:\t1") {
		t.Errorf("the container's output: %q", data)
	}
	if r := rt.run("start", id); r.code != 1 {
		t.Errorf("a second start: %s", r)
	}
	if r := rt.run("delete", id); r.code != 0 {
		t.Fatalf("delete: %s", r)
	}
	rt.refused("state after delete", rt.run("state", id), "container does not exist")
	rt.assertEmpty(id)
}

// TestOCIExecPsEventsPauseKill: on a running container, exec in the
// foreground (its exit status is exec's) and detached (its PID in the pid
// file), ps, events --stats, pause and resume, update, kill; delete
// --force of a running one.
func TestOCIExecPsEventsPauseKill(t *testing.T) {
	rt := newOCIRuntime(t)
	id := "busy"
	bundle, _ := ociBundle(t, id, "sleep", "1000")
	_, pid := rt.create(id, bundle)
	if r := rt.run("start", id); r.code != 0 {
		t.Fatalf("start: %s", r)
	}
	rt.waitStatus(id, rspec.StateRunning)

	r := rt.run("exec", id, "sh", "-c", "echo in $(hostname); exit 3")
	if r.code != 3 || strings.TrimSpace(r.stdout) != "in runc" {
		t.Errorf("exec in the foreground: %s", r)
	}
	proc := filepath.Join(t.TempDir(), "process.json")
	body, _ := json.Marshal(rspec.Process{Args: []string{"sleep", "999"}, Cwd: "/", Env: []string{"PATH=/bin"}})
	if err := os.WriteFile(proc, body, 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(t.TempDir(), "exec.pid")
	// Detached, the process keeps exec's stdio (the caller's fifos under
	// containerd): not a pipe the test waits to see closed.
	detached := rt.cmd("exec", "--process", proc, "--detach", "--pid-file", pidFile, id)
	if err := detached.Run(); err != nil {
		t.Fatalf("exec --detach: %v; log: %q", err, rt.lastError())
	}
	data, _ := os.ReadFile(pidFile)
	execPid, _ := strconv.Atoi(string(data))
	r = rt.run("ps", "--format", "json", id)
	var pids []int
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &pids) != nil || !containsInt(pids, pid) || !containsInt(pids, execPid) {
		t.Errorf("ps --format json: %s (init %d, exec %d)", r, pid, execPid)
	}
	r = rt.run("events", "--stats", id)
	var ev struct {
		Type string
		ID   string
		Data struct{ Pids struct{ Current uint64 } }
	}
	if r.code != 0 || json.Unmarshal([]byte(r.stdout), &ev) != nil || ev.Type != "stats" || ev.ID != id || ev.Data.Pids.Current != 2 {
		t.Errorf("events --stats: %s", r)
	}
	if r := rt.run("pause", id); r.code != 0 || rt.state(id).Status != rspec.ContainerState("paused") {
		t.Errorf("pause: %s", r)
	}
	if r := rt.run("resume", id); r.code != 0 || rt.state(id).Status != rspec.StateRunning {
		t.Errorf("resume: %s", r)
	}
	res := filepath.Join(t.TempDir(), "res.json")
	if err := os.WriteFile(res, []byte(`{"pids":{"limit":42}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := rt.run("update", "--resources", res, id); r.code != 0 {
		t.Errorf("update: %s", r)
	}
	if got := readCgroupFile(t, "pids", ociCgroup(id), "pids.max"); got != "42" {
		t.Errorf("pids.max after update: %q", got)
	}
	if r := rt.run("delete", id); r.code != 1 {
		t.Errorf("delete of a running container without --force: %s", r)
	}
	if r := rt.run("kill", id, "KILL"); r.code != 0 {
		t.Errorf("kill: %s", r)
	}
	rt.waitStatus(id, rspec.StateStopped)
	if r := rt.run("kill", "--all", id, "KILL"); r.code != 0 {
		t.Errorf("kill --all of a stopped container: %s", r)
	}
	if r := rt.run("delete", id); r.code != 0 {
		t.Errorf("delete: %s", r)
	}
	// delete --force of a running one, and of one never started.
	for _, start := range []bool{true, false} {
		id := fmt.Sprintf("force-%v", start)
		bundle, _ := ociBundle(t, id, "sleep", "1000")
		_, pid := rt.create(id, bundle)
		if start {
			if r := rt.run("start", id); r.code != 0 {
				t.Fatalf("start: %s", r)
			}
		}
		if r := rt.run("delete", "--force", id); r.code != 0 {
			t.Errorf("delete --force (started %v): %s", start, r)
		}
		if processRunning(pid) {
			t.Errorf("the init %d of %s still runs", pid, id)
		}
		rt.assertEmpty(id)
	}
	rt.assertEmpty("busy")
}

func containsInt(xs []int, x int) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func readCgroupFile(t *testing.T, controller, path, file string) string {
	t.Helper()
	for _, base := range []string{filepath.Join("/sys/fs/cgroup", controller), "/sys/fs/cgroup"} {
		if data, err := os.ReadFile(filepath.Join(base, path, file)); err == nil {
			return strings.TrimSpace(string(data))
		}
	}
	t.Errorf("no %s of %s", file, path)
	return ""
}

// TestOCIBadInput: each bad input fails with runc's exit code and a
// message naming the problem in the JSON log, and leaves nothing.
func TestOCIBadInput(t *testing.T) {
	rt := newOCIRuntime(t)
	bundle, s := ociBundle(t, "bad", "true")
	cfg := filepath.Join(bundle, "config.json")
	good, _ := os.ReadFile(cfg)

	if err := os.WriteFile(cfg, []byte(`{"ociVersion": "1.0.2", "process": `), 0o644); err != nil {
		t.Fatal(err)
	}
	rt.refused("a malformed config.json", rt.run("create", "--bundle", bundle, "bad"), "malformed spec")
	// An unknown field is ignored, as the runtime spec has it, with a
	// warning naming it; a policy may refuse it.
	if err := os.WriteFile(cfg, []byte(strings.Replace(string(good), `"hostname"`, `"hostnmae"`, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	rt.create("unknown", bundle)
	if log, _ := os.ReadFile(rt.log); !strings.Contains(string(log), `ignoring unknown field \"hostnmae\"`) {
		t.Errorf("no warning naming the unknown field in the log:\n%s", log)
	}
	if r := rt.run("delete", "unknown"); r.code != 0 {
		t.Errorf("delete: %s", r)
	}
	rt.policy = filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(rt.policy, []byte("unknown_fields: refuse\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt.refused("an unknown field under unknown_fields: refuse", rt.run("create", "--bundle", bundle, "bad"), `unknown field "hostnmae"`)
	rt.policy = ""
	s.Root.Path = "norootfs"
	writeSpec(t, bundle, s)
	rt.refused("a bundle without its rootfs", rt.run("create", "--bundle", bundle, "bad"), `root.path "norootfs"`)
	s.Root.Path = "rootfs"
	writeSpec(t, bundle, s)
	for _, id := range []string{"a/b", "..", "x..y/z", ""} {
		r := rt.run("create", "--bundle", bundle, id)
		if r.code != 1 {
			t.Errorf("create with ID %q: %s", id, r)
		}
	}
	rt.refused("state of a missing container", rt.run("state", "ghost"), "container does not exist")
	rt.refused("kill of a missing container", rt.run("kill", "ghost", "KILL"), "container does not exist")
	rt.refused("delete of a missing container", rt.run("delete", "ghost"), "container does not exist")
	rt.refused("an unknown signal", rt.run("kill", "ghost", "SIGFOO"), "unknown signal")

	// A duplicate ID is refused, the first container untouched.
	_, pid := rt.create("dup", bundle)
	rt.refused("a duplicate ID", rt.run("create", "--bundle", bundle, "dup"), "container with given ID already exists")
	if st := rt.state("dup"); st.Status != rspec.StateCreated || st.Pid != pid {
		t.Errorf("the first dup after the refused second: %+v", st)
	}
	if r := rt.run("delete", "dup"); r.code != 0 {
		t.Errorf("delete of a created container: %s", r)
	}

	// A terminal with a console socket nobody listens on.
	s.Process.Terminal = true
	writeSpec(t, bundle, s)
	sock := filepath.Join(t.TempDir(), "console.sock")
	rt.refused("a console socket that does not answer", rt.run("create", "--bundle", bundle, "--console-socket", sock, "tty"), "console socket")
	rt.refused("a terminal without a console socket", rt.run("create", "--bundle", bundle, "tty"), "--console-socket")
	rt.assertEmpty("bad", "dup", "tty", "unknown")
}

// TestOCIPolicy: a policy file tightens (default seccomp, a pids
// ceiling) and refuses (no user namespace), with the refusal in the log.
func TestOCIPolicy(t *testing.T) {
	rt := newOCIRuntime(t)
	rt.policy = filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(rt.policy, []byte("seccomp: default\nprivileged: refuse\npids_limit: 77\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	id := "tight"
	bundle, _ := ociBundle(t, id, "sh", "-c", "grep -E '^Seccomp:' /proc/self/status; sleep 1000")
	out, _ := rt.create(id, bundle)
	if got := readCgroupFile(t, "pids", ociCgroup(id), "pids.max"); got != "77" {
		t.Errorf("pids.max under the policy: %q", got)
	}
	if r := rt.run("start", id); r.code != 0 {
		t.Fatal(r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, _ := os.ReadFile(out)
		if strings.Contains(string(data), "Seccomp:\t2") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no seccomp filter under the policy: %q", data)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := rt.run("delete", "--force", id); r.code != 0 {
		t.Error(r)
	}

	if err := os.WriteFile(rt.policy, []byte("user_namespace: required\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt.refused("no user namespace", rt.run("create", "--bundle", bundle, "nouserns"), "refused by corral's runtime policy: linux.namespaces: no user namespace")
	if err := os.WriteFile(rt.policy, []byte("user_namespce: required\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	rt.refused("a misspelt policy", rt.run("create", "--bundle", bundle, "typo"), "user_namespce")
	rt.assertEmpty(id, "nouserns", "typo")
}
