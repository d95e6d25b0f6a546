package main

import (
	"errors"
	"io"
	"testing"
)

// TestFlagErrorsNameTheCommandOnce: a bad flag is a usage error (125)
// that names the command it was given to once ("corral: run: ...", never
// "corral: corral: ...").
func TestFlagErrorsNameTheCommandOnce(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown flag: --bogus (see 'corral --help')"},
		{[]string{"run", "--bogus", "--", "/bin/true"}, "run: unknown flag: --bogus (see 'corral run --help')"},
		{[]string{"ps", "--bogus"}, "ps: unknown flag: --bogus (see 'corral ps --help')"},
	} {
		root := newRootCommand()
		root.SetArgs(c.args)
		root.SetOut(io.Discard)
		root.SetErr(io.Discard)
		err := root.Execute()
		var ee *exitError
		if !errors.As(err, &ee) || ee.code != exitCorralError || err.Error() != c.want {
			t.Errorf("%q: %v; want exit %d saying %q", c.args, err, exitCorralError, c.want)
		}
	}
}
