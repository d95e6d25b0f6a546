package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

// blockOf reads the host ID that a process's user namespace maps its 0
// to (its block), from /proc/PID/uid_map; 0 for the host's namespace.
func blockOf(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/uid_map", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		t.Fatalf("uid_map of %d: %q", pid, data)
	}
	if f[0] == "0" && f[1] == "0" && f[2] == "4294967295" {
		return 0
	}
	if f[0] != "0" || f[2] != "65536" {
		t.Fatalf("uid_map of %d: %q, want 0 BLOCK 65536", pid, data)
	}
	b, _ := strconv.ParseUint(f[1], 10, 32)
	return b
}

// hostUID is the real uid of a process as the host sees it.
func hostUID(t *testing.T, pid int) uint64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "Uid:"); ok {
			n, _ := strconv.ParseUint(strings.Fields(rest)[0], 10, 32)
			return n
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return 0
}

// TestUserNamespaceMapsABlock: inside, the service is root (or its
// user:) as before and /proc/self/uid_map shows its block: aligned to
// 65536, never the host's first; on the host its processes run as the
// block's IDs.
func TestUserNamespaceMapsABlock(t *testing.T) {
	r := mustRun(t, "--", "/bin/sh", "-c", "id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map")
	f := strings.Fields(r.stdout)
	if len(f) != 8 || f[0] != "0" || f[1] != "0" || f[2] != "0" || f[4] != "65536" || f[5] != "0" || f[6] != f[3] || f[7] != "65536" {
		t.Fatalf("inside: %q; want uid and gid 0, and 0 BLOCK 65536 for both maps", r.stdout)
	}
	block, _ := strconv.ParseUint(f[3], 10, 32)
	if block < 65536 || block%65536 != 0 {
		t.Errorf("block %d: want aligned to 65536, above the host's first block", block)
	}
	// Its private scratch belongs to its root; nested user namespaces
	// stay refused by the default seccomp profile.
	r = mustRun(t, "--", "/bin/sh", "-c", "stat -c %u /tmp /run /dev/shm; unshare -U true 2>/dev/null && echo nested || echo no-nested")
	if got := strings.Fields(r.stdout); len(got) != 4 || got[0] != "0" || got[1] != "0" || got[2] != "0" || got[3] != "no-nested" {
		t.Errorf("scratch owners and nested user namespace: %q; want 0 0 0 no-nested", r.stdout)
	}

	s := startRun(t, "userns-host-uid", "--user", "1000", "--", "/bin/sleep", "30")
	pids := sandboxPids(t, s.name)
	if len(pids) == 0 {
		t.Fatal("no process in the sandbox")
	}
	for _, pid := range pids {
		b := blockOf(t, pid)
		if uid := hostUID(t, pid); b == 0 || (uid != b && uid != b+1000) {
			t.Errorf("pid %d runs as host uid %d; want its block %d's (0 or 1000 inside)", pid, uid, b)
		}
	}
}

// TestHostUserWithTheServicesUIDCannotTouchIt: a host user whose uid is
// the service's inside uid can neither signal it nor read its
// environment; in the host's user namespace (the control) it could.
func TestHostUserWithTheServicesUIDCannotTouchIt(t *testing.T) {
	asUser := func(pid int, what string) error {
		var cmd *exec.Cmd
		switch what {
		case "signal":
			cmd = exec.Command("/bin/kill", "-0", strconv.Itoa(pid))
		case "environ":
			cmd = exec.Command("/bin/cat", fmt.Sprintf("/proc/%d/environ", pid))
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 1000, Gid: 1000}}
		return cmd.Run()
	}
	for _, tc := range []struct {
		userns  string
		reaches bool
	}{{"private", false}, {"host", true}} {
		s := startRun(t, "userns-ptrace-"+tc.userns, "--userns", tc.userns, "--user", "1000", "--env", "SECRET=x", "--", "/bin/sleep", "30")
		var pid int
		for _, p := range sandboxPids(t, s.name) {
			if data, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", p)); strings.TrimSpace(string(data)) == "sleep" {
				pid = p
			}
		}
		if pid == 0 {
			t.Fatalf("%s: no sleep in the sandbox", tc.userns)
		}
		for _, what := range []string{"signal", "environ"} {
			if err := asUser(pid, what); (err == nil) != tc.reaches {
				t.Errorf("user_namespace %s: host uid 1000 %s the service (uid 1000 inside): err %v", tc.userns, what, err)
			}
		}
	}
}

