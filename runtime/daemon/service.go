package daemon

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/health"
	"github.com/corral-dev/corral/runtime/logs"
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
	// Health checks of the current sandbox: their verdicts so far, how to
	// stop them, and where their results arrive.
	tracker    *health.Tracker
	checksStop context.CancelFunc
	probes     chan probeResult
	// Messages from the sd_notify socket of the sandbox (notify.go).
	notes chan notification
	// ooms says the kernel OOM killer acted in a sandbox; liveOOM is how
	// many of the current sandbox's OOM kills were counted so far.
	ooms    chan *sandbox.Sandbox
	liveOOM uint64

	mu sync.Mutex // guards view and shown
	// view is the service as run changes it; shown is what readers see:
	// view as of the last publish (once saved), with the fields that
	// other goroutines set (health, notify status, note, done) live.
	view, shown view
}

// view is what readers see of a service, updated by run after each step.
type view struct {
	rec     supervisor.Record
	pid     int
	cgroup  string
	command []string
	exits   []api.Exit
	done    bool // the goroutine has ended (service removed)
	// health is the check's verdict ("" without one), healthDetail the
	// last check's words; notifyStatus the last STATUS= over sd_notify.
	health, healthDetail, notifyStatus string
	// restarts counts restarts by the kind of exit that led to them;
	// oomKills the OOM kills of all the service's sandboxes.
	restarts map[string]uint64
	oomKills uint64
	// note explains why a service was not started (a dependency).
	note string
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
	forget   bool         // cmdRemove: the service left the configuration; forget its saved state
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
		probes: make(chan probeResult),
		notes:  make(chan notification),
		ooms:   make(chan *sandbox.Sandbox, 1),
	}
	s.view = view{rec: rec, command: u.Service.Command, exits: saved.Exits, restarts: maps.Clone(saved.RestartsByKind), oomKills: saved.OOMKills}
	if s.view.restarts == nil {
		s.view.restarts = map[string]uint64{}
	}
	s.shown = s.view
	s.shown.exits = append([]api.Exit(nil), s.view.exits...)
	s.shown.restarts = maps.Clone(s.view.restarts)
	return s
}

func evReady() supervisor.Event { return supervisor.Event{Kind: supervisor.EvReady} }

func evUnhealthy(why string) supervisor.Event {
	return supervisor.Event{Kind: supervisor.EvUnhealthy, Reason: why}
}

// adopt makes sb the service's sandbox: one it just started, or one an
// earlier daemon left running (or ended); either way it is watched, shown
// and checked the same.
func (s *service) adopt(sb *sandbox.Sandbox) {
	s.sb = sb
	s.watch(sb)
	pid, _ := sb.Pid()
	s.mu.Lock()
	s.view.pid, s.view.cgroup = pid, sb.CgroupPath()
	s.mu.Unlock()
	s.listenNotify(sb)
	s.watchOOM(sb)
	s.startChecks(sb)
}

// watchOOM hands each OOM kill in sb's cgroup to the service's goroutine
// (countOOM), as it happens: a child killed while the sandbox runs on is
// counted, shown and alerted then, not when the sandbox ends.
func (s *service) watchOOM(sb *sandbox.Sandbox) {
	ch, err := sb.NotifyOOM()
	if err != nil {
		// An adopted sandbox that ended already has no cgroup to watch.
		s.log.WithError(err).Debug("OOM kills are counted when the sandbox ends only")
		return
	}
	go func() {
		for range ch {
			select {
			case s.ooms <- sb:
			default: // one pending look counts them all
			}
		}
	}()
}

// countOOM counts the OOM kills of the current sandbox not counted yet,
// saves them, and alerts.
func (s *service) countOOM() {
	if s.sb == nil {
		return
	}
	st, err := s.d.host.Usage(s.sb.CgroupPath())
	if err != nil || st.OOMKills <= s.liveOOM {
		return
	}
	n := st.OOMKills - s.liveOOM
	s.liveOOM = st.OOMKills
	s.mu.Lock()
	s.view.oomKills += n
	s.mu.Unlock()
	s.log.WithField("oom_kills", n).Warn("the OOM killer killed in the sandbox")
	s.publish(s.rec, supervisor.Event{})
	s.d.alertOOM(s, s.snapshot(), n, st.MemoryLimit)
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
	v := s.shown
	v.health, v.healthDetail, v.notifyStatus = s.view.health, s.view.healthDetail, s.view.notifyStatus
	v.note, v.done = s.view.note, s.view.done
	v.exits = append([]api.Exit(nil), v.exits...)
	v.restarts = maps.Clone(v.restarts)
	return v
}

