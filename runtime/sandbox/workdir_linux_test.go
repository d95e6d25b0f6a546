package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/internal/testenv"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/spec"
)

// TestCheckWorkdir: a workdir is checked in the sandbox the service would
// get (the built-in root or its rootfs, its mounts, corral's own /tmp),
// without making anything.
func TestCheckWorkdir(t *testing.T) {
	dir := t.TempDir()
	rootfs, src := filepath.Join(dir, "rootfs"), filepath.Join(dir, "src")
	for _, d := range []string{"rootfs/app", "src/sub"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		rootfs, workdir string
		mounts          []spec.Mount
		want            string // "" for fine
	}{
		{workdir: "/"},
		{workdir: "/usr/bin"},
		{workdir: "/tmp"},
		{workdir: "/var/tmp"},
		{workdir: "/srv", want: "/srv does not exist in the sandbox: the built-in root has no /srv"},
		{workdir: "/tmp/work", want: "/tmp is a tmpfs of the sandbox's own"},
		{workdir: "/tmp/work/sub", mounts: []spec.Mount{{Source: src, Destination: "/tmp/work"}}},
		{workdir: "/srv/data", mounts: []spec.Mount{{Source: src, Destination: "/srv/data"}}},
		{workdir: "/srv/data/nope", mounts: []spec.Mount{{Source: src, Destination: "/srv/data"}}, want: "the mount at /srv/data has no /srv/data/nope"},
		{rootfs: rootfs, workdir: "/app"},
		{rootfs: rootfs, workdir: "/usr/bin", want: "its root has no /usr (" + rootfs + "/usr on the host)"},
	} {
		svc := &spec.Service{Name: "web", Command: []string{"/bin/true"}, Rootfs: c.rootfs, Workdir: c.workdir, Mounts: c.mounts}
		err := CheckWorkdir(svc)
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("rootfs %q, workdir %s, mounts %v: %v; want %q", c.rootfs, c.workdir, c.mounts, err, c.want)
		}
	}
	if entries, _ := os.ReadDir(rootfs); len(entries) != 1 {
		t.Errorf("the rootfs holds %d entries, want its one", len(entries))
	}
}

// TestCreateRefusesMissingWorkdir: the runtime would make a missing
// working directory; Create refuses it first, naming the field, and
// leaves nothing behind.
func TestCreateRefusesMissingWorkdir(t *testing.T) {
	testenv.NeedRoot(t, "sandboxes need namespaces and cgroups")
	host, err := cgroup.Detect()
	if err != nil {
		t.Fatal("detect cgroups:", err)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	state := passableStateDir(t)
	m, err := NewManager(state, host, log, Attached)
	if err != nil {
		t.Fatal(err)
	}
	rootfs := t.TempDir()
	if err := os.Mkdir(filepath.Join(rootfs, "app"), 0o755); err != nil {
		t.Fatal(err)
	}
	parent := fmt.Sprintf("/corral-sandbox-test-%d", os.Getpid())
	for _, c := range []struct{ rootfs, workdir string }{{rootfs, "/missing/app"}, {"", "/srv/app"}} {
		svc := &spec.Service{Name: fmt.Sprintf("workdir-%d", os.Getpid()), Command: []string{"/bin/true"}, Rootfs: c.rootfs, Workdir: c.workdir}
		sb, err := m.Create(svc, parent)
		if err == nil {
			_ = sb.Destroy()
			t.Fatalf("rootfs %q, workdir %s: created; want it refused", c.rootfs, c.workdir)
		}
		var fe *spec.FieldError
		if !errors.As(err, &fe) || fe.Field != "workdir" || !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), c.workdir+" does not exist in the sandbox") {
			t.Errorf("rootfs %q, workdir %s: %v; want a workdir error saying it does not exist", c.rootfs, c.workdir, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(rootfs, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the missing workdir was made in the rootfs (%v)", err)
	}
	for _, d := range []string{m.recordsDir(), m.rootsDir(), m.containersDir()} {
		entries, _ := os.ReadDir(d)
		// The shared built-in root's template stays for the next sandbox.
		entries = slices.DeleteFunc(entries, func(e os.DirEntry) bool { return d == m.rootsDir() && strings.HasPrefix(e.Name(), ".template-") })
		if len(entries) != 0 {
			t.Errorf("%s holds %d entries after the refusals, want none", d, len(entries))
		}
	}
	// A workdir that is there is fine.
	svc := &spec.Service{Name: fmt.Sprintf("workdir-%d", os.Getpid()), Command: []string{"/bin/true"}, Rootfs: rootfs, Workdir: "/app"}
	sb, err := m.Create(svc, parent)
	if err != nil {
		t.Fatalf("workdir /app in the rootfs: %v", err)
	}
	if err := sb.Destroy(); err != nil {
		t.Fatal(err)
	}
}
