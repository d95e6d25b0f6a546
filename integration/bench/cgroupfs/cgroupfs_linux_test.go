package cgroupfs

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestDeepestFirst(t *testing.T) {
	top := t.TempDir()
	for _, d := range []string{"a/b/c", "a/d", "e"} {
		if err := os.MkdirAll(filepath.Join(top, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(top, "a", "cgroup.procs"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	got := deepestFirst(top)
	if len(got) != 6 || got[len(got)-1] != top {
		t.Fatalf("got %v: want 6 dirs, %s last", got, top)
	}
	// Every directory comes after all of its subdirectories.
	for i, d := range got {
		for _, later := range got[i+1:] {
			if strings.HasPrefix(later, d+"/") {
				t.Errorf("%s comes before %s, which is below it", d, later)
			}
		}
	}
	if slices.Contains(got, filepath.Join(top, "a", "cgroup.procs")) {
		t.Errorf("a file was listed: %v", got)
	}
	if got := deepestFirst(filepath.Join(top, "missing")); len(got) != 0 {
		t.Errorf("missing top: got %v", got)
	}
}

func TestStatKernel(t *testing.T) {
	for stat, want := range map[string]int64{
		"anon 4096\nfile 0\nkernel 81920\nkernel_stack 16384\n": 81920,
		"anon 4096\nkernel_stack 16384\n":                       0, // an older kernel: no such line
	} {
		got, err := statKernel([]byte(stat))
		if err != nil || got != want {
			t.Errorf("%q: got %d, %v; want %d", stat, got, err, want)
		}
	}
	if _, err := statKernel([]byte("kernel x\n")); err == nil {
		t.Error(`"kernel x": no error`)
	}
}
