// Package service supervises one service: its actor, one goroutine that
// owns the service's supervisor record, its sandbox and its one timer,
// feeds each input (an operator's command, the sandbox's end, the timer,
// a health check's result, an sd_notify message, an OOM kill) to the
// supervisor's state machine and carries out what it says.
//
// An actor is built from its collaborators and nothing else: a Launcher
// that makes sandboxes, the Sandbox interface it drives, a clock, an
// event sink, an alert sink and a Store for what survives the daemon. The
// daemon (runtime/daemon) owns the start order, reloads, shutdown and the
// API; tests drive an actor over fakes (servicetest) and a fake clock.
package service

import (
	"context"
	"os"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/runtime/alert"
	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/health"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// Sandbox is what an actor needs of one running (or adopted) sandbox.
// runtime/sandbox's *Sandbox implements it; servicetest has a fake.
type Sandbox interface {
	// Pid is the sandbox's init, as the host sees it.
	Pid() (int, error)
	CgroupPath() string
	// Started is when the sandbox's command began.
	Started() time.Time
	// Wait blocks until the sandbox's init ends and says how.
	Wait() (sandbox.Exit, error)
	Signal(os.Signal) error
	// KillAll kills every process of the sandbox.
	KillAll() error
	UpdateResources(spec.Resources) error
	// Exec runs argv in the sandbox, under its limits (exec checks).
	Exec(ctx context.Context, argv []string) (int, []byte, error)
	// Usage reads the sandbox's cgroup counters (OOM kills).
	Usage() (cgroup.Stats, error)
	// NotifyOOM delivers a value on each OOM kill in the sandbox; the
	// channel is closed when the cgroup goes.
	NotifyOOM() (<-chan struct{}, error)
	// Notes delivers what the sandbox's own processes say over sd_notify
	// (nil without a socket); it is closed by Destroy.
	Notes() <-chan sandbox.Note
	// Destroy kills what is left and removes the sandbox.
	Destroy() error
}

var _ Sandbox = (*sandbox.Sandbox)(nil)

// Launcher makes and starts a sandbox for a unit, its output going to
// its log dir. What a service's sandboxes share from one to the next (its
// block of host IDs) is kept until Release: the service is gone for good.
type Launcher interface {
	Launch(u *spec.Unit) (Sandbox, error)
	Release(name string) error
}

// Events receives each change of a service's state or health, for
// `corral events`. Publish must not block.
type Events interface {
	Publish(api.Event)
}

// Alerts receives what is worth an alert. Observe must not block.
// *alert.Dispatcher implements it.
type Alerts interface {
	Observe(alert.Observation)
	Forget(service string)
}

// Store keeps each service's Saved state for the next daemon.
type Store interface {
	Save(name string, s Saved) error
	Remove(name string) error
}

// ProbeFunc makes the health check u describes against sb.
type ProbeFunc func(sb Sandbox, u *spec.Unit) (health.Prober, error)

// Deps are an actor's collaborators.
type Deps struct {
	Launcher Launcher
	Store    Store
	Events   Events
	// Alerts may be nil: no alerts.
	Alerts Alerts
	// Clock is the real clock unless a test gives a fake one.
	Clock clockwork.Clock
	// Rand is the backoff jitter's source of [0,1) (math/rand/v2 Float64
	// unless a test fixes it).
	Rand func() float64
	// Probe makes health checks (Probers unless a test fakes them).
	Probe ProbeFunc
	Log   logrus.FieldLogger
}

// maxExits is how many past exits a service keeps for `corral status`.
const maxExits = 10

// Health verdicts shown by ps and status ("" when the service has no
// check).
const (
	HealthStarting  = "starting"
	HealthHealthy   = "healthy"
	HealthUnhealthy = "unhealthy"
)

// Actor is one supervised service. Its goroutine (Run) owns the record,
// the sandbox and the timer; everything else talks to it through its
// methods, which queue commands, and reads it through Snapshot.
type Actor struct {
	name  string
	deps  Deps
	log   logrus.FieldLogger
	clock clockwork.Clock
	cmds  chan command

	// Owned by Run.
	unit   *spec.Unit
	logDir string
	rec    supervisor.Record
	sb     Sandbox
	timer  clockwork.Timer
	exited chan exitReport
	// keepIntent: stops from here on are the daemon's, not the
	// operator's, and must not be remembered as the operator's wish.
	keepIntent bool
	// saved is what was last written to the store (see save).
	saved Saved
	// Health checks of the current sandbox: their verdicts so far, how to
	// stop them, and where their results arrive.
	tracker    *health.Tracker
	checksStop context.CancelFunc
	probes     chan probeResult
	// notes are the current sandbox's sd_notify messages; oomC its OOM
	// kills; liveOOM how many of them were counted so far, and
	// countOOMFirst says to count them once Run begins (an adopted one).
	notes         <-chan sandbox.Note
	oomC          <-chan struct{}
	liveOOM       uint64
	countOOMFirst bool
	// ctx is Run's (nil until it begins): health checks end with it.
	ctx context.Context

	mu sync.Mutex // guards view, shown and changed
	// view is the service as Run changes it; shown is what readers see:
	// view as of the last publish (once saved), with the fields that
	// are set beside the state machine (health, notify status, note,
	// done) live.
	view, shown View
	// changed is closed, and replaced, on every change readers can see.
	changed chan struct{}
}

// View is what readers see of a service.
type View struct {
	Rec     supervisor.Record
	PID     int
	Cgroup  string
	Command []string
	// Image is the image the sandbox runs, with its digest ("" for none).
	Image string
	Exits []api.Exit
	// Done: the goroutine has ended (the service was removed, or the
	// daemon stopped).
	Done bool
	// Health is the check's verdict ("" without one), HealthDetail the
	// last check's words; NotifyStatus the last STATUS= over sd_notify.
	Health, HealthDetail, NotifyStatus string
	// Restarts counts restarts by the kind of exit that led to them;
	// OOMKills the OOM kills of all the service's sandboxes.
	Restarts map[string]uint64
	OOMKills uint64
	// Note explains why a service was not started (a dependency).
	Note string
}

// Shown is the state as ps shows it: a service never started is stopped.
func (v View) Shown() supervisor.State { return v.Rec.State.Shown() }

// Describe says what the service is, for a dependent's message: "not
// ready", "unhealthy", or its state.
func (v View) Describe() string {
	switch {
	case v.Rec.AwaitingReady():
		return "not ready"
	case v.Health == HealthUnhealthy:
		return "unhealthy"
	}
	return string(v.Shown())
}

func (v View) clone() View {
	v.Exits = append([]api.Exit(nil), v.Exits...)
	v.Restarts = cloneCounts(v.Restarts)
	return v
}

func cloneCounts(m map[string]uint64) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, n := range m {
		out[k] = n
	}
	return out
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
	logDir   string
	restart  bool          // cmdUpdate: the sandbox itself changed
	shutdown bool          // cmdRemove: the daemon is stopping; keep the operator's intent as it was
	forget   bool          // cmdRemove: the service left the configuration; forget its saved state
	reply    chan struct{} // closed once carried out (optional)
}

