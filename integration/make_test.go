package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/corral-dev/corral/internal/testenv"
)

// TestMakeDepsUsesAptOnlyForWhatIsMissing: `make deps` (and so `make up`
// and `make install`) runs apt-get only when a package is missing, and
// then installs only those. apt-get is a stand-in here that records how
// it was called.
func TestMakeDepsUsesAptOnlyForWhatIsMissing(t *testing.T) {
	for _, tool := range []string{"make", "dpkg-query"} {
		_, err := exec.LookPath(tool)
		testenv.Need(t, err == nil, "needs "+tool+" (a Debian or Ubuntu machine, as the Makefile does)")
	}
	bin, calls := t.TempDir(), filepath.Join(t.TempDir(), "calls")
	fake := "#!/bin/sh\necho \"$*\" >> " + calls + "\n"
	if err := os.WriteFile(filepath.Join(bin, "apt-get"), []byte(fake), 0o755); err != nil {
		t.Fatal(err)
	}
	deps := func(packages string) (string, []string) {
		t.Helper()
		_ = os.Remove(calls)
		cmd := exec.Command("make", "--no-print-directory", "-C", "..", "deps", "DEPS="+packages)
		cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make deps DEPS=%q: %v\n%s", packages, err, out)
		}
		data, _ := os.ReadFile(calls)
		return string(out), strings.Split(strings.TrimSpace(string(data)), "\n")
	}
	// coreutils is Essential: installed on every Debian machine.
	out, called := deps("coreutils")
	if called[0] != "" {
		t.Errorf("with every package installed, make deps ran apt-get %q\n%s", called, out)
	}
	out, called = deps("coreutils corral-test-no-such-package")
	if len(called) != 2 || !strings.HasPrefix(called[0], "update") || !strings.HasPrefix(called[1], "install") ||
		!strings.HasSuffix(called[1], " corral-test-no-such-package") || strings.Contains(called[1], "coreutils") {
		t.Errorf("with a package missing, make deps ran apt-get %q; want update, then install of the missing one only\n%s", called, out)
	}
}
