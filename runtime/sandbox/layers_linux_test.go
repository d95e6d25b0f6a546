package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/spec"
)

// imageLayers writes two layers as an image's unpacked ones: busybox
// below, and above it an app owned by uid 1000 that deletes /gone.
func imageLayers(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	bottom, top := filepath.Join(dir, "0"), filepath.Join(dir, "1")
	for _, d := range []string{"0/bin", "0/etc", "1/app"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("cp", "/bin/busybox", filepath.Join(bottom, "bin", "busybox")).CombinedOutput(); err != nil {
		t.Fatalf("copy busybox: %v %s", err, out)
	}
	for _, applet := range []string{"sh", "cat", "sleep", "stat", "touch", "test", "id", "ls"} {
		if err := os.Symlink("busybox", filepath.Join(bottom, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	// The sandbox's init is this test binary, linked against the host's
	// libc: the bottom layer carries what it loads, as an image would.
	out, err := exec.Command("ldd", os.Args[0]).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", os.Args[0], err)
	}
	for _, f := range strings.Fields(string(out)) {
		if !strings.HasPrefix(f, "/") {
			continue
		}
		dst := filepath.Join(bottom, f)
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("cp", "-L", f, dst).CombinedOutput(); err != nil {
			t.Fatalf("copy %s: %v %s", f, err, out)
		}
	}
	for path, data := range map[string]string{"0/gone": "x", "0/etc/passwd": "root:x:0:0::/:/bin/sh\n", "1/app/msg": "from the top layer\n"} {
		if err := os.WriteFile(filepath.Join(dir, path), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(filepath.Join(top, "app", "msg"), 1000, 1000); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mknod(filepath.Join(top, "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	return []string{bottom, top}
}

func imageService(name string, writable bool) *spec.Service {
	return &spec.Service{
		Name:     fmt.Sprintf("%s-%d", name, os.Getpid()),
		Command:  []string{"/bin/sleep", "300"},
		Env:      []string{"PATH=/bin"},
		Workdir:  "/app",
		Hostname: "layers-test",
		Image:    &spec.Image{Ref: "test/app:1"},
		Security: spec.Security{WritableRoot: writable},
	}
}

// TestCreateFromLayers: Create with an image's layers: a sandbox's root is the image's layers stacked,
// id-mapped (the layers' owners as on disk), with corral's /etc files;
// read-only unless the service says otherwise, when writes land in its
// own writable layer; nothing is left when it is destroyed, and the
// layers are as they were.
func TestCreateFromLayers(t *testing.T) {
	for _, writable := range []bool{false, true} {
		t.Run(fmt.Sprintf("writable=%v", writable), func(t *testing.T) {
			layers := imageLayers(t)
			sb := runningSandboxOn(t, imageService("layers", writable), layers)
			if st, err := sb.container.Status(); err != nil || st.String() != "running" {
				ex, werr := sb.Wait()
				t.Fatalf("the sandbox is not running (%v, %v): %s %v", st, err, ex.Reason(), werr)
			}
			code, out := mustExec(t, sb, "cat /app/msg; stat -c %u /app/msg /bin/busybox; test -e /gone || echo gone-is-gone; cat /etc/hostname; touch /written 2>/dev/null && echo wrote || echo read-only")
			want := "from the top layer\n1000\n0\ngone-is-gone\nlayers-test\n"
			if writable {
				want += "wrote\n"
			} else {
				want += "read-only\n"
			}
			if code != 0 || out != want {
				t.Errorf("inside: exit %d, %q; want %q", code, out, want)
			}
			upper := sb.m.upperPath(sb.Name)
			if _, err := os.Lstat(filepath.Join(upper, "upper", "written")); writable != (err == nil) {
				t.Errorf("the write in the writable layer: %v (writable %v)", err, writable)
			}
			if err := sb.Destroy(); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{upper, sb.rec.RootDir} {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("%s after Destroy: %v", p, err)
				}
			}
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(layers[1], "app", "msg"), &st); err != nil || st.Uid != 1000 {
				t.Errorf("the layer's file: uid %d, %v; want it untouched", st.Uid, err)
			}
			if entries, _ := os.ReadDir(layers[1]); len(entries) != 2 || !strings.Contains(fmt.Sprint(entries), "app") {
				t.Errorf("the top layer holds %v after the run, want app and gone only", entries)
			}
		})
	}
}
