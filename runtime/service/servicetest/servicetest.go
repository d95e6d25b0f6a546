// Package servicetest has test doubles for runtime/service and the
// daemon: a fake sandbox whose end, OOM kills and sd_notify messages a
// test decides, a launcher that makes them, a store in memory and sinks
// that record events and alerts.
package servicetest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"

	"github.com/corral-dev/corral/runtime/alert"
	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/health"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/runtime/service"
	"github.com/corral-dev/corral/spec"
)

// Patience bounds every wait of a test on the actor: far longer than any
// step takes, so that it only ever ends a test that is broken.
const Patience = 10 * time.Second

// Sandbox is a fake sandbox. It runs until End, KillAll, or a signal it
// does not ignore.
type Sandbox struct {
	Name string
	Unit *spec.Unit
	// OnSignal, if set, hears each signal sent (before the sandbox acts
	// on it).
	OnSignal func(os.Signal)
	// Image is the image it runs as REF@DIGEST, as a real sandbox made
	// from an image says ("" for none).
	Image string

	pid     int
	started time.Time
	ended   chan sandbox.Exit
	oom     chan struct{}
	notes   chan sandbox.Note

	mu        sync.Mutex
	once      sync.Once
	ignore    map[syscall.Signal]bool
	signals   []os.Signal
	killed    bool
	destroyed bool
	resources spec.Resources
	usage     cgroup.Stats
	execs     [][]string
}

var _ service.Sandbox = (*Sandbox)(nil)

// NewSandbox is a running fake sandbox of u, started at started.
func NewSandbox(u *spec.Unit, pid int, started time.Time) *Sandbox {
	return &Sandbox{
		Name: u.Service.Name, Unit: u, pid: pid, started: started,
		ended: make(chan sandbox.Exit, 1), oom: make(chan struct{}, 16), notes: make(chan sandbox.Note, 16),
		ignore: map[syscall.Signal]bool{}, resources: u.Service.Resources,
	}
}

// Ignore makes the sandbox outlive sig (a command that traps it).
func (s *Sandbox) Ignore(sig syscall.Signal) {
	s.mu.Lock()
	s.ignore[sig] = true
	s.mu.Unlock()
}

// End ends the sandbox with e (once; later ends are ignored).
func (s *Sandbox) End(e sandbox.Exit) {
	s.once.Do(func() { s.ended <- e })
}

// Exit ends the sandbox with an exit code.
func (s *Sandbox) Exit(code int) { s.End(sandbox.Exit{Code: code}) }

// OOM has the OOM killer kill n processes of the sandbox, which runs on.
func (s *Sandbox) OOM(n uint64) {
	s.mu.Lock()
	s.usage.OOMKills += n
	s.mu.Unlock()
	s.oom <- struct{}{}
}

// Say sends an sd_notify message from inside the sandbox.
func (s *Sandbox) Say(n sandbox.Note) { s.notes <- n }

// Signals are the signals sent to the sandbox so far.
func (s *Sandbox) Signals() []os.Signal {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]os.Signal(nil), s.signals...)
}

// Killed reports whether KillAll was called.
func (s *Sandbox) Killed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.killed
}

// Destroyed reports whether Destroy was called.
func (s *Sandbox) Destroyed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.destroyed
}

// Resources are the sandbox's limits, as made or last updated.
func (s *Sandbox) Resources() spec.Resources {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.resources
}

func (s *Sandbox) Pid() (int, error) { return s.pid, nil }

// Runs says what the sandbox runs: its unit's command and Image.
func (s *Sandbox) Runs() (command []string, image string) { return s.Unit.Service.Command, s.Image }
func (s *Sandbox) CgroupPath() string                     { return "/corral-test/" + s.Name }
func (s *Sandbox) Started() time.Time                     { return s.started }

func (s *Sandbox) Wait() (sandbox.Exit, error) {
	e := <-s.ended
	s.ended <- e // Wait again returns the same
	return e, nil
}

func (s *Sandbox) Signal(sig os.Signal) error {
	s.mu.Lock()
	s.signals = append(s.signals, sig)
	ignored := s.ignore[sig.(syscall.Signal)]
	s.mu.Unlock()
	if s.OnSignal != nil {
		s.OnSignal(sig)
	}
	if !ignored {
		s.End(sandbox.Exit{Signal: sig.(syscall.Signal)})
	}
	return nil
}

