package scale

import (
	"errors"
	"fmt"
	"time"

	"github.com/corral-dev/corral/integration/bench/execwatch"
	"github.com/corral-dev/corral/integration/bench/procfs"
	"github.com/corral-dev/corral/internal/procstat"
)

// A service is up once its command has exec'd, for corral and s6 alike.
// Each service has a process that is a child of the supervisor (a corral
// sandbox's init is the daemon's child, libcontainer's nsexec starting it
// with CLONE_PARENT; an s6-supervise is s6-svscan's), and its command is
// that process's child, once it runs the command's program.
//
// When a command exec'd comes from the kernel's exec events (execwatch),
// with the kernel's time of the execve, so that the bench reads next to
// nothing while the services start. If the kernel drops events (its
// socket buffer full), the supervisor's children are scanned once; where
// the kernel sends no exec events at all, they are scanned every
// execPoll. A service first seen by a scan has the scan's time, unless
// its event turns up after all.
//
// corral's daemon reports a service "running" once libcontainer has
// started the sandbox's init, before the init forks the command: the
// daemon's "running" is not the event.
const execPoll = 10 * time.Millisecond

// checkEvery is how often the waits look at the supervisor itself: has
// it exited, has the daemon's event stream been quiet too long.
const checkEvery = 500 * time.Millisecond

// upWatch follows one supervisor's services until they are up.
type upWatch struct {
	supervisor  int              // its PID; 0 until it is started
	serviceComm string           // the name of a service's process
	events      *execwatch.Watch // nil: the kernel sends none
	found       map[int]upService
	// lost counts the kernel's reports of dropped events.
	lost int
}

// upService is a service's command and when it exec'd.
type upService struct {
	cmd       int
	at        time.Time
	fromEvent bool
}

// watchExecs subscribes to exec events before a supervisor is started,
// so that none of its services' is missed. Where there are none, it
// returns a nil Watch and says why.
func watchExecs() (*execwatch.Watch, string) {
	w, err := execwatch.Open()
	if errors.Is(err, execwatch.ErrNoEvents) {
		return nil, fmt.Sprintf("the services were polled every %s, not told by the kernel's exec events: %v", execPoll, err)
	}
	if err != nil {
		return nil, err.Error()
	}
	return w, ""
}

func newUpWatch(events *execwatch.Watch, serviceComm string) *upWatch {
	return &upWatch{serviceComm: serviceComm, events: events, found: map[int]upService{}}
}

// execs is the event channel; nil (never ready) without events.
func (u *upWatch) execs() <-chan execwatch.Event {
	if u.events == nil {
		return nil
	}
	return u.events.C
}

// scans ticks every execPoll when there are no exec events, and never
// when there are.
func (u *upWatch) scans() (<-chan time.Time, func()) {
	if u.events != nil {
		return nil, func() {}
	}
	t := time.NewTicker(execPoll)
	return t.C, t.Stop
}

// exec takes an exec event: the exec of a command of one of the
// supervisor's services, or another process's, or a loss.
func (u *upWatch) exec(ev execwatch.Event) {
	if ev.Lost {
		u.lost++
		u.scan(time.Now())
		return
	}
	st, err := procstat.Read(ev.PID)
	if err != nil || st.Comm != commandName {
		return
	}
	parent, err := procstat.Read(st.PPID)
	if err != nil || parent.PPID != u.supervisor || parent.Comm != u.serviceComm {
		return
	}
	// An s6 service execs twice in one process, its run script's shell
	// and then sleep: an event read once both are done passes the test
	// above too. The later exec is the command's.
	if s, ok := u.found[st.PPID]; ok && s.fromEvent && s.cmd == ev.PID && !ev.At.After(s.at) {
		return
	}
	u.found[st.PPID] = upService{cmd: ev.PID, at: ev.At, fromEvent: true}
}

// scan looks at the supervisor's children for services up and not seen
// yet, and takes now as their time.
func (u *upWatch) scan(now time.Time) {
	kids, err := procfs.Children(u.supervisor)
	if err != nil {
		return
	}
	for _, k := range kids {
		if _, ok := u.found[k]; ok || procfs.Comm(k) != u.serviceComm {
			continue
		}
		if cmd, ok := execd(k); ok {
			u.found[k] = upService{cmd: cmd, at: now}
		}
	}
}

// drain takes the events already received, once every service is up: one
// may hold an earlier time than a scan's, or a later exec of the same
// command.
func (u *upWatch) drain() {
	for {
		select {
		case ev, ok := <-u.execs():
			if !ok {
				return
			}
			u.exec(ev)
		default:
			return
		}
	}
}

// scanned counts the services whose time is a scan's.
func (u *upWatch) scanned() int {
	n := 0
	for _, s := range u.found {
		if !s.fromEvent {
			n++
		}
	}
	return n
}

// times are when the first and the last service came up.
func (u *upWatch) times() upTimes {
	var t upTimes
	for _, s := range u.found {
		if t.first.IsZero() || s.at.Before(t.first) {
			t.first = s.at
		}
		if s.at.After(t.last) {
			t.last = s.at
		}
	}
	return t
}

// execd returns the command parent runs, once it has exec'd: parent's one
// child, running the command's program. A child forked but not yet
// exec'd still bears its parent's name.
func execd(parent int) (cmd int, ok bool) {
	kids, err := procfs.Children(parent)
	if err != nil || len(kids) != 1 || procfs.Comm(kids[0]) != commandName {
		return 0, false
	}
	return kids[0], true
}
