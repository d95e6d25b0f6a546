package daemon

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// maxExits is how many past exits a service keeps for `corral status`.
const maxExits = 10

// service is one supervised service. Its goroutine (run) owns the record,
// the sandbox and the timer; everything else talks to it through cmds and
// reads it through snapshot().
type service struct {
	name string
	d    *Daemon
	log  logrus.FieldLogger
	cmds chan command

	// Owned by run.
	unit   *spec.Unit
	rec    supervisor.Record
	sb     *sandbox.Sandbox
	timer  *time.Timer
	exited chan exitReport
	// keepIntent: stops from here on are the daemon's, not the
	// operator's, and must not be remembered as the operator's wish.
	keepIntent bool
	// saved is what was last written to the state dir (see save).
	saved savedService

	mu   sync.Mutex // guards view
	view view
}

// view is what readers see of a service, updated by run after each step.
type view struct {
	rec     supervisor.Record
	pid     int
	cgroup  string
	command []string
	exits   []api.Exit
	done    bool // the goroutine has ended (service removed)
}

type commandKind int

const (
	cmdEvent  commandKind = iota // feed ev to the state machine
	cmdUpdate                    // new unit: restart if the sandbox changed, else swap policy / limits
	cmdRemove                    // stop, then end the goroutine
)

type command struct {
	kind     commandKind
	ev       supervisor.Event
	unit     *spec.Unit
	restart  bool         // cmdUpdate: the sandbox itself changed
	shutdown bool         // cmdRemove: the daemon is stopping; keep the operator's intent as it was
	reply    chan<- error // optional
}

type exitReport struct {
	exit sandbox.Exit
	err  error
}

func newService(d *Daemon, u *spec.Unit, rec supervisor.Record, saved savedService) *service {
	s := &service{
		name:   u.Service.Name,
		d:      d,
		log:    d.log.WithField("service", u.Service.Name),
		cmds:   make(chan command, 16),
		unit:   u,
		rec:    rec,
		exited: make(chan exitReport, 1),
		saved:  saved,
	}
	s.view = view{rec: rec, command: u.Service.Command, exits: saved.Exits}
	return s
}

// adopt makes sb, left running (or ended) by an earlier daemon, the
// service's sandbox, and watches it as if this daemon had started it.
func (s *service) adopt(sb *sandbox.Sandbox) {
	s.sb = sb
	s.watch(sb)
	pid, _ := sb.Pid()
	s.mu.Lock()
	s.view.pid, s.view.cgroup = pid, sb.CgroupPath()
	s.mu.Unlock()
}

// watch reports the sandbox's end on s.exited.
func (s *service) watch(sb *sandbox.Sandbox) {
	go func() {
		exit, err := sb.Wait()
		s.exited <- exitReport{exit: exit, err: err}
	}()
}

