package integration

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
)

func TestCgroupNamespaceShowsOwnCgroupAsRoot(t *testing.T) {
	r := mustRun(t, "--name", "cgns", "--memory", "64M", "--pids", "50", "--", "/bin/cat", "/proc/self/cgroup")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for _, line := range lines {
		// hierarchy-ID:controllers:path, the path relative to the
		// namespace's root, which is the sandbox's own cgroup.
		if parts := strings.SplitN(line, ":", 3); len(parts) != 3 || parts[2] != "/" {
			t.Errorf("/proc/self/cgroup in the sandbox has %q; want every path to be /", line)
		}
	}
	if host.Mode != cgroup.Unified {
		return
	}
	if len(lines) != 1 || lines[0] != "0::/" {
		t.Errorf("/proc/self/cgroup on cgroup v2 = %q, want the one line 0::/", lines)
	}
	// The sandbox's /sys/fs/cgroup is its own cgroup, with its limits,
	// and read-only.
	r = mustRun(t, "--memory", "64M", "--pids", "50", "--cpus", "0.5", "--", "/bin/sh", "-c",
		"cd /sys/fs/cgroup && cat memory.max pids.max cpu.max memory.oom.group && ! mkdir x 2>/dev/null")
	if got, want := r.stdout, "67108864\n50\n50000 100000\n1\n"; got != want {
		t.Errorf("the sandbox's own limits in its /sys/fs/cgroup:\n%s\nwant:\n%s", got, want)
	}
}

func TestCgroupParentHoldingCorralIsRefused(t *testing.T) {
	if host.Mode != cgroup.Unified {
		t.Skipf("the host runs %s, whose cgroups may hold processes and have children: the rule is cgroup v2's (make test-cgroup2 runs this test)", host.Mode)
	}
	// runIn moves a shell into the cgroup at from, then runs corral there
	// with sandboxes under parent.
	made := []string{}
	runIn := func(from, parent string) result {
		t.Helper()
		dir := filepath.Join(host.Mounts["pids"], from)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		made = append(made, dir)
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		script := `echo $$ > ` + dir + `/cgroup.procs && exec "$0" --state-dir "$1" run --cgroup-parent "$2" -- /bin/true`
		return finish(t, exec.CommandContext(ctx, "/bin/sh", "-c", script, corralBin, stateDir, parent))
	}
	t.Cleanup(func() {
		for i := len(made) - 1; i >= 0; i-- {
			_ = syscall.Rmdir(made[i])
		}
		// cgroupParent itself, if this test made it (in use: left).
		if err := syscall.Rmdir(filepath.Join(host.Mounts["pids"], cgroupParent)); err != nil && !errors.Is(err, syscall.EBUSY) && !errors.Is(err, syscall.ENOENT) {
			t.Error(err)
		}
	})
	self := cgroupParent + "/self"
	for _, parent := range []string{self, self + "/sandboxes"} {
		r := runIn(self, parent)
		if r.code != 125 {
			t.Errorf("corral in %s, sandboxes under %s: want exit 125; got %s", self, parent, r)
			continue
		}
		wantContains(t, "stderr", r.stderr, "cgroup parent contains corral itself: corral runs in cgroup "+self)
		wantContains(t, "stderr", r.stderr, "cgroup parent "+parent+";")
	}
	// The control: from a sibling leaf, sandboxes under the same parent run.
	if r := runIn(cgroupParent+"/supervisor", cgroupParent+"/sandboxes"); r.code != 0 {
		t.Errorf("corral in a sibling leaf of the sandboxes' parent: %s", r)
	}
}