type exitReport struct {
	exit sandbox.Exit
	err  error
}

// New is the actor of a service that does not run: stopped, with what an
// earlier daemon saved of it (its restart counts, its last exits, the
// operator's wish). logDir is the service's own log directory. Run it,
// then send it Start.
func New(u *spec.Unit, logDir string, saved Saved, deps Deps) *Actor {
	return newActor(u, logDir, supervisor.Restore(saved.Saved), saved, deps)
}

// Adoption is a sandbox an earlier daemon left, for Adopt.
type Adoption struct {
	Sandbox Sandbox
	// Running is false for a sandbox that ended while no daemon ran: its
	// Wait reports that end at once.
	Running bool
	// Change says how the sandbox differs from what its unit makes now:
	// LimitsOnly is applied in place, Reshaped restarts it.
	Change spec.Change
}

// Adopt is the actor of a service whose sandbox an earlier daemon left
// (running, or ended meanwhile): supervised again as it is, its history
// as saved.
func Adopt(u *spec.Unit, logDir string, saved Saved, ad Adoption, deps Deps) *Actor {
	rec := supervisor.Resume(saved.Saved, ad.Sandbox.Started(), u.Readiness())
	a := newActor(u, logDir, rec, saved, deps)
	a.liveOOM = saved.SandboxOOMKills // the rest happened while no daemon ran
	a.countOOMFirst = true
	a.adopt(ad.Sandbox)
	log := a.log.WithField("pid", a.view.PID)
	if ad.Running {
		log.WithField("since", ad.Sandbox.Started().Format(time.RFC3339)).Info("adopted running sandbox")
	} else {
		log.Info("adopted sandbox that ended while no daemon was running")
	}
	// The first event says it was adopted; from "" as on a first start.
	a.publish(supervisor.Record{}, supervisor.Event{Kind: supervisor.EvStarted})
	switch {
	case rec.Desired == supervisor.Down:
		// The operator's stop was under way when the daemon died: carry
		// it out before the sandbox's end can be taken for a failure to
		// restart.
		a.step(supervisor.Event{Kind: supervisor.EvStop})
	case !ad.Running:
		// Its exit, already waiting, drives the restart policy.
	case ad.Change == spec.Reshaped:
		log.Info("configuration changed while no daemon was running: restarting it")
		a.cmds <- command{kind: cmdEvent, ev: supervisor.Event{Kind: supervisor.EvRestart}}
	case ad.Change == spec.LimitsOnly:
		if err := ad.Sandbox.UpdateResources(u.Service.Resources); err != nil {
			log.WithError(err).Error("update limits in place")
		} else {
			log.Info("limits changed while no daemon was running: updated in place")
		}
	}
	return a
}

