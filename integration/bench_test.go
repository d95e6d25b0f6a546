package integration

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/corral-dev/corral/internal/testenv"
)

// The bench's cold and restart parts run end to end against the corral
// under test, with the smallest counts: a part broken by a change
// elsewhere fails here rather than at the next `make bench` (the restart
// part could not write its stamp once every sandbox had a user namespace
// of its own, and nothing noticed for several stops). It checks that the
// parts run, clean up and report their goals, not their figures.
func TestBenchColdAndRestartPartsRun(t *testing.T) {
	for _, tool := range []string{"runc", "supervisord", "s6-svscan"} {
		_, err := exec.LookPath(tool)
		testenv.Need(t, err == nil, tool+" is not installed (make deps installs it): the parts compare corral with it")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command builds the bench: %v", err)
	}
	bench := t.TempDir() + "/corral-bench"
	if out, err := exec.Command(goBin, "build", "-tags", "seccomp netgo osusergo", "-o", bench, "../cmd/corral-bench").CombinedOutput(); err != nil {
		t.Fatalf("build the bench: %v\n%s", err, out)
	}
	cmd := exec.Command(bench, "--corral", corralBin, "--only", "cold,restart",
		"--rounds", "2", "--warmup", "0", "--kills", "1", "--crun", "",
		// The run's work dir, which sandboxes in their own user namespaces
		// can pass through (a test's temporary dir is 0700).
		"--scratch-base", workDir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("corral-bench: %v\n%s", err, out)
	}
	for _, want := range []string{
		"scratch:", "(tmpfs)",
		"corral --rootfs busybox / runc: ", "goal <= 0.50x",
		"corral restart p50 ", "(goal <= +2 ms: ",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the bench's report lacks %q:\n%s", want, out)
		}
	}
}
