package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/runtime/service"
	"github.com/corral-dev/corral/runtime/service/servicetest"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// TestReadyTimeoutCoversTheChecks: a dependent waits long enough for the
// start period and the checks that make a service healthy.
func TestReadyTimeoutCoversTheChecks(t *testing.T) {
	h := spec.DefaultHealth(spec.HealthTCP)
	h.StartPeriod, h.Interval, h.Timeout = 5*time.Second, time.Second, 500*time.Millisecond
	got := readyTimeout(&spec.Unit{Health: &h})
	if min := h.StartPeriod + time.Duration(h.Retries)*h.Interval; got < min {
		t.Errorf("readyTimeout %s, want at least %s", got, min)
	}
	if got := readyTimeout(&spec.Unit{Service: spec.Service{Notify: true}}); got != 90*time.Second {
		t.Errorf("notify readyTimeout %s", got)
	}
}

// The daemon's tests run its start order, shutdown and reloads over fake
// sandboxes (servicetest) and a fake clock: no root, no sleeps.

type fixture struct {
	t        *testing.T
	d        *Daemon
	path     string
	clock    *clockwork.FakeClock
	launcher *servicetest.Launcher
	store    *servicetest.Store
	probes   *servicetest.Probes

	mu      sync.Mutex
	signals []string          // "NAME SIGNAL" in the order sent
	images  map[string]string // the image store: digest by name
}

// tagImage gives ref digest in the fixture's image store, as a pull or
// import would.
func (f *fixture) tagImage(ref, digest string) {
	f.mu.Lock()
	f.images[ref] = digest
	f.mu.Unlock()
}

func (f *fixture) imageDigest(ref string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d, ok := f.images[ref]; ok {
		return d, nil
	}
	return "", fmt.Errorf("image %s: not in the store", ref)
}

func newFixture(t *testing.T, yaml string) *fixture {
	t.Helper()
	f := &fixture{t: t, path: filepath.Join(t.TempDir(), "corral.yaml"), clock: clockwork.NewFakeClock(), images: map[string]string{}}
	f.write(yaml)
	cfg, err := spec.LoadOn(f.path, spec.Host{})
	if err != nil {
		t.Fatal(err)
	}
	f.launcher, f.store, f.probes = servicetest.NewLauncher(f.clock), servicetest.NewStore(), servicetest.NewProbes()
	f.launcher.Prepare(func(sb *servicetest.Sandbox) {
		sb.OnSignal = func(sig os.Signal) {
			f.mu.Lock()
			f.signals = append(f.signals, sb.Name+" "+unix.SignalName(sig.(syscall.Signal)))
			f.mu.Unlock()
		}
		// Made from its image's digest at launch, as the launcher does.
		if im := sb.Unit.Service.Image; im != nil {
			if d, err := f.imageDigest(im.Ref); err == nil {
				sb.Image = im.Ref + "@" + d
			}
		}
	})
	log := logrus.New()
	log.Out = io.Discard
	ctx, cancel := context.WithCancel(context.Background())
	f.d = newDaemon(ctx, Options{ConfigPath: f.path, Log: log}, cfg, deps{
		launcher: f.launcher, store: f.store, clock: f.clock, rand: func() float64 { return 0.5 }, probe: f.probes.Probe,
		imageDigest: f.imageDigest,
	})
	f.d.cleanStart = true
	t.Cleanup(func() {
		cancel() // as a daemon killed: the actors end, the fakes stay
		f.d.wg.Wait()
	})
	return f
}

func (f *fixture) write(yaml string) {
	if err := os.WriteFile(f.path, []byte(yaml), 0o600); err != nil {
		f.t.Fatal(err)
	}
}

// startAll registers every service and starts them in waves, in the
// background; done is closed once the waves are through.
func (f *fixture) startAll() (done chan struct{}) {
	cfg := f.d.config()
	var names []string
	for _, u := range cfg.Units {
		names = append(names, u.Service.Name)
	}
	plan := f.d.register(cfg, names)
	done = make(chan struct{})
	go func() {
		defer close(done)
		f.d.startWaves(cfg, plan)
	}()
	return done
}

