package cgroup

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-dev/corral/internal/testenv"
)

// WarmAttach moves a child of its own into the cgroup it makes (the
// parents too, when asked), and leaves nothing behind but those parents.
func TestWarmAttachMovesAChildAndRemovesItsCgroup(t *testing.T) {
	testenv.NeedRoot(t, "a move into a cgroup needs root")
	h, err := Detect()
	testenv.Need(t, err == nil, fmt.Sprintf("no usable cgroups: %v", err))
	parent := fmt.Sprintf("/corral-unit-%d/parent", os.Getpid())
	root := filepath.Join(h.Mounts["pids"], filepath.Dir(parent))
	t.Cleanup(func() {
		os.Remove(filepath.Join(h.Mounts["pids"], parent))
		os.Remove(root)
	})
	path := parent + "/.warm-web"
	moved := 0
	afterMove = func(pid int) {
		moved = pid
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
		if err != nil {
			t.Errorf("read the child's cgroups: %v", err)
		}
		if !strings.Contains(string(data), ":"+path+"\n") {
			t.Errorf("child %d is not in %s:\n%s", pid, path, data)
		}
	}
	t.Cleanup(func() { afterMove = nil })

	if err := h.WarmAttach(path, true); err != nil {
		t.Fatal(err)
	}
	if moved == 0 {
		t.Fatal("no child was moved")
	}
	if _, err := os.Stat(filepath.Join(h.Mounts["pids"], path)); !os.IsNotExist(err) {
		t.Errorf("the warm-up's cgroup is left: %v", err)
	}
	if _, err := os.Stat(filepath.Join(h.Mounts["pids"], parent)); err != nil {
		t.Errorf("the parent asked for was not made: %v", err)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", moved)); !os.IsNotExist(err) {
		t.Errorf("the child %d is left: %v", moved, err)
	}

	// Done again in the same place: the same, nothing left from before.
	moved = 0
	if err := h.WarmAttach(path, false); err != nil || moved == 0 {
		t.Fatalf("second warm-up: %v (moved %d)", err, moved)
	}
}

// Without makeParents, a missing parent is an error, and nothing is made.
func TestWarmAttachNeedsItsParent(t *testing.T) {
	testenv.NeedRoot(t, "a cgroup is made as root")
	h, err := Detect()
	testenv.Need(t, err == nil, fmt.Sprintf("no usable cgroups: %v", err))
	parent := fmt.Sprintf("/corral-unit-%d-missing", os.Getpid())
	err = h.WarmAttach(parent+"/.warm-web", false)
	if err == nil || !strings.Contains(err.Error(), "warm the cgroup attach lock") {
		t.Fatalf("WarmAttach under a missing parent: %v, want an error", err)
	}
	if _, serr := os.Stat(filepath.Join(h.Mounts["pids"], parent)); !os.IsNotExist(serr) {
		t.Errorf("the missing parent was made: %v", serr)
	}
}
