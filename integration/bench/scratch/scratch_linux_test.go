package scratch

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
)

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		path, dir string
		want      bool
	}{
		{"/var/tmp", "/var/tmp", true},
		{"/var/tmp/x", "/var/tmp", true},
		{"/var/tmpx", "/var/tmp", false},
		{"/var", "/var/tmp", false},
		{"/anything", "/", true},
	} {
		if got := within(tc.path, tc.dir); got != tc.want {
			t.Errorf("within(%q, %q) = %v", tc.path, tc.dir, got)
		}
	}
}

func TestNewRefusesBelowBinary(t *testing.T) {
	bin := t.TempDir()
	if err := os.Mkdir(filepath.Join(bin, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := New(filepath.Join(bin, "tmp"), bin, false); err == nil {
		t.Fatal("a scratch base below corral's directory was accepted")
	}
}

func TestStateDirsAndLeftovers(t *testing.T) {
	s, err := New(t.TempDir(), t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	a, err := s.StateDir("restart", "state")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StateDir("restart", "state"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(a); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("state dir: %v, %v", fi, err)
	}
	if left := s.Leftovers(); len(left) != 0 {
		t.Errorf("no records yet, got %v", left)
	}
	rec := filepath.Join(a, "sandboxes", "web.json")
	if err := os.MkdirAll(filepath.Dir(rec), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rec, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if left := s.Leftovers(); len(left) != 1 || left[0] != rec {
		t.Errorf("got %v, want [%s] once", left, rec)
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.String()); !os.IsNotExist(err) {
		t.Errorf("scratch dir still there: %v", err)
	}
}

// With tmpfs, the scratch dir is a tmpfs of its own, which Remove
// unmounts before it removes the dir; a mount left inside still stops it.
func TestTmpfsScratchIsUnmountedByRemove(t *testing.T) {
	testenv.NeedRoot(t, "the scratch dir's tmpfs is mounted")
	s, err := New(t.TempDir(), t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	if typ := s.FSType(); typ != "tmpfs" {
		t.Errorf("scratch dir on %s, want tmpfs", typ)
	}
	inner := s.Path("inner")
	if err := os.Mkdir(inner, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("inner", inner, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(); err == nil {
		t.Fatal("Remove went on with a mount left inside")
	}
	if err := unix.Unmount(inner, 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(s.String()); !os.IsNotExist(err) {
		t.Errorf("scratch dir left: %v", err)
	}
}