func (s *Sandbox) KillAll() error {
	s.mu.Lock()
	s.killed = true
	s.mu.Unlock()
	s.End(sandbox.Exit{Signal: syscall.SIGKILL})
	return nil
}

func (s *Sandbox) UpdateResources(r spec.Resources) error {
	s.mu.Lock()
	s.resources = r
	s.mu.Unlock()
	return nil
}

func (s *Sandbox) Exec(ctx context.Context, argv []string) (int, []byte, error) {
	s.mu.Lock()
	s.execs = append(s.execs, argv)
	s.mu.Unlock()
	return 0, nil, nil
}

func (s *Sandbox) Usage() (cgroup.Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.usage, nil
}

func (s *Sandbox) NotifyOOM() (<-chan struct{}, error) { return s.oom, nil }

func (s *Sandbox) Notes() <-chan sandbox.Note {
	if !s.Unit.Service.Notify {
		return nil
	}
	return s.notes
}

func (s *Sandbox) Destroy() error {
	s.mu.Lock()
	s.destroyed = true
	s.mu.Unlock()
	s.End(sandbox.Exit{Signal: syscall.SIGKILL})
	return nil
}

// Launcher makes fake sandboxes and hands each to the test (Next).
type Launcher struct {
	Clock clockwork.Clock

	mu       sync.Mutex
	pid      int
	fail     map[string][]error
	order    []string
	launched chan *Sandbox
	prepare  func(*Sandbox)
	released []string
}

var _ service.Launcher = (*Launcher)(nil)

// NewLauncher is a launcher whose sandboxes start at clock's time.
func NewLauncher(clock clockwork.Clock) *Launcher {
	return &Launcher{Clock: clock, pid: 1000, fail: map[string][]error{}, launched: make(chan *Sandbox, 1024)}
}

// Fail makes the next launches of name fail with errs, one each.
func (l *Launcher) Fail(name string, errs ...error) {
	l.mu.Lock()
	l.fail[name] = append(l.fail[name], errs...)
	l.mu.Unlock()
}

// Prepare is called on each sandbox before it is handed out (to make it
// ignore SIGTERM, say).
func (l *Launcher) Prepare(f func(*Sandbox)) {
	l.mu.Lock()
	l.prepare = f
	l.mu.Unlock()
}

// Launch implements service.Launcher.
func (l *Launcher) Launch(u *spec.Unit) (service.Sandbox, error) {
	l.mu.Lock()
	name := u.Service.Name
	l.order = append(l.order, name)
	if errs := l.fail[name]; len(errs) > 0 {
		l.fail[name] = errs[1:]
		l.mu.Unlock()
		return nil, errs[0]
	}
	l.pid++
	sb := NewSandbox(u, l.pid, l.Clock.Now())
	prepare := l.prepare
	l.mu.Unlock()
	if prepare != nil {
		prepare(sb)
	}
	l.launched <- sb
	return sb, nil
}

// Release implements service.Launcher: it records the release.
func (l *Launcher) Release(name string) error {
	l.mu.Lock()
	l.released = append(l.released, name)
	l.mu.Unlock()
	return nil
}

// Released is the names released so far, in order.
func (l *Launcher) Released() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.released...)
}

// Order is the names launched so far (failed launches too), in order.
func (l *Launcher) Order() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.order...)
}

// Next waits for the next sandbox launched.
func (l *Launcher) Next(t testing.TB) *Sandbox {
	t.Helper()
	select {
	case sb := <-l.launched:
		return sb
	case <-time.After(Patience):
		t.Fatalf("no sandbox launched within %s", Patience)
		return nil
	}
}

// None checks that no sandbox was launched that the test has not taken.
func (l *Launcher) None(t testing.TB) {
	t.Helper()
	select {
	case sb := <-l.launched:
		t.Fatalf("unexpected launch of %s", sb.Name)
	default:
	}
}

// Store is a service.Store in memory.
type Store struct {
	mu    sync.Mutex
	saved map[string]service.Saved
	// Err, if set, fails every Save.
	Err error
}

var _ service.Store = (*Store)(nil)

func NewStore() *Store { return &Store{saved: map[string]service.Saved{}} }

func (s *Store) Save(name string, v service.Saved) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Err != nil {
		return s.Err
	}
	s.saved[name] = v
	return nil
}

