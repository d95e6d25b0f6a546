package coldstart

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"time"
)

// Variant is one way of running /bin/true in a sandbox.
type Variant struct {
	name string
	note string // its root and seccomp profile, for the table
	// argv is the command of the n-th run (from 1); runc and crun need a
	// new container id each time.
	argv func(n int) []string
	exec executor
	// sweep removes what a failed or interrupted run may have left in
	// the tool's own state.
	sweep func() error
	runs  int
	// Stderr receives the command's stderr, read back only when a run
	// fails; its owner closes it.
	Stderr *os.File
}

// executor runs one command to its end and times it.
type executor interface {
	run(argv []string, streams stdio) (time.Duration, error)
}

// stdio are the command's streams: stdin and stdout on /dev/null, stderr
// on a file that is read only when the run fails. Files rather than pipes,
// so that no copying goroutine sits in the timed path.
type stdio struct {
	null, stderr *os.File
}

// hostExec runs commands as children of the bench, in its namespaces.
type hostExec struct{}

func (hostExec) run(argv []string, streams stdio) (time.Duration, error) {
	return timeCommand(argv, streams)
}

// timeCommand is the measurement: wall-clock from just before the fork to
// just after the wait, so it covers everything the tool does, its own
// start-up and tear-down included.
func timeCommand(argv []string, streams stdio) (time.Duration, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = streams.null, streams.null, streams.stderr
	start := time.Now()
	err := cmd.Run()
	return time.Since(start), err
}

// RunOnce runs the variant's next command, with stdin and stdout on null,
// and returns its time. A run that fails (any exit status but 0) is an
// error carrying the command's stderr.
func (v *Variant) RunOnce(null *os.File) (time.Duration, error) {
	v.runs++
	if err := rewind(v.Stderr); err != nil {
		return 0, fmt.Errorf("%s: reset stderr file: %w", v.name, err)
	}
	argv := v.argv(v.runs)
	d, err := v.exec.run(argv, stdio{null: null, stderr: v.Stderr})
	if err != nil {
		return 0, fmt.Errorf("%s: run %d: %s: %w%s", v.name, v.runs, strings.Join(argv, " "), err, stderrTail(v.Stderr))
	}
	return d, nil
}

func rewind(f *os.File) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.Seek(0, io.SeekStart)
	return err
}

// stderrTail is what the failed command wrote on stderr, indented for the
// error message.
func stderrTail(f *os.File) string {
	data, err := os.ReadFile(f.Name())
	if err != nil {
		return "\n\t(stderr unreadable: " + err.Error() + ")"
	}
	text := strings.TrimSpace(string(data))
	if text == "" {
		return "\n\t(nothing on stderr)"
	}
	const limit = 4000
	if len(text) > limit {
		text = "..." + text[len(text)-limit:]
	}
	return "\n\tstderr: " + strings.ReplaceAll(text, "\n", "\n\t        ")
}
