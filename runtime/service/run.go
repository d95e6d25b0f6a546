package service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/logs"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// Run is the actor's goroutine: it waits on commands, the sandbox's end,
// its health checks, sd_notify messages, OOM kills and the one timer, and
// carries out what the state machine says. It returns once the service is
// removed (Remove), or when ctx ends: then the sandbox is left running for
// the next daemon.
func (a *Actor) Run(ctx context.Context) {
	a.ctx = ctx
	defer a.stopChecks()
	if a.sb != nil && a.checksStop == nil {
		a.startChecks(a.sb) // adopted before Run
	}
	if a.countOOMFirst {
		a.countOOM()
	}
	removing, forget := false, false
	for {
		select {
		case r := <-a.probes:
			a.observe(r)
		case _, ok := <-a.oomC:
			if !ok {
				a.oomC = nil // the cgroup is gone
				continue
			}
			a.countOOM()
		case n, ok := <-a.notes:
			if !ok {
				a.notes = nil
				continue
			}
			a.note(n)
		case c := <-a.cmds:
			switch c.kind {
			case cmdEvent:
				a.step(c.ev)
			case cmdUpdate:
				a.update(c)
			case cmdRemove:
				removing, forget = true, c.forget
				a.keepIntent = c.shutdown
				a.step(supervisor.Event{Kind: supervisor.EvStop})
			}
			if c.reply != nil {
				close(c.reply)
			}
		case r := <-a.exited:
			a.step(a.reap(r))
		case <-a.timerC():
			a.timer = nil
			a.step(supervisor.Event{Kind: supervisor.EvTimer})
		case <-ctx.Done():
			// The daemon is going away without a shutdown (killed, or a
			// test's end): leave the sandbox to the next daemon.
			return
		}
		if removing && a.sb == nil && a.rec.State != supervisor.Stopping && a.rec.State != supervisor.Starting {
			if forget {
				// Removed from the configuration: forget it.
				if a.deps.Alerts != nil {
					a.deps.Alerts.Forget(a.name)
				}
				if err := a.deps.Store.Remove(a.name); err != nil {
					a.log.WithError(err).Warn("remove saved state")
				}
				if err := a.deps.Launcher.Release(a.name); err != nil {
					a.log.WithError(err).Warn("release the service's ID block")
				}
			}
			a.mu.Lock()
			a.view.Done = true
			a.changedLocked()
			a.mu.Unlock()
			return
		}
	}
}

// timerC is the one timer's channel (nil, never ready, without one).
func (a *Actor) timerC() <-chan time.Time {
	if a.timer == nil {
		return nil
	}
	return a.timer.Chan()
}

// step feeds one event to the state machine and carries out its actions.
func (a *Actor) step(ev supervisor.Event) {
	if ev.Kind == supervisor.EvStart || ev.Kind == supervisor.EvRestart {
		a.SetNote("")
	}
	rnd := a.deps.Rand
	if rnd == nil {
		rnd = rand.Float64
	}
	for {
		before := a.rec
		pol := supervisor.Policy{
			Restart: a.unit.Restart, Stop: a.unit.Stop, Readiness: a.unit.Readiness(),
			RestartUnhealthy: a.unit.Health != nil && a.unit.Health.OnUnhealthy == spec.OnUnhealthyRestart,
		}
		var acts []supervisor.Action
		a.rec, acts = supervisor.Step(a.rec, ev, pol, a.clock.Now(), rnd)
		a.countRestart(before)
		var next *supervisor.Event
		for _, act := range acts {
			switch act.Kind {
			case supervisor.ActStart:
				next = a.start()
			case supervisor.ActSignal:
				if a.sb != nil {
					if err := a.sb.Signal(act.Signal); err != nil {
						a.log.WithError(err).Debug("signal")
					}
				}
			case supervisor.ActKill:
				if a.sb != nil {
					if err := a.sb.KillAll(); err != nil {
						a.log.WithError(err).Warn("kill")
					}
				}
			case supervisor.ActSetTimer:
				a.stopTimer()
				a.timer = a.clock.NewTimer(act.Delay)
			case supervisor.ActStopTimer:
				a.stopTimer()
			}
		}
		a.publish(before, ev)
		if next == nil {
			return
		}
		ev = *next
	}
}

func (a *Actor) stopTimer() {
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
}

// start makes and starts the service's sandbox and returns the event that
// reports how it went.
func (a *Actor) start() *supervisor.Event {
	sb, err := a.deps.Launcher.Launch(a.unit)
	if err != nil {
		a.log.WithError(err).Warn("start failed")
		a.recordExit(api.Exit{Time: a.clock.Now(), Code: sandbox.StartFailedCode(err), Kind: api.ExitStartFailed, Reason: "failed to start: " + err.Error()})
		return &supervisor.Event{Kind: supervisor.EvStartFailed, Reason: err.Error(), Permanent: permanent(err)}
	}
	a.adopt(sb)
	return &supervisor.Event{Kind: supervisor.EvStarted, At: sb.Started()}
}

