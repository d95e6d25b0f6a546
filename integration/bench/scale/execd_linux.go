package scale

import (
	"time"

	"github.com/corral-dev/corral/integration/bench/procfs"
)

// A service is up once its command has exec'd, for corral and s6 alike:
// the process that starts the command (a corral sandbox's init, or an
// s6-supervise) has one child, and that child runs the command's program.
// A child forked but not yet exec'd still bears its parent's name
// (".corral-init", "s6-supervise"). Both are seen the same way, by
// polling every execPoll; a service seen up is not looked at again.
//
// corral's daemon reports a service "running" once libcontainer has
// started the sandbox's init, which then forks and execs the command: the
// daemon's "running" comes before the exec, so it is not the event.
const execPoll = 10 * time.Millisecond

// execd returns the command parent runs, once it has exec'd.
func execd(parent int) (cmd int, ok bool) {
	kids, err := procfs.Children(parent)
	if err != nil || len(kids) != 1 || procfs.Comm(kids[0]) != commandName {
		return 0, false
	}
	return kids[0], true
}
