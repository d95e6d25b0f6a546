package rootfs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// TestTemplateIsMadeOnceAndShared: concurrent callers get one template,
// with the tree HostBind makes and empty /etc files where each sandbox's
// own are bound; nothing half-made is left beside it.
func TestTemplateIsMadeOnceAndShared(t *testing.T) {
	dir := t.TempDir()
	paths := make([]string, 8)
	var wg sync.WaitGroup
	for i := range paths {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tpl, err := EnsureTemplate(dir)
			if err != nil {
				t.Error(err)
				return
			}
			paths[i] = tpl.Path
		}()
	}
	wg.Wait()
	for _, p := range paths[1:] {
		if p != paths[0] {
			t.Fatalf("templates %s and %s", paths[0], p)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || !IsTemplate(entries[0].Name()) {
		t.Fatalf("roots dir holds %v, want only the template", entries)
	}
	tpl := paths[0]
	full := hostBind(t, HostBindOptions{Hostname: "web"})
	for _, d := range []string{"proc", "dev", "sys", "tmp", "run", "root", "var", "etc/nsswitch.conf", "etc/os-release"} {
		if _, err := os.Lstat(filepath.Join(full.Path, d)); err != nil {
			continue // not on this host
		}
		if _, err := os.Lstat(filepath.Join(tpl, d)); err != nil {
			t.Errorf("the template lacks /%s, which HostBind makes: %v", d, err)
		}
	}
	for _, name := range sandboxEtc {
		data, err := os.ReadFile(filepath.Join(tpl, "etc", name))
		if err != nil || len(data) != 0 {
			t.Errorf("template /etc/%s: %q, %v; want an empty file to bind over", name, data, err)
		}
	}
	// Again: the same one, not a new one.
	if again, err := EnsureTemplate(dir); err != nil || again.Path != tpl {
		t.Errorf("EnsureTemplate again = %+v, %v; want %s", again, err, tpl)
	}
}

// TestHostBindShared: the template is the root; the sandbox's own /etc
// files are in its dir, bound read-only over the template's; Remove
// takes its dir only.
func TestHostBindShared(t *testing.T) {
	roots := t.TempDir()
	tpl, err := EnsureTemplate(roots)
	if err != nil {
		t.Fatal(err)
	}
	own := filepath.Join(roots, "web")
	r, err := HostBindShared(tpl, own, HostBindOptions{Hostname: "web", UID: 1000, GID: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if r.Path != tpl.Path || !r.Shared() || !r.IsBuiltin() {
		t.Fatalf("root %+v, want the shared template %s", r, tpl.Path)
	}
	for _, name := range sandboxEtc {
		i := slices.IndexFunc(r.Mounts, func(m rspec.Mount) bool { return m.Destination == "/etc/"+name })
		if i < 0 {
			t.Errorf("no bind of /etc/%s", name)
			continue
		}
		m := r.Mounts[i]
		if m.Source != filepath.Join(own, name) || !slices.Contains(m.Options, "ro") {
			t.Errorf("/etc/%s bind %+v, want read-only from %s", name, m, own)
		}
	}
	if data, _ := os.ReadFile(filepath.Join(own, "hostname")); string(data) != "web\n" {
		t.Errorf("hostname %q", data)
	}
	if data, _ := os.ReadFile(filepath.Join(own, "passwd")); !strings.Contains(string(data), "sandbox:x:1000:1000:") {
		t.Errorf("passwd %q lacks the sandbox user", data)
	}
	if err := r.GiveTo(1000, 1000); err == nil {
		t.Error("GiveTo of the shared root succeeded")
	}
	if err := r.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(own); !os.IsNotExist(err) {
		t.Errorf("its dir is left after Remove: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(tpl.Path, "etc")); err != nil {
		t.Errorf("Remove touched the template: %v", err)
	}
}

// TestHasMountpoints: what the template holds (and what lies below
// another mount) needs nothing; one more mount point in its tree does.
func TestHasMountpoints(t *testing.T) {
	tpl, err := EnsureTemplate(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r := &Root{Path: tpl.Path, shared: true}
	usual := []rspec.Mount{
		{Destination: "/proc", Type: "proc"},
		{Destination: "/dev", Type: "tmpfs"},
		{Destination: "/dev/.corral-init", Type: "bind"},
		{Destination: "/etc/hostname", Type: "bind"},
		{Destination: "/tmp", Type: "tmpfs"},
	}
	if ok, err := r.HasMountpoints(usual); err != nil || !ok {
		t.Errorf("usual mounts: %v, %v; want them all there", ok, err)
	}
	for _, extra := range []string{"/data", "/var/lib/app", "/etc/app.conf"} {
		if ok, _ := r.HasMountpoints(append(slices.Clone(usual), rspec.Mount{Destination: extra, Type: "bind"})); ok {
			t.Errorf("%s: reported there", extra)
		}
		if _, err := os.Lstat(filepath.Join(tpl.Path, extra)); !os.IsNotExist(err) {
			t.Errorf("%s was made in the template: %v", extra, err)
		}
	}
	if err := r.MakeMountpoints([]rspec.Mount{{Destination: "/data", Type: "bind"}}); err == nil {
		t.Error("MakeMountpoints in the shared root succeeded")
	}
}
