package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
	"github.com/corral-dev/corral/internal/userns"
)

// twoLayers writes a bottom and a top layer as an unpacker leaves them
// (overlayfs form): the top replaces a, deletes keep (a 0/0 character
// device) and makes d opaque (only its own y shows, not the bottom's x).
func twoLayers(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	bottom, top := filepath.Join(dir, "0"), filepath.Join(dir, "1")
	for _, f := range []struct{ path, data string }{
		{"0/a", "a0"}, {"0/keep", "k"}, {"0/d/x", "x"}, {"0/bin/tool", "t"},
		{"1/a", "a1"}, {"1/d/y", "y"},
	} {
		p := filepath.Join(dir, f.path)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(f.data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := unix.Mknod(filepath.Join(top, "keep"), unix.S_IFCHR|0o000, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(top, "d"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Fatal(err)
	}
	return []string{bottom, top}
}

func checkMerged(t *testing.T, root string) {
	t.Helper()
	if b, err := os.ReadFile(filepath.Join(root, "a")); err != nil || string(b) != "a1" {
		t.Errorf("a: %q, %v; want the top layer's a1", b, err)
	}
	if _, err := os.Lstat(filepath.Join(root, "keep")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("keep, whited out by the top layer: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(root, "d", "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("d/x, under the top layer's opaque d: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(root, "bin", "tool")); err != nil || string(b) != "t" {
		t.Errorf("bin/tool from the bottom layer: %q, %v", b, err)
	}
}

// TestLayeredStacksAndWritesToItsUpperLayer: the layers stack as
// overlayfs does (with the older kernels' option string too); corral's
// /etc files are there; writes land in the upper layer, never in a layer;
// RemoveDir and RemoveUpper leave the layers as they were.
func TestLayeredStacksAndWritesToItsUpperLayer(t *testing.T) {
	testenv.NeedRoot(t, "it mounts overlays")
	for _, plus := range []bool{true, false} {
		lowerdirPlus = plus
		layeredStacks(t)
	}
	lowerdirPlus = true
}

func layeredStacks(t *testing.T) {
	layers := twoLayers(t)
	dir := t.TempDir()
	stage, upper := filepath.Join(dir, "root"), filepath.Join(dir, "upper")
	r, err := Layered(layers, stage, LayeredOptions{Upper: upper, Etc: NetworkEtc("web", false)})
	if err != nil {
		t.Fatal(err)
	}
	checkMerged(t, r.Path)
	if b, err := os.ReadFile(filepath.Join(r.Path, "etc", "hostname")); err != nil || string(b) != "web\n" {
		t.Errorf("/etc/hostname: %q, %v", b, err)
	}
	if err := os.WriteFile(filepath.Join(r.Path, "a"), []byte("changed"), 0o644); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(upper, "upper", "a")); string(b) != "changed" {
		t.Errorf("the write landed in the upper layer as %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(layers[1], "a")); string(b) != "a1" {
		t.Errorf("the top layer's a became %q: a layer was written", b)
	}
	if err := r.Remove(); err != nil {
		t.Fatal(err)
	}
	if err := RemoveUpper(upper); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{stage, upper} {
		if _, err := os.Lstat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after removal: %v", p, err)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(layers[0], "a")); string(b) != "a0" {
		t.Errorf("the bottom layer's a became %q", b)
	}
	if _, err := Layered(layers, stage, LayeredOptions{}); err == nil {
		t.Error("a layered root without a writable layer was made")
	}
}

// TestLayeredIDMapped: through a sandbox's user namespace, the layers'
// host root files are its root's: seen from the host, the block's.
func TestLayeredIDMapped(t *testing.T) {
	testenv.NeedRoot(t, "it mounts overlays")
	layers := twoLayers(t)
	const block = 1 << 30
	ns, err := userns.Open([]userns.Mapping{{InsideID: 0, HostID: block, Size: 65536}})
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	if err := CheckIDMap(layers[0], ns); errors.Is(err, ErrNoIDMap) {
		// The cgroup-v2 VM's /tmp is tmpfs on 6.1: Layered must say so.
		_, lerr := Layered(layers, filepath.Join(t.TempDir(), "root"), LayeredOptions{Userns: ns, Upper: filepath.Join(t.TempDir(), "upper")})
		if !errors.Is(lerr, ErrNoIDMap) {
			t.Fatalf("on a filesystem that cannot id-map: %v, want ErrNoIDMap", lerr)
		}
		t.Logf("this filesystem cannot id-map (%v): refused as it should be", err)
		return
	}
	stage := filepath.Join(t.TempDir(), "root")
	upper := filepath.Join(t.TempDir(), "upper")
	r, err := Layered(layers, stage, LayeredOptions{Userns: ns, Upper: upper, Owner: block})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := errors.Join(r.Remove(), RemoveUpper(upper)); err != nil {
			t.Error(err)
		}
	}()
	checkMerged(t, r.Path)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(r.Path, "a"), &st); err != nil || st.Uid != block {
		t.Errorf("a through the id-mapped layers: uid %d (%v), want the block's %d", st.Uid, err, block)
	}
	if err := unix.Stat(filepath.Join(layers[1], "a"), &st); err != nil || st.Uid != 0 {
		t.Errorf("a on disk: uid %d (%v), want it untouched (0)", st.Uid, err)
	}
}