func (f *fixture) view(name string, what string, cond func(service.View) bool) service.View {
	f.t.Helper()
	a := f.d.service(name)
	if a == nil {
		f.t.Fatalf("no service %s", name)
	}
	return servicetest.WaitView(f.t, a, what, cond)
}

func (f *fixture) running(name string) service.View {
	f.t.Helper()
	return f.view(name, "running", func(v service.View) bool { return v.Rec.State == supervisor.Running })
}

func (f *fixture) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.signals)
}

func wait(t *testing.T, done chan struct{}, what string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(servicetest.Patience):
		t.Fatalf("%s: not done within %s", what, servicetest.Patience)
	}
}

// TestStartAndStopFollowDependencies: each start wave waits for the one
// before; shutdown stops dependents before their dependencies.
func TestStartAndStopFollowDependencies(t *testing.T) {
	f := newFixture(t, `services:
  c: {command: [/bin/c], depends_on: [b]}
  b: {command: [/bin/b], depends_on: [a]}
  a: {command: [/bin/a]}
  solo: {command: [/bin/solo]}
`)
	wait(t, f.startAll(), "start-up")
	order := f.launcher.Order()
	pos := func(name string) int { return slices.Index(order, name) }
	if len(order) != 4 || !(pos("a") < pos("b") && pos("b") < pos("c")) || pos("solo") > pos("b") {
		t.Fatalf("start order %v: want a, then b, then c; solo in the first wave", order)
	}
	for _, name := range []string{"a", "b", "c", "solo"} {
		f.running(name)
	}
	f.d.shutdownServices()
	sent := f.sent()
	idx := func(name string) int { return slices.Index(sent, name+" SIGTERM") }
	if len(sent) != 4 || !(idx("c") < idx("b") && idx("b") < idx("a")) || idx("solo") < 0 {
		t.Fatalf("stop order %v: want c, then b, then a; solo at any time", sent)
	}
	for _, name := range []string{"a", "b", "c", "solo"} {
		if v := f.d.service(name).Snapshot(); !v.Done || v.Rec.State != supervisor.Stopped {
			t.Errorf("%s after shutdown: done %v, state %s", name, v.Done, v.Rec.State)
		}
	}
}

// TestHealthyDependencyWaitsForTheCheck: a dependent with condition
// healthy starts once its dependency's check passes, not when its sandbox
// runs.
func TestHealthyDependencyWaitsForTheCheck(t *testing.T) {
	f := newFixture(t, `services:
  db:
    command: [/bin/db]
    health: {exec: [/bin/check], interval: 1h, timeout: 1h, start_period: 0s}
  web:
    command: [/bin/web]
    depends_on: [{service: db, condition: healthy}]
`)
	done := f.startAll()
	f.view("db", "waiting for its check", func(v service.View) bool { return v.Rec.AwaitingReady() })
	if order := f.launcher.Order(); !slices.Equal(order, []string{"db"}) {
		t.Fatalf("launched %v before db was healthy", order)
	}
	if v := f.d.service("web").Snapshot(); !strings.Contains(v.Note, "waiting for db to be healthy") {
		t.Errorf("web's note %q", v.Note)
	}
	f.probes.Give(t, "db", true)
	wait(t, done, "start-up")
	f.running("web")
	if order := f.launcher.Order(); !slices.Equal(order, []string{"db", "web"}) {
		t.Errorf("launched %v", order)
	}
}

// TestFailedDependencyLeavesItsDependentDown: a dependent of a service
// that failed is not started, and says why and what to do.
func TestFailedDependencyLeavesItsDependentDown(t *testing.T) {
	f := newFixture(t, `services:
  db:
    command: [/bin/db]
    notify: true
  web:
    command: [/bin/web]
    depends_on: [{service: db, condition: healthy}]
`)
	f.launcher.Fail("db", sandbox.ErrCommandNotFound)
	wait(t, f.startAll(), "start-up")
	v := f.d.service("web").Snapshot()
	if v.Rec.State != supervisor.Unstarted || !strings.Contains(v.Note, "dependency db is failed, not healthy") ||
		!strings.Contains(v.Note, "corral start") {
		t.Errorf("web: state %q, note %q", v.Rec.State, v.Note)
	}
	if order := f.launcher.Order(); !slices.Equal(order, []string{"db"}) {
		t.Errorf("launched %v", order)
	}
}

