package alert

import (
	"os/exec"
	"syscall"
)

// killGroup runs cmd in a process group of its own and makes a cancelled
// context kill the whole group, so that a hook's children (a curl started
// by a shell script) do not outlive its timeout.
func killGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
