package integration

import (
	"context"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

func TestBadFlagsNameTheFlag(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--cap-add", "SYS_FOO"}, `invalid argument "SYS_FOO" for "--cap-add" flag: unknown capability "SYS_FOO"`},
		{[]string{"--memory", "64X"}, `invalid argument "64X" for "--memory" flag: invalid size "64X"`},
		{[]string{"--memory", "1K"}, "--memory: 1024 bytes is too small: a sandbox needs at least 4MiB"},
		{[]string{"--cpus", "0"}, `invalid argument "0" for "--cpus" flag`},
		{[]string{"--cpus", "1000"}, "--cpus 1000: this host has"},
		{[]string{"--pids", "0"}, "--pids 0: use a positive number"},
		{[]string{"--stop-timeout", "-1s"}, "--stop-timeout -1s: use a duration longer than 0"},
		{[]string{"--cgroup-parent", "corral"}, `--cgroup-parent "corral": must be an absolute cgroup path`},
		{[]string{"--rootfs", "/no/such/rootfs"}, "--rootfs /no/such/rootfs: no such directory"},
		{[]string{"--network", "vpn"}, `--network: unknown mode "vpn": use "none", "host" or "bridge"`},
		{[]string{"--user", "www-data"}, `invalid argument "www-data" for "--user" flag: invalid user "www-data": use a numeric UID or UID:GID`},
		{[]string{"--mount", "relative:/data"}, `for "--mount" flag: invalid mount "relative:/data": source is not an absolute path`},
		{[]string{"--mount", "/no/such/dir:/data"}, "--mount /no/such/dir:/data: source /no/such/dir does not exist"},
		{[]string{"--mount", "/tmp:/proc/x"}, "destination is inside /proc"},
		{[]string{"--seccomp", "/no/such/profile.json"}, "--seccomp /no/such/profile.json: not default, unconfined, or a readable profile file"},
		{[]string{"--hostname", "bad_host!"}, `--hostname: invalid hostname "bad_host!"`},
		{[]string{"--name", "bad/name"}, `--name: invalid name "bad/name"`},
		{[]string{"--env", "=x"}, `invalid argument "=x" for "--env" flag`},
	} {
		args := append(append([]string{"run"}, c.args...), "--", "/bin/true")
		r := corral(t, args...)
		if r.code != 125 {
			t.Errorf("%v: want exit 125; got %s", c.args, r)
		}
		wantContains(t, "stderr", r.stderr, c.want)
	}
	assertNoLeftovers(t)
}

func TestNotRootIsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := corralCmd(ctx, "run", "--", "/bin/true")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	r := finish(t, cmd)
	if r.code != 125 {
		t.Fatalf("want exit 125; got %s", r)
	}
	wantContains(t, "stderr", r.stderr, "must be run as root")
}

func TestMissingCgroupControllerIsRefused(t *testing.T) {
	mnt := host.Mounts["memory"]
	if host.Mode.String() == "cgroup v2" {
		t.Skip("on cgroup v2 the controllers cannot be unmounted one by one; covered by the unit tests")
	}
	// In a private mount namespace, take the memory hierarchy away.
	script := "umount -l " + mnt + " && exec " + corralBin + " --state-dir " + stateDir + " run --cgroup-parent " + cgroupParent + " -- /bin/true"
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := finish(t, exec.CommandContext(ctx, "unshare", "--mount", "--propagation", "private", "/bin/sh", "-c", script))
	if r.code != 125 {
		t.Fatalf("want exit 125; got %s", r)
	}
	wantContains(t, "stderr", r.stderr, "cgroup controller missing: memory")
}

func TestBuildWithoutSeccompRefusesToRun(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "corral-noseccomp")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/corral").CombinedOutput(); err != nil {
		t.Fatalf("build without the seccomp tag: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := finish(t, exec.CommandContext(ctx, bin, "--state-dir", stateDir, "run", "--cgroup-parent", cgroupParent, "--", "/bin/true"))
	if r.code != 125 {
		t.Fatalf("want exit 125; got %s", r)
	}
	wantContains(t, "stderr", r.stderr, "built without seccomp support")
}
