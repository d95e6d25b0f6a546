package rootfs

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestCheckDir: a workdir is looked up in the root and the mounts as the
// sandbox will see them, symlinks resolved inside the sandbox, and nothing
// is made.
func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	root := filepath.Join(dir, "root")
	src := filepath.Join(dir, "src")
	outside := filepath.Join(dir, "outside")
	for _, d := range []string{"root/srv/app", "root/data", "src/sub", "outside/secret"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"root/file", "src/file"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, target := range map[string]string{
		"root/abs":      "/srv/app",          // absolute: from the sandbox's root
		"root/srv/up":   "../data",           // relative
		"root/escape":   "../../outside",     // ".." stops at the sandbox's root
		"root/loop":     "loop",              // never ends
		"root/tmplink":  "/tmp",              // into a mount
		"root/deep":     "/tmp/nothing",      // into a mount, below what it holds
		"src/back":      "/srv",              // from a mount back to the root
		"root/hostpath": outside + "/secret", // a host path means nothing inside
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := Directory(root)
	if err != nil {
		t.Fatal(err)
	}
	mounts := []rspec.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"},
		{Destination: "/mnt/src", Type: "bind", Source: src, Options: []string{"rbind", "ro"}},
		{Destination: "/tmp/work", Type: "bind", Source: src, Options: []string{"rbind"}},
		{Destination: "/init", Type: "bind", Source: filepath.Join(src, "file"), Options: []string{"bind"}},
	}
	for _, c := range []struct {
		dir  string
		want string // "" for a directory; else words of the error
		is   error
	}{
		{dir: "/"},
		{dir: "/srv/app"},
		{dir: "/srv/app/../../data"},
		{dir: "/../srv/./app/"},
		{dir: "/abs"},
		{dir: "/srv/up"},
		{dir: "/escape", want: "its root has no /outside (" + root + "/outside on the host)", is: fs.ErrNotExist},
		{dir: "/hostpath", want: "/hostpath does not exist in the sandbox", is: fs.ErrNotExist},
		{dir: "/loop", want: "more than 40 symlinks", is: unix.ELOOP},
		{dir: "/missing/deeper", want: "/missing/deeper does not exist in the sandbox: its root has no /missing (" + root + "/missing on the host)", is: fs.ErrNotExist},
		{dir: "/file", want: "/file is not a directory in the sandbox", is: unix.ENOTDIR},
		{dir: "/file/x", want: "/file/x: /file is not a directory", is: unix.ENOTDIR},
		{dir: "/proc"},
		{dir: "/proc/self", want: "/proc/self is inside /proc, the sandbox's proc filesystem", is: nil},
		{dir: "/tmp"},
		{dir: "/tmplink"},
		{dir: "/tmp/x", want: "/tmp is a tmpfs of the sandbox's own, empty when it starts", is: fs.ErrNotExist},
		{dir: "/deep", want: "/deep does not exist in the sandbox: /tmp is a tmpfs", is: fs.ErrNotExist},
		{dir: "/tmp/work/sub"}, // a bind on the tmpfs
		{dir: "/mnt"},          // made to reach /mnt/src
		{dir: "/mnt/src/sub"},
		{dir: "/mnt/src/back/app"},
		{dir: "/mnt/src/nope", want: "the mount at /mnt/src has no /mnt/src/nope (" + src + "/nope on the host)", is: fs.ErrNotExist},
		{dir: "/mnt/src/file", want: "/mnt/src/file is not a directory", is: unix.ENOTDIR},
		{dir: "/init", want: "/init is not a directory", is: unix.ENOTDIR},
		{dir: "srv", want: `"srv" is not an absolute path`},
	} {
		err := r.CheckDir(mounts, c.dir)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v; want a directory", c.dir, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v; want an error saying %q", c.dir, err, c.want)
		case c.is != nil && !errors.Is(err, c.is):
			t.Errorf("%s: %v is not %v", c.dir, err, c.is)
		}
	}
	// Nothing was made, in the root or in the mounts' sources.
	for _, p := range []string{"root/missing", "root/outside", "root/tmp", "root/mnt", "src/nope", "outside/srv"} {
		if _, err := os.Lstat(filepath.Join(dir, p)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v; want it not made", p, err)
		}
	}
}

// TestHostBindPlanIsHostBind: the planned built-in root answers as the
// made one, for every path the made one holds and for a few it does not.
func TestHostBindPlanIsHostBind(t *testing.T) {
	made := hostBind(t, HostBindOptions{Hostname: "web"})
	plan, err := HostBindPlan()
	if err != nil {
		t.Fatal(err)
	}
	if plan.Path != "" || len(plan.Mounts) != len(made.Mounts) {
		t.Fatalf("plan: path %q, %d mounts; want no path and the %d mounts of HostBind", plan.Path, len(plan.Mounts), len(made.Mounts))
	}
	paths := []string{"/srv", "/home/user", "/usr/share", "/usr/no-such-dir", "/var/tmp", "/var/tmp/x", "/etc/passwd", "/etc/ssl", "/bin"}
	err = filepath.WalkDir(made.Path, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, "/"+strings.TrimPrefix(strings.TrimPrefix(p, made.Path), "/"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	mounts := append([]rspec.Mount{{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs"}}, made.Mounts...)
	for _, p := range paths {
		got, want := plan.CheckDir(mounts, p), made.CheckDir(mounts, p)
		if (got == nil) != (want == nil) || (got != nil && got.Error() != want.Error()) {
			t.Errorf("%s: the plan says %v; the made root %v", p, got, want)
		}
	}
	if err := plan.CheckDir(mounts, "/srv"); err == nil || !strings.Contains(err.Error(), "the built-in root has no /srv") {
		t.Errorf("/srv in the built-in root: %v", err)
	}
}
