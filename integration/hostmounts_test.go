package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

// hostPID1 is the name of the host's PID 1, as a sandbox sees it through
// a bind of the host's /proc (its own /proc shows its own PID 1).
func hostPID1(t *testing.T) string {
	t.Helper()
	comm, err := os.ReadFile("/proc/1/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(comm))
}

// TestValidateRefusesHostMounts: corral validate refuses each cgroup
// parent, env entry and mount that would hand a sandbox the host, each at
// FILE:LINE:COL with its field, and exits 1; unsafe_host_mounts lifts the
// mount refusals of its service only.
func TestValidateRefusesHostMounts(t *testing.T) {
	dir := t.TempDir()
	data, link := filepath.Join(dir, "data"), filepath.Join(dir, "proc-link")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/proc", link); err != nil {
		t.Fatal(err)
	}
	bin, err := filepath.EvalSymlinks(corralBin)
	if err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	body := fmt.Sprintf(`daemon:
  cgroup_parent: /system.slice
services:
  web:
    command: ["/bin/true"]
    env:
      GOOD: "x=y"
      NUL: "a\0b"
      "A=B": c
    mounts:
      - %s:/data:rw
      - /proc:/p
      - /sys/fs/cgroup:/c:rw
      - %s:/s
      - /:/host
      - /var/run/docker.sock:/d
      - %s:/corral
      - %s:/l
  loose:
    command: ["/bin/true"]
    env: {NUL: "\0"}
    mounts: ["/proc:/p"]
    unsafe_host_mounts: true
`, data, stateDir, bin, link)
	if err := os.WriteFile(bad, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r := corral(t, "validate", bad)
	if r.code != 1 {
		t.Fatalf("validate: want exit 1; got %s", r)
	}
	const loosen = "; bind it only with unsafe_host_mounts: true"
	want := []string{
		"bad.yaml:2:18: daemon.cgroup_parent: /system.slice is a top-level slice of the host's service manager; use a cgroup of corral's own",
		"bad.yaml:8:12: services.web.env.NUL: the value holds a NUL byte",
		`bad.yaml:9:7: services.web.env.A=B: invalid variable name "A=B"`,
		"bad.yaml:12:9: services.web.mounts[1]: source /proc is the host's /proc" + loosen,
		"bad.yaml:13:9: services.web.mounts[2]: source /sys/fs/cgroup is inside the host's /sys" + loosen,
		"bad.yaml:14:9: services.web.mounts[3]: source " + stateDir + " is corral's state dir " + stateDir + loosen,
		"bad.yaml:15:9: services.web.mounts[4]: source / is the host's root" + loosen,
		"bad.yaml:16:9: services.web.mounts[5]: source /var/run/docker.sock is the container runtime socket /var/run/docker.sock" + loosen,
		"bad.yaml:17:9: services.web.mounts[6]: source " + bin + " is the corral binary " + bin + loosen,
		"bad.yaml:18:9: services.web.mounts[7]: source " + link + " (resolving to /proc) is the host's /proc" + loosen,
		"bad.yaml:21:16: services.loose.env.NUL: the value holds a NUL byte",
	}
	for _, w := range want {
		wantContains(t, "validate", r.stderr, w)
	}
	if lines := strings.Split(strings.TrimSpace(r.stderr), "\n"); len(lines) != len(want) {
		t.Errorf("validate printed %d errors, want %d (none for mounts[0] nor services.loose.mounts):\n%s", len(lines), len(want), r.stderr)
	}

	// The state dir is the one given: another's is not corral's here.
	r = corral(t, "--state-dir", filepath.Join(dir, "other-state"), "validate", bad)
	if strings.Contains(r.stderr, "corral's state dir") {
		t.Errorf("validate with another --state-dir still refuses %s:\n%s", stateDir, r.stderr)
	}
}

// TestRunRefusesHostMounts: corral run refuses the same mounts and cgroup
// parents, naming the flag, until --unsafe-host-mounts.
func TestRunRefusesHostMounts(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--mount", "/proc:/p"}, "--mount /proc:/p: source /proc is the host's /proc; bind it only with --unsafe-host-mounts"},
		{[]string{"--mount", "/sys/fs/cgroup:/c:rw"}, "--mount /sys/fs/cgroup:/c: source /sys/fs/cgroup is inside the host's /sys"},
		{[]string{"--mount", stateDir + ":/s"}, "is corral's state dir"},
		{[]string{"--rootfs", "/"}, "--rootfs /: source / is the host's root; bind it only with --unsafe-host-mounts"},
		{[]string{"--unsafe-host-mounts", "--cgroup-parent", "/system.slice"}, "--cgroup-parent /system.slice: /system.slice is a top-level slice"},
		{[]string{"--cgroup-parent", "/"}, "--cgroup-parent /: / is the root cgroup"},
	} {
		args := append(append([]string{"run"}, c.args...), "--", "/bin/true")
		r := corral(t, args...)
		if r.code != 125 {
			t.Errorf("%v: want exit 125; got %s", c.args, r)
		}
		wantContains(t, "stderr", r.stderr, c.want)
	}
	r := mustRun(t, "--unsafe-host-mounts", "--mount", "/proc:/hostproc", "--", "/bin/cat", "/hostproc/1/comm")
	if got, want := strings.TrimSpace(r.stdout), hostPID1(t); got != want {
		t.Errorf("host's PID 1 through the loosened /proc bind: %q, want %q", got, want)
	}
	assertNoLeftovers(t)
}