// adopt makes sb the service's sandbox: one it just started, or one an
// earlier daemon left running (or ended); either way it is watched, shown
// and checked the same.
// runsDescriber is a Sandbox that can say what it runs: its command and
// its image as REF@DIGEST (sandbox.Sandbox can; the fakes need not).
type runsDescriber interface {
	Runs() (command []string, image string)
}

func (a *Actor) adopt(sb Sandbox) {
	a.sb = sb
	go func() {
		exit, err := sb.Wait()
		a.exited <- exitReport{exit: exit, err: err}
	}()
	pid, _ := sb.Pid()
	a.mu.Lock()
	a.view.PID, a.view.Cgroup = pid, sb.CgroupPath()
	// A sandbox that knows what it runs (an image's entrypoint and Cmd
	// where the file gives none) says so.
	if r, ok := sb.(runsDescriber); ok {
		if command, image := r.Runs(); len(command) > 0 {
			a.view.Command, a.view.Image = command, image
		}
	}
	a.mu.Unlock()
	a.notes = sb.Notes()
	a.liveOOMWatch(sb)
	if a.ctx != nil {
		a.startChecks(sb)
	}
}

// liveOOMWatch has each OOM kill in sb's cgroup counted as it happens
// (countOOM): a child killed while the sandbox runs on is counted, shown
// and alerted then, not when the sandbox ends.
func (a *Actor) liveOOMWatch(sb Sandbox) {
	ch, err := sb.NotifyOOM()
	if err != nil {
		// An adopted sandbox that ended already has no cgroup to watch.
		a.log.WithError(err).Debug("OOM kills are counted when the sandbox ends only")
		a.oomC = nil
		return
	}
	a.oomC = ch
}

// countOOM counts the OOM kills of the current sandbox not counted yet,
// saves them, and alerts.
func (a *Actor) countOOM() {
	if a.sb == nil {
		return
	}
	st, err := a.sb.Usage()
	if err != nil || st.OOMKills <= a.liveOOM {
		return
	}
	n := st.OOMKills - a.liveOOM
	a.liveOOM = st.OOMKills
	a.mu.Lock()
	a.view.OOMKills += n
	a.mu.Unlock()
	a.log.WithField("oom_kills", n).Warn("the OOM killer killed in the sandbox")
	a.publish(a.rec, supervisor.Event{})
	a.alertOOM(a.Snapshot(), n, st.MemoryLimit)
}

// note acts on an sd_notify message of the current sandbox.
func (a *Actor) note(n sandbox.Note) {
	if n.HasStatus {
		a.mu.Lock()
		a.view.NotifyStatus = n.Status
		a.changedLocked()
		a.mu.Unlock()
	}
	if n.Ready && a.rec.AwaitingReady() {
		a.log.Info("ready (sd_notify)")
		a.step(supervisor.Event{Kind: supervisor.EvReady})
	}
}

// reap records how the sandbox ended, destroys it, and returns the event.
func (a *Actor) reap(r exitReport) supervisor.Event {
	ran := a.clock.Since(a.rec.StartedAt)
	a.stopChecks()
	if a.sb != nil {
		if err := a.sb.Destroy(); err != nil {
			a.log.WithError(err).Error("destroy sandbox")
		}
		a.sb = nil
	}
	a.notes, a.oomC = nil, nil
	kind := exitKind(r.exit, a.rec)
	reason := r.exit.Reason()
	if r.err != nil {
		reason = r.err.Error()
	}
	switch kind {
	case api.ExitUnhealthy:
		reason = "stopped for failing its health check (" + a.rec.Unhealthy() + "): " + reason
	case api.ExitStopTimeout:
		reason = fmt.Sprintf("killed after the stop timeout (%s): %s", a.unit.Stop.Timeout, reason)
	}
	if r.exit.Unwatched {
		reason += " (while no daemon was running)"
	}
	ended := r.exit.Ended
	if ended.IsZero() {
		ended = a.clock.Now()
	}
	if kind == api.ExitOperator && a.rec.Desired == supervisor.Down {
		reason = "stopped by operator (" + reason + ")"
	}
	if !r.exit.Ended.IsZero() {
		ran = r.exit.Ended.Sub(a.rec.StartedAt)
	}
	e := api.Exit{
		Time: ended, Code: r.exit.ExitCode(), Signal: int(r.exit.Signal),
		OOMKills: r.exit.Stats.OOMKills, PidsLimitHits: r.exit.Stats.PidsLimitHits,
		Reason: reason, Ran: ran, Kind: kind, LastLines: a.lastLines(a.rec.StartedAt.Add(-time.Second)),
	}
	a.mu.Lock()
	a.view.PID = 0
	if r.exit.Stats.OOMKills > a.liveOOM { // those not counted as they happened
		a.view.OOMKills += r.exit.Stats.OOMKills - a.liveOOM
	}
	if r.exit.Stats.OOMGroupKills > 0 && r.exit.Stats.OOMKills == 0 {
		a.view.OOMKills++
	}
	a.mu.Unlock()
	a.liveOOM = 0
	a.recordExit(e)
	a.log.WithField("reason", reason).Info("sandbox ended")
	return supervisor.Event{
		Kind: supervisor.EvExited, Failed: !r.exit.Clean() || r.err != nil, Reason: reason,
		// The init could not execute the command: retrying cannot help.
		Permanent: r.exit.ExecErr != nil,
	}
}