func (s *service) setNote(note string) {
	s.mu.Lock()
	s.view.note = note
	s.mu.Unlock()
}

// run is the service's goroutine: it waits on commands, the sandbox's
// exit and the one timer, and carries out what the state machine says.
func (s *service) run(ctx context.Context) {
	defer s.d.wg.Done()
	defer s.stopChecks()
	var timerC <-chan time.Time
	if s.timer != nil {
		timerC = s.timer.C // armed by a step before the goroutine began
	}
	removing, forget := false, false
	for {
		select {
		case r := <-s.probes:
			timerC = s.observe(r, timerC)
		case sb := <-s.ooms:
			if sb == s.sb {
				s.countOOM()
			}
		case n := <-s.notes:
			if n.ready && n.sb == s.sb && s.rec.AwaitingReady() {
				s.log.Info("ready (sd_notify)")
				timerC = s.step(evReady(), timerC)
			}
		case c := <-s.cmds:
			switch c.kind {
			case cmdEvent:
				timerC = s.step(c.ev, timerC)
			case cmdUpdate:
				timerC = s.update(c, timerC)
			case cmdRemove:
				removing, forget = true, c.forget
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
			if forget {
				// Removed from the configuration: forget it.
				if s.d.alerts != nil {
					s.d.alerts.Forget(s.name)
				}
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
	if ev.Kind == supervisor.EvStart || ev.Kind == supervisor.EvRestart {
		s.setNote("")
	}
	for {
		before := s.rec
		pol := supervisor.Policy{
			Restart: s.unit.Restart, Stop: s.unit.Stop, Readiness: s.unit.Readiness(),
			RestartUnhealthy: s.unit.Health != nil && s.unit.Health.OnUnhealthy == spec.OnUnhealthyRestart,
		}
		var acts []supervisor.Action
		s.rec, acts = supervisor.Step(s.rec, ev, pol, time.Now(), rand.Float64)
		s.countRestart(ev)
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
		s.recordExit(api.Exit{Time: time.Now(), Code: sandbox.StartFailedCode(err), Kind: api.ExitStartFailed, Reason: "failed to start: " + err.Error()})
		return &supervisor.Event{Kind: supervisor.EvStartFailed, Reason: err.Error(), Permanent: permanent(err)}
	}
	s.adopt(sb)
	return &supervisor.Event{Kind: supervisor.EvStarted, At: sb.Started()}
}

// reap records how the sandbox ended, destroys it, and returns the event.
func (s *service) reap(r exitReport) supervisor.Event {
	ran := time.Since(s.rec.StartedAt)
	s.stopChecks()
	if s.sb != nil {
		if err := s.sb.Destroy(); err != nil {
			s.log.WithError(err).Error("destroy sandbox")
		}
		s.sb = nil
	}
	kind := exitKind(r.exit, s.rec)
	reason := r.exit.Reason()
	if r.err != nil {
		reason = r.err.Error()
	}
	switch kind {
	case api.ExitUnhealthy:
		reason = "stopped for failing its health check (" + s.rec.Unhealthy() + "): " + reason
	case api.ExitStopTimeout:
		reason = fmt.Sprintf("killed after the stop timeout (%s): %s", s.unit.Stop.Timeout, reason)
	}
	if r.exit.Unwatched {
		reason += " (while no daemon was running)"
	}
	ended := r.exit.Ended
	if ended.IsZero() {
		ended = time.Now()
	}
	if kind == api.ExitOperator && s.rec.Desired == supervisor.Down {
		reason = "stopped by operator (" + reason + ")"
	}
	if !r.exit.Ended.IsZero() {
		ran = r.exit.Ended.Sub(s.rec.StartedAt)
	}
	e := api.Exit{
		Time: ended, Code: r.exit.ExitCode(), Signal: int(r.exit.Signal),
		OOMKills: r.exit.Stats.OOMKills, PidsLimitHits: r.exit.Stats.PidsLimitHits,
		Reason: reason, Ran: ran, Kind: kind, LastLines: s.lastLines(s.rec.StartedAt.Add(-time.Second)),
	}
	s.mu.Lock()
	s.view.pid = 0
	if r.exit.Stats.OOMKills > s.liveOOM { // those not counted as they happened
		s.view.oomKills += r.exit.Stats.OOMKills - s.liveOOM
	}
	if r.exit.Stats.OOMGroupKills > 0 && r.exit.Stats.OOMKills == 0 {
		s.view.oomKills++
	}
	s.mu.Unlock()
	s.liveOOM = 0
	s.recordExit(e)
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
	pid := s.view.pid
	var last *api.Exit
	if n := len(s.view.exits); n > 0 && ev.Kind == supervisor.EvExited {
		e := s.view.exits[n-1]
		last = &e
	}
	saved := savedService{
		Saved: s.rec.Save(), Exits: append([]api.Exit(nil), s.view.exits...),
		RestartsByKind: maps.Clone(s.view.restarts), OOMKills: s.view.oomKills,
		SandboxOOMKills: s.liveOOM,
	}
	s.mu.Unlock()
	if s.keepIntent {
		// The daemon's own stop (shutdown) is not the operator's wish.
		saved.Desired = s.saved.Desired
	}
	s.save(saved)
	// Shown only once saved, and all at once: what a client saw is what a
	// daemon killed now leaves for the next one, and an exit is never
	// shown beside the state and PID of the sandbox before it.
	s.mu.Lock()
	s.view.rec = s.rec
	s.shown = s.view
	s.shown.exits = append([]api.Exit(nil), s.view.exits...)
	s.shown.restarts = maps.Clone(s.view.restarts)
	s.mu.Unlock()
	if before.State == s.rec.State && before.Message == s.rec.Message {
		return
	}
	s.log.WithFields(logrus.Fields{"from": before.State, "to": s.rec.State, "reason": s.rec.Message}).Info("state")
	s.d.events.publish(api.Event{
		Time: time.Now(), Service: s.name, From: string(before.State), To: string(s.rec.State),
		Reason: s.rec.Message, PID: pid, Exit: last,
	})
	s.d.observeAlert(s, s.snapshot(), last)
}

// recordExit adds e to the service's recent exits.
func (s *service) recordExit(e api.Exit) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.view.exits = append(s.view.exits, e)
	if len(s.view.exits) > maxExits {
		s.view.exits = s.view.exits[len(s.view.exits)-maxExits:]
	}
}

// exitLines is how many of the service's last output lines each exit
// keeps.
const exitLines = 10

// lastLines reads the last lines the service printed since since (this
// sandbox's start): an earlier run's lines are not this exit's.
func (s *service) lastLines(since time.Time) []string {
	s.d.mu.Lock()
	dir := filepath.Join(s.d.cfg.LogDir, s.name)
	s.d.mu.Unlock()
	lines, err := logs.Tail(dir, exitLines)
	if err != nil {
		return nil
	}
	var out []string
	for _, l := range lines {
		if rec, err := logs.ParseLine(l); err == nil && !rec.Time.Before(since) {
			out = append(out, l)
		}
	}
	return out
}

// exitKind classes an end: what the daemon was doing to the sandbox
// (stopping it for its health, the operator, the stop timeout) comes
// before what the exit itself shows.
func exitKind(e sandbox.Exit, rec supervisor.Record) string {
	switch {
	case e.ExecErr != nil:
		return api.ExitStartFailed
	case rec.State == supervisor.Stopping && rec.Unhealthy() != "":
		return api.ExitUnhealthy
	case rec.State == supervisor.Stopping && rec.Killed():
		return api.ExitStopTimeout
	case rec.State == supervisor.Stopping:
		return api.ExitOperator
	case e.OOMKilled():
		return api.ExitOOM
	case e.Stats.PidsLimitHits > 0:
		return api.ExitPidsLimit
	case e.Signal != 0:
		return api.ExitSignal
	}
	return api.ExitCode
}

// countRestart counts a restart decided by this step, by the kind of the
// exit that led to it.
func (s *service) countRestart(ev supervisor.Event) {
	if ev.Kind != supervisor.EvExited && ev.Kind != supervisor.EvStartFailed {
		return
	}
	switch s.rec.State {
	case supervisor.Backoff, supervisor.CrashLoop, supervisor.Starting:
	default:
		return // not restarted
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	kind := api.ExitStartFailed
	if n := len(s.view.exits); n > 0 {
		kind = s.view.exits[n-1].Kind
	}
	s.view.restarts[kind]++
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
