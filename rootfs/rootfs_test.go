package rootfs

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/corral-dev/corral/internal/testenv"
)

func TestDirectory(t *testing.T) {
	dir := t.TempDir()
	r, err := Directory(dir)
	if err != nil {
		t.Fatalf("Directory(%s): %v", dir, err)
	}
	if r.Path != dir || len(r.Mounts) != 0 || r.owned {
		t.Errorf("Directory(%s) = %+v, want the path as is, no mounts, not owned", dir, r)
	}
}

func TestDirectoryRelative(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "tree"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	r, err := Directory("tree/")
	if err != nil {
		t.Fatalf("Directory(tree/): %v", err)
	}
	if want := filepath.Join(dir, "tree"); r.Path != want {
		t.Errorf("Directory(tree/).Path = %q, want the absolute %q", r.Path, want)
	}
}

func TestDirectoryErrors(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path, why string
	}{
		{file, "not a directory"},
		{filepath.Join(dir, "missing"), "no such file or directory"},
		{filepath.Join(file, "below"), "not a directory"},
	} {
		r, err := Directory(tc.path)
		if err == nil {
			t.Errorf("Directory(%s) = %+v, want an error", tc.path, r)
			continue
		}
		if !strings.Contains(err.Error(), tc.path) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("Directory(%s) error %q, want it to name the path and say %q", tc.path, err, tc.why)
		}
	}
}

func TestDirectoryRemoveKeepsTheTree(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "keep"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := Directory(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keep")); err != nil {
		t.Errorf("Remove deleted an operator's root: %v", err)
	}
}

func TestApply(t *testing.T) {
	r := &Root{
		Path: "/roots/web",
		Mounts: []rspec.Mount{
			{Destination: "/usr", Source: "/usr", Type: "bind"},
			{Destination: "/etc/ssl/certs", Source: "/etc/ssl/certs", Type: "bind"},
		},
	}
	for _, tc := range []struct {
		desc string
		spec *rspec.Spec
	}{
		{"no root section", &rspec.Spec{Mounts: []rspec.Mount{{Destination: "/data"}, {Destination: "/proc"}}}},
		{"a root section", &rspec.Spec{Root: &rspec.Root{Path: "/old", Readonly: true}, Mounts: []rspec.Mount{{Destination: "/data"}, {Destination: "/proc"}}}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := tc.spec
			readonly := s.Root != nil && s.Root.Readonly
			r.Apply(s)
			if s.Root == nil || s.Root.Path != "/roots/web" {
				t.Fatalf("root = %+v, want path /roots/web", s.Root)
			}
			if s.Root.Readonly != readonly {
				t.Errorf("Apply changed Root.Readonly to %v", s.Root.Readonly)
			}
			var got []string
			for _, m := range s.Mounts {
				got = append(got, m.Destination)
			}
			if want := []string{"/usr", "/etc/ssl/certs", "/data", "/proc"}; !slices.Equal(got, want) {
				t.Errorf("mounts = %q, want the root's first: %q", got, want)
			}
		})
	}
	// The root's own list is not shared with the spec.
	s := &rspec.Spec{}
	r.Apply(s)
	s.Mounts[0].Destination = "/changed"
	if r.Mounts[0].Destination != "/usr" {
		t.Error("Apply shares the root's mount list with the spec")
	}
}

func TestRemoveDirMissing(t *testing.T) {
	if err := RemoveDir(filepath.Join(t.TempDir(), "missing")); err != nil {
		t.Errorf("RemoveDir(missing) = %v, want nil", err)
	}
}

func TestRemoveDir(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	outside := filepath.Join(base, "outside")
	for _, d := range []string{filepath.Join(root, "a", "b", "c"), filepath.Join(root, "empty"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(root, "f"), filepath.Join(root, "a", "b", "c", "g"), filepath.Join(outside, "keep")} {
		if err := os.WriteFile(f, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Symlinks out of the tree are removed, never followed.
	for name, target := range map[string]string{"abs": outside, "rel": "../outside", "a/b/up": "../../../outside", "dangling": "/nonexistent"} {
		if err := os.Symlink(target, filepath.Join(root, name)); err != nil {
			t.Fatal(err)
		}
	}
	// A read-only directory does not stop root.
	if err := os.Chmod(filepath.Join(root, "a", "b"), 0o555); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.Chmod(filepath.Join(root, "a", "b"), 0o755) })
	if err := RemoveDir(root); err != nil {
		testenv.Need(t, os.Getuid() == 0 || !errors.Is(err, os.ErrPermission), "removing from a read-only directory needs root: "+err.Error())
		t.Fatalf("RemoveDir: %v", err)
	}
	if _, err := os.Lstat(root); !os.IsNotExist(err) {
		t.Errorf("root still there after RemoveDir (lstat error %v)", err)
	}
	if _, err := os.Stat(filepath.Join(outside, "keep")); err != nil {
		t.Errorf("RemoveDir followed a symlink out of the root: %v", err)
	}
}

func TestRemoveDirOnFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := RemoveDir(file)
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("RemoveDir(a file) = %v, want an error naming it", err)
	}
	if _, err := os.Stat(file); err != nil {
		t.Errorf("RemoveDir removed a file it was not meant for: %v", err)
	}
}

func TestRemoveDirOnSymlink(t *testing.T) {
	base := t.TempDir()
	target := filepath.Join(base, "target")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(target, "precious")
	if err := os.WriteFile(precious, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(base, "root")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	err := RemoveDir(link)
	if _, statErr := os.Stat(precious); statErr != nil {
		t.Errorf("RemoveDir(a symlink) = %v and deleted what it points to: %v", err, statErr)
	}
}
