// Package testenv says, for tests, whether the machine can run them. A
// test that needs root (namespaces, cgroups, mounts) skips on a
// developer's unprivileged run, with the reason; under CI (CI set), which
// runs as root on a machine that has all of it, the same lack is a
// failure, so that a test that matters can never pass by skipping.
package testenv

import (
	"os"
	"testing"
)

// Need skips (or, under CI, fails) t unless ok, saying why.
func Need(t testing.TB, ok bool, why string) {
	t.Helper()
	if ok {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI runs as root on a machine with namespaces and cgroups, yet: " + why)
	}
	t.Skip(why)
}

// NeedRoot is Need(t, running as root, why).
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	Need(t, os.Geteuid() == 0, "needs root: "+why)
}
