package sandbox

import (
	"errors"
	"fmt"
	"io/fs"
	"os/exec"
	"syscall"
	"testing"
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
