package scale

import (
	"bufio"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// A service is up once the one child of its parent runs the command's
// program; a parent with another program, or two children, is not.
func TestExecd(t *testing.T) {
	for _, tc := range []struct {
		script string
		up     bool
	}{
		{"sleep 100 & echo forked; wait", true},
		{"tail -f /dev/null & echo forked; wait", false},
		{"sleep 100 & sleep 100 & echo forked; wait", false},
	} {
		sh := exec.Command("/bin/sh", "-c", tc.script)
		// A group of its own, so that its children end with it.
		sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		stdout, err := sh.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Start(); err != nil {
			t.Fatal(err)
		}
		// Every child is forked (maybe not exec'd yet) once the shell
		// says so.
		if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		ok := false
		for deadline := time.Now().Add(500 * time.Millisecond); !ok && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			_, ok = execd(sh.Process.Pid)
		}
		if ok != tc.up {
			t.Errorf("%q: up %v, want %v", tc.script, ok, tc.up)
		}
		syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
		sh.Wait()
	}
}