// TestBindsUnderAUserNamespace: a file written through a writable bind is
// owned on the host by the block (never host root); a bind with idmap
// shows its host owners unchanged inside, one without shows them as
// nobody.
func TestBindsUnderAUserNamespace(t *testing.T) {
	dir := sharedDir(t)
	if err := os.WriteFile(filepath.Join(dir, "roots"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := mustRun(t, "--mount", dir+":/data:rw", "--", "/bin/sh", "-c", "echo hi > /data/written; stat -c %u /data/roots; cat /proc/self/uid_map")
	f := strings.Fields(r.stdout)
	if len(f) != 4 || f[0] != "65534" {
		t.Fatalf("without idmap: %q; want a host root's file shown as 65534", r.stdout)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(dir, "written"), &st); err != nil {
		t.Fatal(err)
	}
	if strconv.FormatUint(uint64(st.Uid), 10) != f[2] || st.Uid == 0 {
		t.Errorf("a file written through the bind is owned by host uid %d; want the block's %s", st.Uid, f[2])
	}
	r = corral(t, "run", "--mount", dir+":/data:rw,idmap", "--", "/bin/sh", "-c", "stat -c %u /data/roots; echo hi > /data/idmapped")
	if r.code == 125 && strings.Contains(r.stderr, "cannot id-map a mount of "+dir) {
		// A kernel or filesystem without id-mapped mounts (tmpfs before
		// 6.3: the cgroup v2 VM's): refused before anything ran, saying
		// what and what to do.
		t.Logf("this host cannot id-map %s: %s", dir, strings.TrimSpace(r.stderr))
		wantContains(t, "the refusal", r.stderr, "drop idmap from")
		return
	}
	if r.code != 0 {
		t.Fatalf("idmap bind: %s", r)
	}
	if strings.TrimSpace(r.stdout) != "0" {
		t.Errorf("with idmap: the host root's file shows as %q inside, want 0", r.stdout)
	}
	if err := syscall.Stat(filepath.Join(dir, "idmapped"), &st); err != nil || st.Uid != 0 {
		t.Errorf("with idmap, a file the sandbox's root writes is host uid %d (%v), want 0", st.Uid, err)
	}
}

// TestNetworkHostUnderAUserNamespace: the host's network in a user
// namespace starts (sysfs is bound, not mounted) and sees the host's
// interfaces.
func TestNetworkHostUnderAUserNamespace(t *testing.T) {
	r := mustRun(t, "--network", "host", "--", "/bin/sh", "-c", "ls /sys/class/net; cat /proc/self/uid_map")
	if !strings.Contains(r.stdout, "lo") || strings.Contains(r.stdout, "4294967295") {
		t.Errorf("network host: %q", r.stdout)
	}
}

// TestDaemonBlocksAreDisjointAndSticky: 20 services get 20 blocks; each
// keeps its block across a restart and across the daemon's kill -9 and
// adoption; a removed service's block is free again.
func TestDaemonBlocksAreDisjointAndSticky(t *testing.T) {
	var services strings.Builder
	for i := range 20 {
		fmt.Fprintf(&services, "  s%02d:\n    command: [/bin/sleep, \"1000\"]\n    resources: {memory: 32M}\n", i)
	}
	d := newDaemon(t, services.String()).start()
	blocks := map[string]uint64{}
	seen := map[uint64]string{}
	for i := range 20 {
		name := fmt.Sprintf("s%02d", i)
		b := blockOf(t, d.waitRunning(name).PID)
		if other, ok := seen[b]; ok || b == 0 || b%65536 != 0 {
			t.Fatalf("%s has block %d (also %q's)", name, b, other)
		}
		blocks[name], seen[b] = b, name
	}
	if r := d.ctl("restart", "s03"); r.code != 0 {
		t.Fatal(r)
	}
	st := d.waitFor("s03", 10*time.Second, "restarted", func(st *api.ServiceDetail) bool { return st.State == "running" && len(st.Exits) > 0 })
	if b := blockOf(t, st.PID); b != blocks["s03"] {
		t.Errorf("s03 restarted with block %d, had %d", b, blocks["s03"])
	}
	d.kill9()
	d.restart()
	for name, want := range blocks {
		if b := blockOf(t, d.waitRunning(name).PID); b != want {
			t.Errorf("%s after kill -9 and adoption: block %d, had %d", name, b, want)
		}
	}
	// The state dir records each block as symlinks: n.NAME -> BLOCK.
	recorded := func(name string) (uint64, bool) {
		target, err := os.Readlink(filepath.Join(d.stateDir, "idmap", "n."+name))
		if err != nil {
			return 0, false
		}
		b, err := strconv.ParseUint(target, 10, 32)
		return b, err == nil
	}
	if b, ok := recorded("s05"); !ok || b != blocks["s05"] {
		t.Fatalf("state dir's block of s05: %d (%v), want %d", b, ok, blocks["s05"])
	}
	d.write(strings.Replace(services.String(), "  s05:\n    command: [/bin/sleep, \"1000\"]\n    resources: {memory: 32M}\n", "", 1))
	if r := d.ctl("reload"); r.code != 0 {
		t.Fatal(r)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, ok := recorded("s05"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("s05 removed, its block still held")
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.stop()
}

// TestAuditScores: the hardened default scores low, a loosened service
// high, --fail-above fails on it, and the daemon reports the same as the
// file.
func TestAuditScores(t *testing.T) {
	d := newDaemon(t, `
  tight:
    command: [/bin/sleep, "1000"]
    resources: {memory: 64M, cpus: 0.5}
  loose:
    command: [/bin/sleep, "1000"]
    user_namespace: host
    capabilities: [SYS_ADMIN]
    seccomp: unconfined
    network: host
`)
	r := corral(t, "audit", "--config", d.config, "--json")
	if r.code != 0 {
		t.Fatal(r)
	}
	var reports []api.AuditReport
	if err := json.Unmarshal([]byte(r.stdout), &reports); err != nil || len(reports) != 2 {
		t.Fatalf("audit --json: %v: %s", err, r.stdout)
	}
	if reports[0].Score > 2 || reports[1].Score < 5 {
		t.Errorf("scores: tight %.1f, loose %.1f", reports[0].Score, reports[1].Score)
	}
	if r := corral(t, "audit", "--config", d.config, "--fail-above", "2"); r.code != 1 || !strings.Contains(r.stderr, "loose scores") {
		t.Errorf("--fail-above 2: %s", r)
	}
	if r := corral(t, "audit", "--config", d.config, "--fail-above", "2", "tight"); r.code != 0 || !strings.Contains(r.stdout, "✓ user namespace") {
		t.Errorf("audit tight: %s", r)
	}
	// The example's services, the default among them, score 2 at most.
	if r := corral(t, "audit", "--config", filepath.Join("..", "examples", "corral.yaml"), "--fail-above", "2"); r.code != 0 {
		t.Errorf("examples/corral.yaml scores above 2: %s", r)
	}
	d.start()
	r = d.ctl("audit", "--json")
	var live []api.AuditReport
	if err := json.Unmarshal([]byte(r.stdout), &live); err != nil || len(live) != 2 || live[1].Score != reports[1].Score {
		t.Errorf("the daemon's audit: %v: %s", err, r.stdout)
	}
	if st := d.status("loose"); !strings.Contains(strings.Join(st.Loosened, ","), "user_namespace: host") {
		t.Errorf("status of loose: loosened %v", st.Loosened)
	}
	d.stop()
}

// busyboxRoot is a directory root of busybox alone, owned by host root,
// under a directory a sandbox's root could not pass (an id-mapped root
// does not need it to).
func busyboxRoot(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "root")
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(root, "bin", "busybox")).CombinedOutput(); err != nil {
		t.Fatalf("copy busybox: %v %s", err, out)
	}
	for _, applet := range []string{"sh", "stat", "cat", "sleep", "touch"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// stageMounts counts the mounts of id-mapped roots under the test's
// state dirs.
func stageMounts(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), workDir)
}

// TestDirectoryRootIsIDMapped: a directory root is shown through an
// id-mapped mount: its host root's files are root's inside, nothing on
// disk is chowned, and the mount is gone with the sandbox, also when its
// corral was killed (the next run sweeps it).
func TestDirectoryRootIsIDMapped(t *testing.T) {
	root := busyboxRoot(t)
	r := corral(t, "run", "--rootfs", root, "--", "/bin/sh", "-c", "stat -c %u /bin/busybox; cat /proc/self/uid_map")
	if r.code == 125 && strings.Contains(r.stderr, "cannot id-map a mount of "+root) {
		// tmpfs before 6.3 (the cgroup v2 VM's /tmp): refused, naming the
		// path, its filesystem and the way out, with nothing left.
		t.Logf("this host cannot id-map %s: %s", root, strings.TrimSpace(r.stderr))
		wantContains(t, "the refusal", r.stderr, "user_namespace: host")
		if n := stageMounts(t); n != 0 {
			t.Errorf("%d mounts left under the state dir after the refusal", n)
		}
		return
	}
	if r.code != 0 {
		t.Fatalf("corral run --rootfs: %s", r)
	}
	f := strings.Fields(r.stdout)
	if len(f) != 4 || f[0] != "0" || f[1] != "0" || f[2] == "0" {
		t.Fatalf("inside: %q; want /bin/busybox owned by 0 and a block mapping", r.stdout)
	}
	var st syscall.Stat_t
	if err := syscall.Stat(filepath.Join(root, "bin", "busybox"), &st); err != nil || st.Uid != 0 {
		t.Errorf("on disk: owner %d (%v): want it untouched (0)", st.Uid, err)
	}
	if n := stageMounts(t); n != 0 {
		t.Errorf("%d mounts left under the state dir after the sandbox ended", n)
	}
	s := startRun(t, "mapped-orphan", "--rootfs", root, "--", "/bin/sleep", "60")
	if stageMounts(t) == 0 {
		t.Fatal("no id-mapped mount while the sandbox runs: the sweep below would prove nothing")
	}
	s.signal(t, syscall.SIGKILL)
	s.wait(t, 10*time.Second)
	mustRun(t, "--", "/bin/true") // sweeps the orphan
	if n := stageMounts(t); n != 0 {
		t.Errorf("%d mounts left under the state dir after the sweep", n)
	}
	if _, err := os.Stat(filepath.Join(root, "bin", "busybox")); err != nil {
		t.Errorf("the operator's root was touched by the sweep: %v", err)
	}
}

// TestUnenterableDirectoryRootIsRefused: a directory root owned by an ID
// outside the sandbox's (nobody inside) and closed to others is refused
// before anything is made, naming the path, why and the ways out (the
// runtime could not even chdir into it, and once crashed tearing down
// the init it never started).
func TestUnenterableDirectoryRootIsRefused(t *testing.T) {
	root := busyboxRoot(t)
	// A first run, while the root is root's, makes the mount points in it:
	// once it is nobody's inside, the runtime could not.
	mustRun(t, "--rootfs", root, "--", "/bin/sh", "-c", "exit 0")
	if err := os.Chown(root, 200000, 200000); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o700); err != nil {
		t.Fatal(err)
	}
	r := corral(t, "run", "--rootfs", root, "--", "/bin/sh", "-c", "exit 0")
	if r.code != 125 {
		t.Fatalf("corral run on an unenterable root: %s; want exit 125", r)
	}
	for _, want := range []string{"--rootfs: " + root + " (owner 200000:200000, mode 0700) cannot be entered by the sandbox", "chmod o+rx " + root, "user_namespace: host"} {
		wantContains(t, "the refusal", r.stderr, want)
	}
	if strings.Contains(r.stderr, "panic") {
		t.Errorf("corral panicked:\n%s", r.stderr)
	}
	if n := stageMounts(t); n != 0 {
		t.Errorf("%d mounts left under the state dir after the refusal", n)
	}
	// Opened to others, the same root runs.
	if err := os.Chmod(root, 0o705); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "--rootfs", root, "--", "/bin/sh", "-c", "exit 0")
}