// send hands a command to the service's goroutine and waits for it to be
// taken (not carried out).
func (s *service) send(ctx context.Context, c command) error {
	select {
	case s.cmds <- c:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *service) snapshot() view {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.view
	v.exits = append([]api.Exit(nil), v.exits...)
	return v
}

// run is the service's goroutine: it waits on commands, the sandbox's
// exit and the one timer, and carries out what the state machine says.
func (s *service) run(ctx context.Context) {
	defer s.d.wg.Done()
	var timerC <-chan time.Time
	if s.timer != nil {
		timerC = s.timer.C // armed by a step before the goroutine began
	}
	removing := false
	for {
		select {
		case c := <-s.cmds:
			switch c.kind {
			case cmdEvent:
				timerC = s.step(c.ev, timerC)
			case cmdUpdate:
				timerC = s.update(c, timerC)
			case cmdRemove:
				removing = true
				s.keepIntent = c.shutdown
				timerC = s.step(supervisor.Event{Kind: supervisor.EvStop}, timerC)
			}
			if c.reply != nil {
				c.reply <- nil
			}
		case r := <-s.exited:
			ev := s.reap(r)
			timerC = s.step(ev, timerC)
		case <-timerC:
			timerC = nil
			timerC = s.step(supervisor.Event{Kind: supervisor.EvTimer}, timerC)
		case <-ctx.Done():
			// The daemon is going away without a shutdown (tests cancel
			// the context): leave the sandbox to the next daemon.
			return
		}
		if removing && s.sb == nil && s.rec.State != supervisor.Stopping && s.rec.State != supervisor.Starting {
			if !s.keepIntent {
				// Removed from the configuration: forget it.
				if err := os.Remove(s.d.savedPath(s.name)); err != nil && !os.IsNotExist(err) {
					s.log.WithError(err).Warn("remove saved state")
				}
			}
			s.mu.Lock()
			s.view.done = true
			s.mu.Unlock()
			return
		}
	}
}

// step feeds one event to the state machine and carries out its actions.
func (s *service) step(ev supervisor.Event, timerC <-chan time.Time) <-chan time.Time {
	for {
		before := s.rec
		pol := supervisor.Policy{Restart: s.unit.Restart, Stop: s.unit.Stop}
		var acts []supervisor.Action
		s.rec, acts = supervisor.Step(s.rec, ev, pol, time.Now(), rand.Float64)
		var next *supervisor.Event
		for _, a := range acts {
			switch a.Kind {
			case supervisor.ActStart:
				next = s.start()
			case supervisor.ActSignal:
				if s.sb != nil {
					if err := s.sb.Signal(a.Signal); err != nil {
						s.log.WithError(err).Debug("signal")
					}
				}
			case supervisor.ActKill:
				if s.sb != nil {
					if err := s.sb.KillAll(); err != nil {
						s.log.WithError(err).Warn("kill")
					}
				}
			case supervisor.ActSetTimer:
				s.stopTimer()
				s.timer = time.NewTimer(a.Delay)
				timerC = s.timer.C
			case supervisor.ActStopTimer:
				s.stopTimer()
				timerC = nil
			}
		}
		s.publish(before, ev)
		if next == nil {
			return timerC
		}
		ev = *next
	}
}

func (s *service) stopTimer() {
	if s.timer != nil {
		s.timer.Stop()
		s.timer = nil
	}
}

// start makes and starts the service's sandbox and returns the event that
// reports how it went.
func (s *service) start() *supervisor.Event {
	sb, err := s.d.startSandbox(s.unit)
	if err != nil {
		s.log.WithError(err).Warn("start failed")
		return &supervisor.Event{Kind: supervisor.EvStartFailed, Reason: err.Error(), Permanent: permanent(err)}
	}
	s.sb = sb
	s.watch(sb)
	pid, _ := sb.Pid()
	s.mu.Lock()
	s.view.pid, s.view.cgroup = pid, sb.CgroupPath()
	s.mu.Unlock()
	return &supervisor.Event{Kind: supervisor.EvStarted, At: sb.Started()}
}

// reap records how the sandbox ended, destroys it, and returns the event.
func (s *service) reap(r exitReport) supervisor.Event {
	ran := time.Since(s.rec.StartedAt)
	if s.sb != nil {
		if err := s.sb.Destroy(); err != nil {
			s.log.WithError(err).Error("destroy sandbox")
		}
		s.sb = nil
	}
	reason := r.exit.Reason()
	if r.err != nil {
		reason = r.err.Error()
	}
	if r.exit.Unwatched {
		reason += " (while no daemon was running)"
	}
	ended := r.exit.Ended
	if ended.IsZero() {
		ended = time.Now()
	}
	if s.rec.State == supervisor.Stopping && s.rec.Desired == supervisor.Down {
		reason = "stopped by operator (" + reason + ")"
	}
	if !r.exit.Ended.IsZero() {
		ran = r.exit.Ended.Sub(s.rec.StartedAt)
	}
	e := api.Exit{
		Time: ended, Code: r.exit.ExitCode(), Signal: int(r.exit.Signal),
		OOMKills: r.exit.Stats.OOMKills, PidsLimitHits: r.exit.Stats.PidsLimitHits,
		Reason: reason, Ran: ran,
	}
	s.mu.Lock()
	s.view.pid = 0
	s.view.exits = append(s.view.exits, e)
	if len(s.view.exits) > maxExits {
		s.view.exits = s.view.exits[len(s.view.exits)-maxExits:]
	}
	s.mu.Unlock()
	s.log.WithField("reason", reason).Info("sandbox ended")
	return supervisor.Event{
		Kind: supervisor.EvExited, Failed: !r.exit.Clean() || r.err != nil, Reason: reason,
		// The init could not execute the command: retrying cannot help.
		Permanent: r.exit.ExecErr != nil,
	}
}

// update applies a reloaded unit.
func (s *service) update(c command, timerC <-chan time.Time) <-chan time.Time {
	old := s.unit
	s.unit = c.unit
	s.mu.Lock()
	s.view.command = c.unit.Service.Command
	s.mu.Unlock()
	switch {
	case c.restart && s.rec.State == supervisor.Failed && s.rec.Desired == supervisor.Up:
		// A new configuration deserves a new attempt.
		timerC = s.step(supervisor.Event{Kind: supervisor.EvStart}, timerC)
	case c.restart:
		if s.rec.State == supervisor.Running || s.rec.State == supervisor.Starting {
			// Stopped under the old policy, started with the new unit.
			s.unit = old
			pending := c.unit
			timerC = s.step(supervisor.Event{Kind: supervisor.EvRestart}, timerC)
			s.unit = pending
		}
	case s.sb != nil && old.Service.Resources != c.unit.Service.Resources:
		if err := s.sb.UpdateResources(c.unit.Service.Resources); err != nil {
			s.log.WithError(err).Error("update limits in place")
		} else {
			s.log.Info("limits updated in place")
		}
	}
	return timerC
}

// publish updates the view and emits an event on a change of state.
func (s *service) publish(before supervisor.Record, ev supervisor.Event) {
	s.mu.Lock()
	s.view.rec = s.rec
	pid := s.view.pid
	var last *api.Exit
	if n := len(s.view.exits); n > 0 && ev.Kind == supervisor.EvExited {
		e := s.view.exits[n-1]
		last = &e
	}
	saved := savedService{Saved: s.rec.Save(), Exits: append([]api.Exit(nil), s.view.exits...)}
	s.mu.Unlock()
	if s.keepIntent {
		// The daemon's own stop (shutdown) is not the operator's wish.
		saved.Desired = s.saved.Desired
	}
	s.save(saved)
	if before.State == s.rec.State && before.Message == s.rec.Message {
		return
	}
	s.log.WithFields(logrus.Fields{"from": before.State, "to": s.rec.State, "reason": s.rec.Message}).Info("state")
	s.d.events.publish(api.Event{
		Time: time.Now(), Service: s.name, From: string(before.State), To: string(s.rec.State),
		Reason: s.rec.Message, PID: pid, Exit: last,
	})
}

// permanent tells start errors that retrying cannot fix.
func permanent(err error) bool {
	var fe *spec.FieldError
	return errors.Is(err, sandbox.ErrCommandNotFound) ||
		errors.Is(err, sandbox.ErrCommandNotExecutable) ||
		errors.Is(err, os.ErrNotExist) ||
		errors.Is(err, os.ErrPermission) ||
		errors.Is(err, cgroup.ErrParentHoldsSelf) ||
		errors.As(err, &fe)
}
