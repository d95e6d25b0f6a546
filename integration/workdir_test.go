package integration

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

// TestMissingWorkdirIsRefused: a workdir that does not exist in the
// sandbox is an error naming the field and the path (corral validate and
// the daemon at load: file, line and field; corral run: --workdir), at
// start too, and is never made.
func TestMissingWorkdirIsRefused(t *testing.T) {
	dir := passableDir(t)
	rootfs, src := filepath.Join(dir, "rootfs"), filepath.Join(dir, "src")
	for _, d := range []string{"rootfs/app", "src/app"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	notMade := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			if _, err := os.Lstat(p); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s was made (%v)", p, err)
			}
		}
	}

	file := filepath.Join(dir, "corral.yaml")
	body := "services:\n" +
		"  builtin:\n    command: [/bin/true]\n    workdir: /srv/app\n" +
		"  dir:\n    command: [/bin/true]\n    rootfs: " + rootfs + "\n    workdir: /app/sub\n" +
		"  scratch:\n    command: [/bin/true]\n    workdir: /tmp/app\n" +
		"  fine:\n    command: [/bin/true]\n    workdir: /srv/app\n    mounts: [\"" + src + ":/srv\"]\n"
	if err := os.WriteFile(file, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	r := corral(t, "validate", file)
	if r.code != 1 {
		t.Fatalf("validate: want exit 1; got %s", r)
	}
	for _, want := range []string{
		file + ":4:14: services.builtin.workdir: /srv/app does not exist in the sandbox: the built-in root has no /srv",
		file + ":8:14: services.dir.workdir: /app/sub does not exist in the sandbox: its root has no /app/sub (" + rootfs + "/app/sub on the host)",
		file + ":11:14: services.scratch.workdir: /tmp/app does not exist in the sandbox: /tmp is a tmpfs of the sandbox's own",
	} {
		wantContains(t, "validate's errors", r.stderr, want)
	}
	if n := strings.Count(strings.TrimSpace(r.stderr), "\n") + 1; n != 3 {
		t.Errorf("validate printed %d lines, want 3 (services.fine is fine):\n%s", n, r.stderr)
	}

	r = corral(t, "run", "--workdir", "/srv/app", "--", "/bin/true")
	if r.code != 125 {
		t.Errorf("run --workdir /srv/app: want exit 125; got %s", r)
	}
	wantContains(t, "run's error", r.stderr, "--workdir: /srv/app does not exist in the sandbox: the built-in root has no /srv")
	r = corral(t, "run", "--rootfs", rootfs, "--workdir", "/app/sub", "--", "/bin/true")
	if r.code != 125 {
		t.Errorf("run --rootfs --workdir /app/sub: want exit 125; got %s", r)
	}
	wantContains(t, "run's error", r.stderr, "--workdir: /app/sub does not exist in the sandbox")
	mustRun(t, "--mount", src+":/srv", "--workdir", "/srv/app", "--", "/bin/true")
	notMade(filepath.Join(rootfs, "app", "sub"))
	assertNoLeftovers(t)

	// At start: the workdir was there when the file was loaded and is
	// gone at a restart. The service fails with the reason, once.
	d := newDaemon(t, "  web:\n    command: [/bin/sleep, \"300\"]\n    workdir: /srv/app\n    mounts: [\""+src+":/srv\"]\n    restart: always\n").start()
	d.waitRunning("web")
	if err := os.Remove(filepath.Join(src, "app")); err != nil {
		t.Fatal(err)
	}
	if r := d.ctl("restart", "web"); r.code != 0 {
		t.Fatalf("restart: %s", r)
	}
	st := d.waitFor("web", 10*time.Second, "failed", func(st *api.ServiceDetail) bool { return st.State == "failed" })
	wantContains(t, "the reason", st.Message, "workdir: /srv/app does not exist in the sandbox: the mount at /srv has no /srv/app ("+src+"/app on the host)")
	if strings.Count(st.Message, "failed to start") > 1 {
		t.Errorf("reason %q says it failed to start more than once", st.Message)
	}
	notMade(filepath.Join(src, "app"))
	if st.Restarts != 0 {
		t.Errorf("restarts %d after a refused workdir, want 0 (no retry)", st.Restarts)
	}
	d.stop()
}