// update applies a reloaded unit.
func (a *Actor) update(c command) {
	old := a.unit
	a.unit, a.logDir = c.unit, c.logDir
	a.mu.Lock()
	a.view.Command = c.unit.Service.Command
	a.mu.Unlock()
	switch {
	case c.restart && a.rec.State == supervisor.Failed && a.rec.Desired == supervisor.Up:
		// A new configuration deserves a new attempt.
		a.step(supervisor.Event{Kind: supervisor.EvStart})
	case c.restart:
		if a.rec.State == supervisor.Running || a.rec.State == supervisor.Starting {
			// Stopped under the old policy, started with the new unit.
			a.unit = old
			pending := c.unit
			a.step(supervisor.Event{Kind: supervisor.EvRestart})
			a.unit = pending
		}
	case a.sb != nil && old.Service.Resources != c.unit.Service.Resources:
		if err := a.sb.UpdateResources(c.unit.Service.Resources); err != nil {
			a.log.WithError(err).Error("update limits in place")
		} else {
			a.log.Info("limits updated in place")
		}
	}
}

// publish saves the record and shows it, and emits an event on a change
// of state.
func (a *Actor) publish(before supervisor.Record, ev supervisor.Event) {
	a.mu.Lock()
	pid := a.view.PID
	var last *api.Exit
	if n := len(a.view.Exits); n > 0 && ev.Kind == supervisor.EvExited {
		e := a.view.Exits[n-1]
		last = &e
	}
	saved := Saved{
		Saved: a.rec.Save(), Exits: savedExits(a.view.Exits),
		RestartsByKind: cloneCounts(a.view.Restarts), OOMKills: a.view.OOMKills,
		SandboxOOMKills: a.liveOOM,
	}
	a.mu.Unlock()
	if a.keepIntent {
		// The daemon's own stop (shutdown) is not the operator's wish.
		saved.Desired = a.saved.Desired
	}
	a.save(saved)
	// Shown only once saved, and all at once: what a client saw is what a
	// daemon killed now leaves for the next one, and an exit is never
	// shown beside the state and PID of the sandbox before it.
	a.mu.Lock()
	a.view.Rec = a.rec
	a.shown = a.view.clone()
	a.changedLocked()
	a.mu.Unlock()
	if before.State == a.rec.State && before.Message == a.rec.Message {
		return
	}
	a.log.WithFields(logrus.Fields{"from": before.State, "to": a.rec.State, "reason": a.rec.Message}).Info("state")
	if a.deps.Events != nil {
		a.deps.Events.Publish(api.Event{
			Time: a.clock.Now(), Service: a.name, From: string(before.State), To: string(a.rec.State),
			Reason: a.rec.Message, PID: pid, Exit: last,
		})
	}
	a.observeAlert(a.Snapshot(), last)
}

// save writes s to the store if it differs from what was last written.
func (a *Actor) save(s Saved) {
	if a.saved.equal(s) {
		return
	}
	if err := a.deps.Store.Save(a.name, s); err != nil {
		a.log.WithError(err).Error("save service state")
		return
	}
	a.saved = s
}

// recordExit adds e to the service's recent exits.
func (a *Actor) recordExit(e api.Exit) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.view.Exits = append(a.view.Exits, e)
	if len(a.view.Exits) > maxExits {
		a.view.Exits = a.view.Exits[len(a.view.Exits)-maxExits:]
	}
}

// exitLines is how many of the service's last output lines each exit
// keeps.
const exitLines = 10

// lastLines reads the last lines the service printed since since (this
// sandbox's start): an earlier run's lines are not this exit's.
func (a *Actor) lastLines(since time.Time) []string {
	lines, err := logs.Tail(a.logDir, exitLines)
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

// countRestart counts a restart the machine made in this step (its
// Restarts grew: the policy's, never the operator's), by the kind of the
// exit that led to it.
func (a *Actor) countRestart(before supervisor.Record) {
	if a.rec.Restarts <= before.Restarts {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	kind := api.ExitStartFailed
	if n := len(a.view.Exits); n > 0 {
		kind = a.view.Exits[n-1].Kind
	}
	a.view.Restarts[kind] += uint64(a.rec.Restarts - before.Restarts)
}