// TestDaemonReloadRefusesHostMounts: a reload to a file that binds the
// daemon's own state and log dirs, or holds a NUL in env, is refused with
// every error placed, and the running service is left as it was.
func TestDaemonReloadRefusesHostMounts(t *testing.T) {
	d := newDaemon(t, `
  web:
    command: ["/bin/sleep", "1000"]
`).start()
	pid := d.waitRunning("web").PID
	d.write(`
  web:
    command: ["/bin/sleep", "1000"]
    env: {A: "\0"}
    mounts:
      - ` + d.stateDir + `:/s:rw
      - ` + d.logDir + `:/l
      - /proc:/p
`)
	r := d.ctl("reload")
	if r.code == 0 {
		t.Fatalf("reload binding the daemon's own dirs accepted: %s", r)
	}
	for _, want := range []string{
		"corral.yaml:8:14: services.web.env.A: the value holds a NUL byte",
		"corral.yaml:10:9: services.web.mounts[0]: source " + d.stateDir + " is corral's state dir",
		"corral.yaml:11:9: services.web.mounts[1]: source " + d.logDir + " is corral's log dir",
		"corral.yaml:12:9: services.web.mounts[2]: source /proc is the host's /proc; bind it only with unsafe_host_mounts: true",
		"running configuration is unchanged",
	} {
		wantContains(t, "reload error", r.stderr, want)
	}
	if st := d.status("web"); st.PID != pid || st.State != "running" || st.Restarts != 0 {
		t.Errorf("after a refused reload: %s pid %d restarts %d, want running pid %d", st.State, st.PID, st.Restarts, pid)
	}
	d.stop()
}

// TestUnsafeHostMountsStartsAndShows: a service that binds the host's
// /proc with unsafe_host_mounts starts, sees the host through it, and
// corral status names the loosening.
func TestUnsafeHostMountsStartsAndShows(t *testing.T) {
	d := newDaemon(t, `
  peek:
    command: ["/bin/sh", "-c", "cat /hostproc/1/comm; exec sleep 1000"]
    mounts: ["/proc:/hostproc:ro"]
    unsafe_host_mounts: true
  plain:
    command: ["/bin/sleep", "1000"]
`).start()
	st := d.waitRunning("peek")
	d.waitRunning("plain")
	if !slices.Equal(st.Loosened, []string{"unsafe_host_mounts"}) {
		t.Errorf("status API: loosened %q, want [unsafe_host_mounts]", st.Loosened)
	}
	r := d.ctl("status", "peek")
	if r.code != 0 {
		t.Fatalf("status peek: %s", r)
	}
	wantContains(t, "status peek", r.stdout, "\nloosened:  unsafe_host_mounts\n")
	if r := d.ctl("status", "plain"); r.code != 0 || strings.Contains(r.stdout, "loosened:") {
		t.Errorf("status of a hardened service: %s", r)
	}
	want := "stdout " + hostPID1(t)
	for deadline := time.Now().Add(10 * time.Second); ; {
		r := d.ctl("logs", "peek")
		if strings.Contains(r.stdout, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("logs of peek: no %q after 10s: %s", want, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	d.stop()
}

// TestMountSourceSwappedForASymlinkIsRefusedAtStart: a hostile service
// with a writable bind of a shared directory replaces another service's
// mount source there with a symlink to the host's /proc. The file was
// checked when loaded; the next start of the other service must check it
// again (the runtime follows the source anew) and refuse, naming it.
func TestMountSourceSwappedForASymlinkIsRefusedAtStart(t *testing.T) {
	shared := passableDir(t)
	data := filepath.Join(shared, "data")
	if err := os.Mkdir(data, 0o755); err != nil {
		t.Fatal(err)
	}
	// Writable by the hostile sandbox's root (an ID of its block, others
	// here), without the sticky bit: it may rename what it did not make.
	if err := os.Chmod(shared, 0o777); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t, fmt.Sprintf(`
  swapper:
    command: ["/bin/sh", "-c", "while [ ! -e /w/go ]; do sleep 0.05; done; mv /w/data /w/old && ln -s /proc /w/data && touch /w/swapped; exec sleep 1000"]
    mounts: ["%[1]s:/w:rw"]
  reader:
    command: ["/bin/sleep", "1000"]
    mounts: ["%[1]s/data:/data"]
    restart: {policy: always, backoff: {initial: 100ms, max: 200ms}}
`, shared)).start()
	d.waitRunning("swapper")
	d.waitRunning("reader")
	if err := os.WriteFile(filepath.Join(shared, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(patience); ; time.Sleep(20 * time.Millisecond) {
		if _, err := os.Lstat(filepath.Join(shared, "swapped")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the hostile service did not swap the source within %s; its status: %+v", patience, d.status("swapper").Service)
		}
	}
	if target, err := os.Readlink(data); err != nil || target != "/proc" {
		t.Fatalf("after the swap, %s: link %q, %v; want a symlink to /proc", data, target, err)
	}
	if r := d.ctl("restart", "reader"); r.code == 0 {
		t.Logf("corral restart reader: %s", r)
	}
	want := "mounts[0]: source " + data + " (resolving to /proc) is the host's /proc"
	st := d.waitFor("reader", patience, "the start refused", func(st *api.ServiceDetail) bool {
		return st.State != "running" && strings.Contains(st.Message, want)
	})
	t.Logf("reader after the swap: %s: %s", st.State, st.Message)
	if st.PID != 0 {
		t.Errorf("reader has pid %d after its start was refused", st.PID)
	}
	d.stop()
}