func TestDaemonStatsFromCgroups(t *testing.T) {
	d := newDaemon(t, `
  idle:
    command: ["/bin/sleep", "1000"]
    resources: {memory: 64M, pids: 50}
  burner:
    command: ["/bin/sh", "-c", "while :; do :; done"]
    resources: {cpus: 0.5}
  hog:
    command: ["/bin/dd", "if=/dev/zero", "of=/dev/null", "bs=200M", "count=1"]
    resources: {memory: 32M}
    restart: "no"
`).start()
	d.waitRunning("idle")
	d.waitRunning("burner")
	hog := d.waitFor("hog", 20*time.Second, "OOM-killed", func(st *api.ServiceDetail) bool { return len(st.Exits) > 0 })
	if e := hog.Exits[0]; e.OOMKills == 0 || e.Code != 137 || !strings.HasPrefix(e.Reason, "killed by the kernel OOM killer (memory limit 32MiB)") {
		t.Errorf("hog's exit %+v; want an OOM kill under 32MiB", e)
	}
	// Two readings: the CPU the burner used in between is its share.
	// (Its total also counts the sandbox's set-up, done before the
	// quota is set: under emulation, a good part of a second.)
	client := api.NewClient(filepath.Join(d.stateDir, "corral.sock"))
	list := func() (map[string]api.Service, time.Time) {
		t.Helper()
		l, err := client.List(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]api.Service{}
		for _, s := range l {
			m[s.Name] = s
		}
		return m, time.Now()
	}
	before, t0 := list()
	time.Sleep(3 * time.Second)
	after, t1 := list()
	share := float64(after["burner"].CPUUsage-before["burner"].CPUUsage) / float64(t1.Sub(t0))
	t.Logf("burner under cpus 0.5 used %.3f CPUs (%s of CPU in all)", share, after["burner"].CPUUsage)
	if b := after["burner"]; share < 0.3 || share > 0.6 || b.MemoryLimit != 0 || b.MemoryUsage == 0 || b.PidsLimit != 1024 || b.PidsCurrent != 2 {
		t.Errorf("burner: %.3f CPUs, %+v; want about half a CPU, no memory limit, the default pids limit, init and the shell", share, b)
	}
	if i := after["idle"]; i.MemoryLimit != 64<<20 || i.MemoryUsage == 0 || i.MemoryUsage > 64<<20 || i.PidsLimit != 50 || i.PidsCurrent != 2 || i.CPUUsage == 0 {
		t.Errorf("idle: %+v; want a 64MiB limit and some memory used, 2 of 50 pids, some CPU time", i)
	}
	r := d.ctl("ps")
	wantContains(t, "corral ps", r.stdout, "/ 64MiB")
	d.stop()
}

func TestDeviceCgroupDeniesOtherDevices(t *testing.T) {
	// Even with CAP_MKNOD (so mknod works), only runc's short list
	// of devices opens: the device cgroup (an eBPF program on cgroup v2)
	// refuses /dev/mem. The sandbox's /dev is a tmpfs without nodev, so
	// nothing but the device cgroup stands in the way. mknod needs the
	// host's user namespace: in a sandbox's own, the kernel refuses it.
	r := mustRun(t, "--userns", "host", "--cap-add", "MKNOD", "--", "/bin/sh", "-c",
		"mknod /dev/mem2 c 1 1 && mknod /dev/null2 c 1 3 && "+
			"{ head -c 1 /dev/mem2 >/dev/null 2>&1 && echo mem-opened || echo mem-denied; } && "+
			"{ echo x > /dev/null2 && echo null-opened || echo null-denied; }")
	if got := strings.Fields(r.stdout); len(got) != 2 || got[0] != "mem-denied" || got[1] != "null-opened" {
		t.Errorf("want /dev/mem (1:1) denied and /dev/null (1:3) allowed; got %q", r.stdout)
	}
	// In its own user namespace, CAP_MKNOD or not, no device node is made.
	r = mustRun(t, "--cap-add", "MKNOD", "--", "/bin/sh", "-c", "mknod /dev/mem2 c 1 1 2>/dev/null && echo made || echo refused")
	if strings.TrimSpace(r.stdout) != "refused" {
		t.Errorf("mknod in the sandbox's user namespace: %q", r.stdout)
	}
}