// TestOperatorStopHoldsAcrossADaemonsDeath: a service the operator
// stopped stays stopped under the next daemon unless the last one stopped
// cleanly (then only unless-stopped holds it).
func TestOperatorStopHoldsAcrossADaemonsDeath(t *testing.T) {
	for _, tc := range []struct {
		clean    bool
		policy   string
		stayDown bool
	}{
		{false, "always", true},
		{true, "always", false},
		{true, "unless-stopped", true},
	} {
		t.Run(fmt.Sprintf("clean=%v %s", tc.clean, tc.policy), func(t *testing.T) {
			f := newFixture(t, "services:\n  svc: {command: [/bin/svc], restart: "+tc.policy+"}\n")
			f.d.cleanStart = tc.clean
			_ = f.store.Save("svc", service.Saved{Saved: supervisor.Saved{Desired: supervisor.Down}})
			wait(t, f.startAll(), "start-up")
			if launched := len(f.launcher.Order()) == 1; launched == tc.stayDown {
				t.Errorf("launched %v, want stay down %v", launched, tc.stayDown)
			}
		})
	}
}

// TestReloadRestartsAServiceWhoseImageMoved: an unchanged file entry
// whose image's tag now names another digest restarts at the next reload,
// said in the plan (also of a dry run); services whose image did not move,
// or that are not running, are left alone.
func TestReloadRestartsAServiceWhoseImageMoved(t *testing.T) {
	yaml := `services:
  web: {image: app:1, command: [serve]}
  pinned: {image: app:2}
  other: {command: [/bin/other]}
  down: {image: app:1, restart: "no"}
`
	f := newFixture(t, yaml)
	f.tagImage("app:1", "sha256:aaa")
	f.tagImage("app:2", "sha256:bbb")
	wait(t, f.startAll(), "start-up")
	first := map[string]*servicetest.Sandbox{}
	for range 4 {
		sb := f.launcher.Next(t)
		first[sb.Name] = sb
	}
	for _, name := range []string{"web", "pinned", "other"} {
		f.running(name)
	}
	first["down"].Exit(0)
	f.view("down", "exited", func(v service.View) bool { return v.PID == 0 })

	f.tagImage("app:1", "sha256:ccc") // a pull moved the tag
	ctx := context.Background()
	plan, err := f.d.Reload(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	want := api.Plan{
		Restart: []string{"web"}, Unchanged: []string{"pinned", "other", "down"},
		Why: map[string]string{"web": "image app:1 is now sha256:ccc; the sandbox runs sha256:aaa"},
	}
	if fmt.Sprint(*plan) != fmt.Sprint(want) {
		t.Fatalf("dry-run plan %+v, want %+v", *plan, want)
	}
	if len(f.sent()) != 0 || len(f.launcher.Order()) != 4 {
		t.Fatalf("a dry run acted: signals %v, launches %v", f.sent(), f.launcher.Order())
	}
	if plan, err = f.d.Reload(ctx, false); err != nil || fmt.Sprint(*plan) != fmt.Sprint(want) {
		t.Fatalf("reload: plan %+v, %v", plan, err)
	}
	sb := f.launcher.Next(t)
	f.launcher.None(t)
	if sb.Name != "web" || sb.Image != "app:1@sha256:ccc" || !first["web"].Destroyed() {
		t.Fatalf("restarted %s from %s; old sandbox destroyed %v", sb.Name, sb.Image, first["web"].Destroyed())
	}
	if v := f.running("web"); v.Image != "app:1@sha256:ccc" {
		t.Errorf("web runs %s", v.Image)
	}
	for _, name := range []string{"pinned", "other"} {
		if first[name].Destroyed() || len(first[name].Signals()) != 0 {
			t.Errorf("%s was touched", name)
		}
	}
	// Now that it runs what its tag names, the next reload leaves it.
	if plan, err = f.d.Reload(ctx, true); err != nil || len(plan.Restart) != 0 || plan.Why != nil {
		t.Errorf("a second reload: plan %+v, %v", plan, err)
	}
}

// TestReloadAppliesOnlyWhatChanged: a reload removes, adds, restarts a
// reshaped service, updates limits in place and leaves the rest alone; a
// dry run and a bad file change nothing.
func TestReloadAppliesOnlyWhatChanged(t *testing.T) {
	f := newFixture(t, `services:
  same: {command: [/bin/same]}
  limits: {command: [/bin/limits], resources: {memory: 64M}}
  reshaped: {command: [/bin/old]}
  gone: {command: [/bin/gone]}
`)
	wait(t, f.startAll(), "start-up")
	first := map[string]*servicetest.Sandbox{}
	for range 4 {
		sb := f.launcher.Next(t)
		first[sb.Name] = sb
	}
	for name := range first {
		f.running(name)
	}
	f.write(`services:
  same: {command: [/bin/same]}
  limits: {command: [/bin/limits], resources: {memory: 128M}}
  reshaped: {command: [/bin/new]}
  added: {command: [/bin/added]}
`)
	ctx := context.Background()
	plan, err := f.d.Reload(ctx, true)
	if err != nil {
		t.Fatal(err)
	}
	want := api.Plan{Add: []string{"added"}, Remove: []string{"gone"}, Restart: []string{"reshaped"}, Update: []string{"limits"}, Unchanged: []string{"same"}}
	if fmt.Sprint(*plan) != fmt.Sprint(want) {
		t.Fatalf("plan %+v, want %+v", *plan, want)
	}
	if len(f.sent()) != 0 || len(f.launcher.Order()) != 4 {
		t.Fatalf("a dry run acted: signals %v, launches %v", f.sent(), f.launcher.Order())
	}

	if _, err := f.d.Reload(ctx, false); err != nil {
		t.Fatal(err)
	}
	next := map[string]*servicetest.Sandbox{}
	for range 2 {
		sb := f.launcher.Next(t)
		next[sb.Name] = sb
	}
	f.launcher.None(t)
	if next["added"] == nil || next["reshaped"] == nil || next["reshaped"].Unit.Service.Command[0] != "/bin/new" {
		t.Fatalf("launched on reload: %v", next)
	}
	f.running("reshaped")
	if !first["gone"].Destroyed() || f.d.service("gone") != nil || f.store.Has("gone") {
		t.Errorf("gone: destroyed %v, still a service %v, saved %v", first["gone"].Destroyed(), f.d.service("gone") != nil, f.store.Has("gone"))
	}
	if !first["reshaped"].Destroyed() {
		t.Error("reshaped: the old sandbox was not destroyed")
	}
	if got := first["limits"].Resources().Memory; got != 128<<20 || first["limits"].Destroyed() {
		t.Errorf("limits: memory %d, destroyed %v: want updated in place", got, first["limits"].Destroyed())
	}
	if len(first["same"].Signals()) != 0 || first["same"].Destroyed() {
		t.Errorf("same was touched: signals %v", first["same"].Signals())
	}
	if v := f.d.service("reshaped").Snapshot(); v.Rec.Restarts != 0 {
		t.Errorf("a reload's restart counted as a restart: %d", v.Rec.Restarts)
	}

	f.write("services:\n  same: {command: not-a-list}\n")
	if _, err := f.d.Reload(ctx, false); !errors.Is(err, api.ErrInvalid) || !strings.Contains(err.Error(), "services.same.command") {
		t.Fatalf("bad file: %v", err)
	}
	if f.d.service("added") == nil || first["same"].Destroyed() {
		t.Error("a refused reload changed the services")
	}
}