func newActor(u *spec.Unit, logDir string, rec supervisor.Record, saved Saved, deps Deps) *Actor {
	if deps.Clock == nil {
		deps.Clock = clockwork.NewRealClock()
	}
	if deps.Probe == nil {
		deps.Probe = Probers
	}
	if deps.Log == nil {
		deps.Log = logrus.StandardLogger()
	}
	a := &Actor{
		name:    u.Service.Name,
		deps:    deps,
		log:     deps.Log.WithField("service", u.Service.Name),
		clock:   deps.Clock,
		cmds:    make(chan command, 16),
		unit:    u,
		logDir:  logDir,
		rec:     rec,
		exited:  make(chan exitReport, 1),
		saved:   saved,
		probes:  make(chan probeResult),
		changed: make(chan struct{}),
	}
	a.view = View{Rec: rec, Command: u.Service.Command, Exits: saved.exits(), Restarts: cloneCounts(saved.RestartsByKind), OOMKills: saved.OOMKills}
	a.shown = a.view.clone()
	return a
}

// Name is the service's name.
func (a *Actor) Name() string { return a.name }

// Snapshot is the service as readers see it now.
func (a *Actor) Snapshot() View {
	a.mu.Lock()
	defer a.mu.Unlock()
	v := a.shown.clone()
	v.Health, v.HealthDetail, v.NotifyStatus = a.view.Health, a.view.HealthDetail, a.view.NotifyStatus
	v.Note, v.Done = a.view.Note, a.view.Done
	return v
}

// Changed is closed at the next change readers can see: take it, then
// read Snapshot, then wait on it.
func (a *Actor) Changed() <-chan struct{} {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.changed
}

// changedLocked wakes those waiting on Changed; a.mu is held.
func (a *Actor) changedLocked() {
	close(a.changed)
	a.changed = make(chan struct{})
}

// SetNote says why the service was not started (a dependency); a start
// clears it.
func (a *Actor) SetNote(note string) {
	a.mu.Lock()
	a.view.Note = note
	a.changedLocked()
	a.mu.Unlock()
}

// Send feeds an operator's event (start, stop, restart) to the actor. With
// wait, it returns once the actor has acted on it.
func (a *Actor) Send(ctx context.Context, kind supervisor.EventKind, wait bool) error {
	return a.send(ctx, command{kind: cmdEvent, ev: supervisor.Event{Kind: kind}}, wait)
}

// Update hands the actor its unit from a reload: restart says the
// sandbox itself changed (it is restarted); otherwise a change of limits
// is applied in place and of policy from then on. It returns once the
// actor has done so (a restart begun, new limits written).
func (a *Actor) Update(ctx context.Context, u *spec.Unit, logDir string, restart bool) error {
	return a.send(ctx, command{kind: cmdUpdate, unit: u, logDir: logDir, restart: restart}, true)
}

// Remove stops the service and ends its goroutine (Done). shutdown says
// the daemon is stopping: the operator's wish is kept as it was. forget
// says the service left the configuration: its saved state goes.
func (a *Actor) Remove(ctx context.Context, shutdown, forget bool) error {
	return a.send(ctx, command{kind: cmdRemove, shutdown: shutdown, forget: forget}, false)
}

func (a *Actor) send(ctx context.Context, c command, wait bool) error {
	if wait {
		c.reply = make(chan struct{})
	}
	select {
	case a.cmds <- c:
	case <-ctx.Done():
		return ctx.Err()
	}
	if !wait {
		return nil
	}
	select {
	case <-c.reply:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