// TestMissingOrOverlappingSubordinateRangeIsRefused: with no corral line
// in /etc/subuid and /etc/subgid, or one overlapping another owner's, a
// sandbox is refused before anything is made, saying what to do; with
// user_namespace: host it still runs. The files are the host's: they are
// put back as they were, whatever happens.
func TestMissingOrOverlappingSubordinateRangeIsRefused(t *testing.T) {
	for _, path := range []string{"/etc/subuid", "/etc/subgid"} {
		saved, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := os.WriteFile(path, saved, fi.Mode().Perm()); err != nil {
				t.Errorf("put %s back: %v", path, err)
			}
		})
	}
	write := func(text string) {
		t.Helper()
		for _, path := range []string{"/etc/subuid", "/etc/subgid"} {
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct{ desc, file, want string }{
		{"no corral line", "alice:100000:65536\n", "run `corral setup` to add them"},
		{"a corral line over alice's", "alice:100000:65536\ncorral:65536:131072\n", "corral's range 65536-196607 overlaps alice's 100000-165535: give corral a range of its own"},
	} {
		write(tc.file)
		r := corral(t, "run", "--", "/bin/true")
		if r.code != 125 {
			t.Fatalf("%s: corral run: %s; want exit 125", tc.desc, r)
		}
		wantContains(t, tc.desc, r.stderr, tc.want)
		wantContains(t, tc.desc, r.stderr, "user_namespace: host")
		mustRun(t, "--userns", "host", "--", "/bin/true")
	}
}
