package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/corral-dev/corral/runtime/cgroup"
)

func TestClassifyStartError(t *testing.T) {
	// libcontainer's init reports exec.LookPath's error as text over a
	// pipe: only the message survives.
	asText := func(err error) error { return fmt.Errorf("unable to start container process: %s", err) }
	for _, tc := range []struct {
		desc    string
		command string
		err     error
		want    error // nil: returned as is
	}{
		{"not in PATH", "nope", asText(&exec.Error{Name: "nope", Err: exec.ErrNotFound}), ErrCommandNotFound},
		{"no such file", "/bin/nope", asText(&exec.Error{Name: "/bin/nope", Err: &fs.PathError{Op: "stat", Path: "/bin/nope", Err: syscall.ENOENT}}), ErrCommandNotFound},
		{"not executable", "/etc/passwd", asText(&exec.Error{Name: "/etc/passwd", Err: fs.ErrPermission}), ErrCommandNotExecutable},
		{"a directory", "/etc", asText(fmt.Errorf("exec: %q: is a directory", "/etc")), ErrCommandNotExecutable},
		{"another command's error", "/bin/sh", asText(&exec.Error{Name: "/bin/other", Err: exec.ErrNotFound}), nil},
		{"not about exec", "/bin/sh", errors.New("open /dev/null: no such file or directory"), nil},
		{"exec error of another kind", "/bin/sh", asText(fmt.Errorf("exec: %q: exec format error", "/bin/sh")), nil},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			got := classifyStartError(tc.command, tc.err)
			if tc.want == nil {
				if got != tc.err {
					t.Errorf("classifyStartError = %v, want the error unchanged", got)
				}
				return
			}
			if !errors.Is(got, tc.want) {
				t.Errorf("classifyStartError = %v, want errors.Is %v", got, tc.want)
			}
			if got.Error() != tc.want.Error()+": "+tc.err.Error() {
				t.Errorf("classifyStartError = %q, want the class and the original message", got)
			}
		})
	}
}

func TestOOMGroupOnlyOnV2(t *testing.T) {
	for _, tc := range []struct {
		mode cgroup.Mode
		want map[string]string
	}{
		{cgroup.Unified, map[string]string{"memory.oom.group": "1"}},
		{cgroup.Hybrid, nil},
		{cgroup.Legacy, nil},
	} {
		s := &rspec.Spec{Linux: &rspec.Linux{Resources: &rspec.LinuxResources{}}}
		oomGroup(s, tc.mode)
		if got := s.Linux.Resources.Unified; !maps.Equal(got, tc.want) || (got == nil) != (tc.want == nil) {
			t.Errorf("%s: unified resources %v, want %v", tc.mode, got, tc.want)
		}
	}
	// Other unified keys are kept.
	s := &rspec.Spec{Linux: &rspec.Linux{Resources: &rspec.LinuxResources{Unified: map[string]string{"memory.high": "1000000"}}}}
	oomGroup(s, cgroup.Unified)
	if want := map[string]string{"memory.high": "1000000", "memory.oom.group": "1"}; !maps.Equal(s.Linux.Resources.Unified, want) {
		t.Errorf("unified resources %v, want %v", s.Linux.Resources.Unified, want)
	}
}

func TestClaimParentsShared(t *testing.T) {
	root := t.TempDir()
	h := &cgroup.Host{Mode: cgroup.Hybrid, Mounts: map[string]string{"memory": root}, Roots: []string{root}}
	m := &Manager{cgroups: h, parents: map[string]int{}}
	mkdir := func(p string) {
		if err := os.MkdirAll(filepath.Join(root, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	claim := func(parent string, want ...string) []string {
		t.Helper()
		got := m.claimParents(parent)
		if !slices.Equal(got, want) {
			t.Errorf("claimParents(%q) = %q, want %q", parent, got, want)
		}
		return got
	}
	mkdir("/operator")
	// The first sandbox makes /a/b and /a; the next ones under them claim
	// them too, whether they exist by then or not.
	first := claim("/a/b", "/a/b", "/a")
	mkdir("/a/b")
	second := claim("/a/b", "/a/b", "/a")
	third := claim("/a/c", "/a/c", "/a")
	// A cgroup corral did not make is never claimed.
	claim("/operator/x", "/operator/x")
	claim("/operator", []string(nil)...)
	// The first one ends first: the others still claim what it made.
	m.unclaimParents(first)
	claim("/a/b", "/a/b", "/a")
	// With no claims left, an existing /a is no longer this manager's:
	// someone else made it since.
	m.unclaimParents(second)
	m.unclaimParents(third)
	m.unclaimParents([]string{"/a/b", "/a"}) // the fourth claim above
	if len(m.parents) != 1 || m.parents["/operator/x"] != 1 {
		t.Errorf("claims left: %v, want only /operator/x", m.parents)
	}
	claim("/a/b")
}

// TestReleaseRemovesParentsOnlyWithTheLastClaim: a sandbox that ends while
// another, made under the same parents, has claimed them but not made
// its own cgroup yet must not remove them under it.
func TestReleaseRemovesParentsOnlyWithTheLastClaim(t *testing.T) {
	root := t.TempDir()
	h := &cgroup.Host{Mode: cgroup.Hybrid, Mounts: map[string]string{"memory": root}, Roots: []string{root}}
	m := &Manager{cgroups: h, parents: map[string]int{}, stateDir: t.TempDir()}
	exists := func(p string) bool {
		_, err := os.Stat(filepath.Join(root, p))
		return err == nil
	}
	first := m.claimParents("/a/b")
	if err := os.MkdirAll(filepath.Join(root, "/a/b/one"), 0o755); err != nil {
		t.Fatal(err)
	}
	second := m.claimParents("/a/b") // claimed; its cgroup /a/b/two not made yet
	rec1 := &record{Name: "one", CgroupPath: "/a/b/one", CreatedCgroups: first}
	if err := m.release(rec1, first, true); err != nil {
		t.Fatal(err)
	}
	if exists("/a/b/one") || !exists("/a/b") || !exists("/a") {
		t.Fatalf("after the first release: one %v, /a/b %v, /a %v; want the parents kept for the second", exists("/a/b/one"), exists("/a/b"), exists("/a"))
	}
	rec2 := &record{Name: "two", CgroupPath: "/a/b/two", CreatedCgroups: second}
	if err := m.release(rec2, second, true); err != nil {
		t.Fatal(err)
	}
	if exists("/a/b") || exists("/a") || len(m.parents) != 0 {
		t.Errorf("after the last release: /a/b %v, /a %v, claims %v; want all gone", exists("/a/b"), exists("/a"), m.parents)
	}
}