func (s *Store) Remove(name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.saved, name)
	return nil
}

// Load is what was last saved of name (the zero Saved if nothing was).
func (s *Store) Load(name string) (service.Saved, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.saved[name], nil
}

// Has reports whether anything is saved of name.
func (s *Store) Has(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.saved[name]
	return ok
}

// Events records the events an actor publishes.
type Events struct{ ch chan api.Event }

var _ service.Events = (*Events)(nil)

func NewEvents() *Events { return &Events{ch: make(chan api.Event, 4096)} }

func (e *Events) Publish(ev api.Event) {
	select {
	case e.ch <- ev:
	default:
		panic("servicetest: more than 4096 events not read")
	}
}

// Next waits for the next event.
func (e *Events) Next(t testing.TB) api.Event {
	t.Helper()
	select {
	case ev := <-e.ch:
		return ev
	case <-time.After(Patience):
		t.Fatalf("no event within %s", Patience)
		return api.Event{}
	}
}

// WaitTo waits for service name to go to state to, and returns that
// event. Events on the way are passed over.
func (e *Events) WaitTo(t testing.TB, name, to string) api.Event {
	t.Helper()
	var seen []string
	deadline := time.After(Patience)
	for {
		select {
		case ev := <-e.ch:
			if ev.Service == name && ev.To == to && ev.Health == "" {
				return ev
			}
			seen = append(seen, fmt.Sprintf("%s:%s->%s", ev.Service, ev.From, ev.To))
		case <-deadline:
			t.Fatalf("%s did not go to %s within %s; saw %v", name, to, Patience, seen)
			return api.Event{}
		}
	}
}

// Alerts records what is observed for alerts.
type Alerts struct {
	mu  sync.Mutex
	obs []alert.Observation
	ch  chan alert.Observation
}

var _ service.Alerts = (*Alerts)(nil)

func NewAlerts() *Alerts { return &Alerts{ch: make(chan alert.Observation, 1024)} }

func (a *Alerts) Observe(o alert.Observation) {
	a.mu.Lock()
	a.obs = append(a.obs, o)
	a.mu.Unlock()
	a.ch <- o
}

func (a *Alerts) Forget(string) {}

// WaitProblem waits for an observation of the problem p.
func (a *Alerts) WaitProblem(t testing.TB, p string) alert.Observation {
	t.Helper()
	deadline := time.After(Patience)
	for {
		select {
		case o := <-a.ch:
			if o.Problem == p {
				return o
			}
		case <-deadline:
			t.Fatalf("no %q alert within %s", p, Patience)
			return alert.Observation{}
		}
	}
}

// ErrLaunch is a start error worth retrying (not permanent).
var ErrLaunch = errors.New("servicetest: launch failed")

// Probes makes health checks whose results the test gives, service by
// service (a service.ProbeFunc).
type Probes struct {
	mu      sync.Mutex
	results map[string]chan bool
}

func NewProbes() *Probes { return &Probes{results: map[string]chan bool{}} }

func (p *Probes) ch(name string) chan bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.results[name] == nil {
		p.results[name] = make(chan bool)
	}
	return p.results[name]
}

// Probe is the service.ProbeFunc: each check of sb waits for Give.
func (p *Probes) Probe(sb service.Sandbox, u *spec.Unit) (health.Prober, error) {
	results := p.ch(u.Service.Name)
	return health.ProberFunc(func(ctx context.Context) (bool, string) {
		select {
		case ok := <-results:
			if ok {
				return true, "fake check passed"
			}
			return false, "fake check failed"
		case <-ctx.Done():
			return false, "fake check cancelled"
		}
	}), nil
}

// Give hands the next check of name its result, once it runs.
func (p *Probes) Give(t testing.TB, name string, ok bool) {
	t.Helper()
	select {
	case p.ch(name) <- ok:
	case <-time.After(Patience):
		t.Fatalf("no health check of %s ran within %s", name, Patience)
	}
}

// WaitView waits, on the actor's changes, until its view meets cond.
func WaitView(t testing.TB, a *service.Actor, what string, cond func(service.View) bool) service.View {
	t.Helper()
	deadline := time.After(Patience)
	for {
		changed := a.Changed()
		if v := a.Snapshot(); cond(v) {
			return v
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("%s %s: not within %s; it is %s", a.Name(), what, Patience, a.Snapshot().Describe())
		}
	}
}
