// Package daemon is `corral daemon`: it reads the service file, runs each
// service in its own sandbox under a supervisor goroutine, serves the
// control API, reloads the file on SIGHUP or request, and on SIGTERM stops
// every service in dependency order and leaves nothing behind.
//
// The sandboxes do not depend on the daemon: each one's init keeps its
// logs and records its exit. A daemon that is killed, or leaves on
// SIGUSR2, leaves them running, and the next daemon on the same state dir
// adopts them, learns how those that ended meanwhile ended, and carries
// on supervising.
//
// Each service is an actor (runtime/service) built from the daemon's
// collaborators (deps): the daemon owns the start order, reloads,
// shutdown, the control API (backend.go) and the Prometheus endpoint
// (metrics.go). Tests build a daemon over fakes (newDaemon).
package daemon

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jonboulle/clockwork"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/beneath"
	"github.com/corral-dev/corral/rootfs/image"
	"github.com/corral-dev/corral/runtime/alert"
	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/imagerun"
	"github.com/corral-dev/corral/runtime/network"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/runtime/service"
	"github.com/corral-dev/corral/runtime/store"
	"github.com/corral-dev/corral/runtime/supervisor"
	"github.com/corral-dev/corral/spec"
)

// Options configure a daemon.
type Options struct {
	ConfigPath string
	StateDir   string
	SocketPath string
	Log        logrus.FieldLogger
	// Version is corral's build, for the metrics.
	Version string
	// Host is what the service file is checked against, at start and on
	// each reload (spec.LoadOn): corral's own paths on this host.
	Host spec.Host
	// DataDir holds the image store that services with image: run from.
	DataDir string
}

// Daemon supervises the services of one service file.
type Daemon struct {
	opts   Options
	log    logrus.FieldLogger
	deps   deps
	events *broadcaster
	wg     sync.WaitGroup
	ctx    context.Context

	mu       sync.Mutex // guards cfg and services
	cfg      *spec.Config
	services map[string]*service.Actor
	reloadMu sync.Mutex // one reload at a time

	// cleanStart: the previous daemon stopped its services on its way out
	// (or there was none), rather than dying or leaving them running.
	cleanStart bool
	// stopping: the daemon is shutting down; start-up starts nothing more
	// and stops waiting. stopC is closed then.
	stopping atomic.Bool
	stopC    chan struct{}
	stopOnce sync.Once
	// alerts sends the services' alerts (nil: none).
	alerts service.Alerts
}

// savedStore keeps each service's saved state (service.Files on disk).
type savedStore interface {
	service.Store
	Load(name string) (service.Saved, error)
}

// deps are the daemon's collaborators: the host's in Run, fakes in tests.
type deps struct {
	launcher service.Launcher
	store    savedStore
	clock    clockwork.Clock
	// rand and probe are nil for the real ones (see service.Deps).
	rand  func() float64
	probe service.ProbeFunc
	// usage reads a running sandbox's cgroup, logLoss its log's losses,
	// for ps, status and the metrics; removeParent removes the cgroup
	// parent once every sandbox is gone. Each may be nil.
	usage        func(cgroupPath string) (cgroup.Stats, error)
	logLoss      func(name string) (uint64, syscall.Errno)
	removeParent func(parent string) error
	// network reports the sandboxes of names that are on the bridge;
	// nil where none can be.
	network func(names []string) map[string]network.Status
	// refreshNetwork resolves the bridge sandboxes' egress names again,
	// at a reload; nil where none can be.
	refreshNetwork func() error
	// imageDigest is the manifest digest an image's name has in the
	// store now; nil where no service can run from an image.
	imageDigest func(ref string) (string, error)
}

// newDaemon is a daemon of cfg over deps, with no service yet.
func newDaemon(ctx context.Context, opts Options, cfg *spec.Config, dp deps) *Daemon {
	if opts.Log == nil {
		opts.Log = logrus.StandardLogger()
	}
	if dp.clock == nil {
		dp.clock = clockwork.NewRealClock()
	}
	return &Daemon{
		opts: opts, log: opts.Log, deps: dp, events: newBroadcaster(), cfg: cfg,
		services: map[string]*service.Actor{}, ctx: ctx, stopC: make(chan struct{}),
	}
}

// actorDeps are what each service's actor is built with.
func (d *Daemon) actorDeps() service.Deps {
	return service.Deps{
		Launcher: d.deps.launcher, Store: d.deps.store, Events: d.events, Alerts: d.alerts,
		Clock: d.deps.clock, Rand: d.deps.rand, Probe: d.deps.probe, Log: d.log,
	}
}

// logDir is the service's own log directory under cfg's.
func logDir(cfg *spec.Config, name string) string { return filepath.Join(cfg.LogDir, name) }

// ErrLocked is returned when another daemon holds the state dir.
var ErrLocked = errors.New("another corral daemon is using this state dir")

// cleanStopPath marks a daemon that stopped its services on the way out
// (SIGTERM), as opposed to one that was killed or left them running.
func (d *Daemon) cleanStopPath() string {
	return filepath.Join(d.opts.StateDir, "daemon", "stopped-services")
}

// beginStop says the daemon is shutting down: start-up starts nothing
// more and stops waiting.
func (d *Daemon) beginStop() {
	d.stopOnce.Do(func() {
		d.stopping.Store(true)
		close(d.stopC)
	})
}

// config is the configuration in force.
func (d *Daemon) config() *spec.Config {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cfg
}

// Run runs the daemon until ctx ends or it receives SIGTERM or SIGINT
// (stop every service, then exit) or SIGUSR2 (exit, leaving the services
// running for the next daemon); SIGHUP reloads the service file.
func Run(ctx context.Context, opts Options) error {
	cfg, err := spec.LoadOn(opts.ConfigPath, opts.Host)
	if err != nil {
		return err
	}
	host, err := cgroup.Detect()
	if err != nil {
		return err
	}
	if err := host.CheckParent(cfg.CgroupParent); err != nil {
		return err
	}
	daemonDir := filepath.Join(opts.StateDir, "daemon")
	files := service.Files{Dir: filepath.Join(daemonDir, "services")}
	if err := os.MkdirAll(files.Dir, 0o700); err != nil {
		return fmt.Errorf("state dir %s: %w", opts.StateDir, err)
	}
	unlock, err := lockFile(filepath.Join(daemonDir, "lock"))
	if err != nil {
		return err
	}
	defer unlock()
	// The pid file lets scripts (make down) signal the daemon.
	pidFile := filepath.Join(daemonDir, "pid")
	if err := store.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile)
	if fs, ok := diskFilesystem(opts.StateDir); ok {
		opts.Log.Warnf("state dir %s is on %s, not a tmpfs: every sandbox start makes about 15 files there, and on a disk filesystem each costs an inode allocation (on ext4, 2.5x the daemon's CPU per start, measured); mount a tmpfs there, as /run is on most hosts", opts.StateDir, fs)
	}
	mgr, err := sandbox.NewManager(opts.StateDir, host, opts.Log, sandbox.Detached, cfg.CgroupParent)
	if err != nil {
		return err
	}
	bridge := cfg.Bridge
	mgr.SetNetwork(func() (sandbox.Network, error) { return network.Open(opts.StateDir, bridge) })
	for _, dir := range []string{daemonDir, files.Dir} {
		if _, err := store.SweepTemp(dir); err != nil {
			opts.Log.WithError(err).Warn("sweep")
		}
	}

	// Signals are caught before anything is started, so that a SIGTERM
	// during start-up stops what was started instead of killing the
	// daemon with its work half done.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR2)
	defer signal.Stop(sigs)

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	l := &launcher{mgr: mgr, host: opts.Host, dataDir: opts.DataDir}
	d := newDaemon(runCtx, opts, cfg, deps{
		launcher: l, store: files,
		usage: host.Usage, logLoss: mgr.LogLoss, removeParent: host.RemoveEmpty,
		imageDigest: l.imageDigest, network: mgr.NetworkStatus, refreshNetwork: mgr.RefreshNetwork,
	})
	l.cfg = d.config
	d.cleanStart = takeCleanStop(files.Dir, d.cleanStopPath())
	adopted, err := mgr.Adopt()
	if err != nil {
		// Those it could not take over stay as they are, untouched.
		d.log.WithError(err).Error("some sandboxes of the previous daemon could not be adopted")
	}
	if network.Present(opts.StateDir, bridge.Name) {
		// What a killed daemon left on the bridge of sandboxes now gone.
		if err := mgr.SweepNetwork(); err != nil {
			d.log.WithError(err).Warn("sweep of the bridge")
		}
	}
	if err := d.serveMetrics(runCtx); err != nil {
		return err
	}
	dispatcher := alert.New(d.log, hostname())
	defer dispatcher.Close()
	d.alerts = dispatcher
	d.log.WithFields(logrus.Fields{"config": cfg.Path, "services": len(cfg.Units), "cgroups": host.Mode}).Info("daemon started")
	d.resume(cfg, adopted)
	var all []string
	for _, u := range cfg.Units {
		all = append(all, u.Service.Name)
	}
	// Every service is known before the control socket answers: a client
	// never hears "not found" for a configured service while the daemon
	// starts.
	d.reloadMu.Lock() // no reload before the first start-up is done
	plan := d.register(cfg, all)
	serveErr := make(chan error, 1)
	go func() { serveErr <- api.NewServer(d, d.log).Serve(runCtx, opts.SocketPath) }()
	// Start-up runs beside the signal loop: waiting for a dependency to be
	// healthy may take a while, and a SIGTERM meanwhile must be heard.
	started := make(chan struct{})
	go func() {
		defer close(started)
		defer d.reloadMu.Unlock()
		d.startWaves(cfg, plan)
	}()

	for {
		select {
		case sig := <-sigs:
			switch sig {
			case unix.SIGHUP:
				if _, err := d.Reload(ctx, false); err != nil {
					d.log.WithError(err).Error("reload refused; the running configuration is unchanged")
				}
				continue
			case unix.SIGUSR2:
				d.log.Info("leaving: the services keep running for the next daemon to adopt")
				cancel()
				<-serveErr
				return nil
			}
			d.log.WithField("signal", sig).Info("shutting down")
			d.beginStop()
			<-started
			return d.shutdown(cancel, serveErr)
		case <-ctx.Done():
			d.beginStop()
			<-started
			return d.shutdown(cancel, serveErr)
		case err := <-serveErr:
			d.beginStop()
			<-started
			d.shutdownServices()
			return fmt.Errorf("control socket: %w", err)
		}
	}
}

func (d *Daemon) shutdown(cancel context.CancelFunc, serveErr chan error) error {
	d.shutdownServices()
	if err := store.WriteFile(d.cleanStopPath(), nil, 0o600); err != nil {
		d.log.WithError(err).Warn("mark the clean stop")
	}
	cancel()
	<-serveErr
	d.log.Info("daemon stopped")
	return nil
}

// takeCleanStop reports (and clears) whether the previous daemon stopped
// its services on its way out. No previous daemon (nothing saved) counts
// as clean.
func takeCleanStop(savedDir, marker string) bool {
	entries, _ := os.ReadDir(savedDir)
	err := os.Remove(marker)
	return err == nil || len(entries) == 0
}

// loadSaved reads a service's saved state. A corrupt file is reported and
// ignored: what runs (adopted sandboxes) then decides, and nothing is
// killed for it.
func (d *Daemon) loadSaved(name string) service.Saved {
	s, err := d.deps.store.Load(name)
	if err != nil {
		d.log.WithError(err).WithField("service", name).Warn("saved service state unreadable; going by what runs")
		return service.Saved{}
	}
	return s
}

// resume takes over the sandboxes the previous daemon left: those of
// configured services are supervised again as they are (a changed
// configuration is applied as a reload would), the others are stopped.
func (d *Daemon) resume(cfg *spec.Config, adopted []*sandbox.Adopted) {
	for _, a := range adopted {
		u := cfg.Unit(a.Name)
		if u == nil {
			d.wg.Add(1)
			go d.retire(a)
			continue
		}
		ad := service.Adoption{Sandbox: a.Sandbox, Running: a.Running, Change: compareAdopted(cfg, u, a)}
		d.add(service.Adopt(u, logDir(cfg, a.Name), d.loadSaved(a.Name), ad, d.actorDeps()))
	}
}

// add registers the actor and runs it.
func (d *Daemon) add(a *service.Actor) {
	d.mu.Lock()
	d.services[a.Name()] = a
	d.mu.Unlock()
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		a.Run(d.ctx)
	}()
}

// compareAdopted says how an adopted sandbox differs from what its unit
// would make now: a new cgroup parent or log dir reshapes it too. A
// sandbox whose record was lost (Service unknown) is taken to match: it is
// never restarted on a guess.
func compareAdopted(cfg *spec.Config, u *spec.Unit, a *sandbox.Adopted) spec.Change {
	if a.Service == nil {
		return spec.Same
	}
	if filepath.Dir(a.CgroupPath()) != filepath.Clean(cfg.CgroupParent) ||
		(a.LogDir() != "" && a.LogDir() != filepath.Join(cfg.LogDir, a.Name)) {
		return spec.Reshaped
	}
	return spec.Compare(a.Service, &u.Service)
}

// retire stops and removes an adopted sandbox whose service is no longer
// configured: SIGTERM, then SIGKILL after the default stop timeout.
func (d *Daemon) retire(a *sandbox.Adopted) {
	defer d.wg.Done()
	log := d.log.WithField("sandbox", a.Name)
	if a.Running {
		log.Warn("stopping a sandbox left by the previous daemon: its service is no longer in the configuration")
		done := make(chan struct{})
		go func() {
			_, _ = a.Wait()
			close(done)
		}()
		if err := a.Signal(unix.SIGTERM); err != nil {
			log.WithError(err).Debug("signal")
		}
		select {
		case <-done:
		case <-d.deps.clock.After(spec.DefaultStopTimeout):
			_ = a.KillAll()
			<-done
		}
	}
	if err := a.Destroy(); err != nil {
		log.WithError(err).Error("remove sandbox")
	}
	if err := d.deps.store.Remove(a.Name); err != nil {
		log.WithError(err).Warn("remove saved state")
	}
}

// startPlan is what register decided: the services it made, and those of
// them that stay down (stopped by the operator before).
type startPlan struct{ want, stayDown map[string]bool }

// register makes an actor for each named unit of cfg that has none yet.
func (d *Daemon) register(cfg *spec.Config, names []string) startPlan {
	want := map[string]bool{}
	stayDown := map[string]bool{}
	for _, u := range cfg.Units {
		name := u.Service.Name
		if !slices.Contains(names, name) || d.service(name) != nil {
			continue
		}
		want[name] = true
		saved := d.loadSaved(name)
		// The operator's stop holds across a daemon's death; across a
		// clean stop only for unless-stopped (as Docker's policies).
		stayDown[name] = saved.Desired == supervisor.Down &&
			(!d.cleanStart || u.Restart.Mode == spec.RestartUnlessStopped)
		a := service.New(u, logDir(cfg, name), saved, d.actorDeps())
		if !stayDown[name] && len(u.DependsOn) > 0 {
			a.SetNote("waiting for " + describeDeps(u.DependsOn))
		}
		d.add(a)
	}
	return startPlan{want: want, stayDown: stayDown}
}

// startWaves starts the services of plan in dependency waves: a wave
// starts once every service of the previous one has left the starting
// state.
func (d *Daemon) startWaves(cfg *spec.Config, plan startPlan) {
	want, stayDown := plan.want, plan.stayDown
	for _, wave := range spec.StartOrder(cfg) {
		var started []*service.Actor
		for _, name := range wave {
			if !want[name] || d.stopping.Load() {
				continue
			}
			a := d.service(name)
			if stayDown[name] {
				d.log.WithField("service", name).Info("stays stopped: stopped by the operator before")
				continue
			}
			if dep, why := d.unreadyDependency(cfg.Unit(name)); dep != "" {
				d.log.WithFields(logrus.Fields{"service": name, "dependency": dep}).Warn("not started: " + why)
				a.SetNote("not started: " + why + "; start it with corral start once " + dep + " is healthy")
				continue
			}
			_ = a.Send(d.ctx, supervisor.EvStart, false)
			started = append(started, a)
		}
		d.waitStarted(cfg, started)
	}
}

// waitStarted waits until each service of as has done what its dependents
// wait for: started (its sandbox runs, or it failed to), or, for those a
// dependent needs healthy, ready. Restarts on the way (backoff) are waited
// through, within the deadline.
func (d *Daemon) waitStarted(cfg *spec.Config, as []*service.Actor) {
	for _, a := range as {
		needReady := dependedOnHealthy(cfg, a.Name())
		timeout := 30 * time.Second
		if needReady {
			timeout = readyTimeout(cfg.Unit(a.Name()))
		}
		d.waitFor(a, timeout, func(v service.View) bool {
			if needReady {
				return v.Done || v.Rec.State == supervisor.Running && v.Health != service.HealthUnhealthy ||
					v.Rec.State == supervisor.Failed || v.Rec.State == supervisor.Stopped
			}
			return v.Done || v.Rec.State != supervisor.Starting && v.Rec.State != supervisor.Unstarted || v.Rec.AwaitingReady()
		})
	}
}

// waitFor waits until a's view meets cond, or (with a timeout; 0 is
// none) until the timeout passes or the daemon begins to stop.
func (d *Daemon) waitFor(a *service.Actor, timeout time.Duration, cond func(service.View) bool) {
	var deadline <-chan time.Time
	var stopping <-chan struct{}
	if timeout > 0 {
		deadline = d.deps.clock.After(timeout)
		stopping = d.stopC
	}
	for {
		changed := a.Changed()
		if cond(a.Snapshot()) {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			return
		case <-stopping:
			return
		}
	}
}

// dependedOnHealthy reports whether a service of cfg depends on name with
// condition healthy.
func dependedOnHealthy(cfg *spec.Config, name string) bool {
	for _, u := range cfg.Units {
		for _, dep := range u.DependsOn {
			if dep.Name == name && dep.Condition == spec.DependHealthy {
				return true
			}
		}
	}
	return false
}

// readyTimeout bounds the wait for a service to become ready: its start
// period and enough checks to pass, or 90 s for notify.
func readyTimeout(u *spec.Unit) time.Duration {
	if h := u.Health; h != nil {
		return h.StartPeriod + time.Duration(h.Retries+h.SuccessThreshold+1)*(h.Interval+h.Timeout)
	}
	return 90 * time.Second
}

// unreadyDependency names a dependency of u with condition healthy that is
// not running and ready, and says why ("" if none).
func (d *Daemon) unreadyDependency(u *spec.Unit) (string, string) {
	for _, dep := range u.DependsOn {
		if dep.Condition != spec.DependHealthy {
			continue
		}
		a := d.service(dep.Name)
		if a == nil {
			continue
		}
		v := a.Snapshot()
		if v.Rec.State != supervisor.Running || v.Health == service.HealthUnhealthy {
			return dep.Name, fmt.Sprintf("dependency %s is %s, not healthy", dep.Name, v.Describe())
		}
	}
	return "", ""
}

// shutdownServices stops every service, dependents before their
// dependencies and each wave in parallel, then ends their goroutines.
func (d *Daemon) shutdownServices() {
	cfg := d.config()
	d.removeWaves(cfg, func(string) bool { return true }, false)
	d.wg.Wait()
	if d.deps.removeParent != nil {
		if err := d.deps.removeParent(cfg.CgroupParent); err != nil {
			d.log.WithError(err).Warn("remove cgroup parent")
		}
	}
}

// removeWaves removes the services of cfg that pick says, dependents
// before their dependencies, each wave in parallel; forget drops their
// saved state (they left the configuration).
func (d *Daemon) removeWaves(cfg *spec.Config, pick func(string) bool, forget bool) {
	for _, wave := range spec.StopOrder(cfg) {
		var as []*service.Actor
		for _, name := range wave {
			if a := d.service(name); a != nil && pick(name) {
				_ = a.Remove(context.Background(), true, forget)
				as = append(as, a)
			}
		}
		for _, a := range as {
			d.waitFor(a, 0, func(v service.View) bool { return v.Done })
		}
	}
}

func (d *Daemon) service(name string) *service.Actor {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.services[name]
}

// Release frees the ID block of a service that left the configuration.
func (l *launcher) Release(name string) error { return l.mgr.ReleaseIDs(name) }

// launcher starts real sandboxes: the actors' service.Launcher.
type launcher struct {
	mgr  *sandbox.Manager
	cfg  func() *spec.Config
	host spec.Host // what mount sources are checked against at each start
	// dataDir holds the image store, opened at the first service with an
	// image.
	dataDir string
	storeMu sync.Mutex
	store   *image.Store
}

// Launch creates and starts a sandbox for the unit, its output going to
// its log directory.
func (l *launcher) Launch(u *spec.Unit) (service.Sandbox, error) {
	cfg := l.cfg()
	dir := logDir(cfg, u.Service.Name)
	// Checked when the file was loaded, but a source can have become a
	// symlink since: the runtime follows it at this start.
	if err := l.host.CheckMounts(&u.Service, cfg.LogDir); err != nil {
		return nil, err
	}
	// A service from an image runs as the image's config says (its
	// command, its user...): applied first, the log dir is made for it.
	service := u.Service // the sandbox's record keeps its own copy
	svc := &service
	var prepared *imagerun.Prepared
	if svc.Image != nil {
		store, err := l.imageStore()
		if err != nil {
			return nil, &spec.FieldError{Field: "image", Err: err}
		}
		if prepared, err = imagerun.Prepare(context.Background(), store, svc); err != nil {
			return nil, err
		}
		defer prepared.Release() // handed to the sandbox's init once it runs
		svc = prepared.Service
	}
	// The sandbox's init writes the log as the service's user, which in
	// its user namespace is an ID of its block on the host.
	owner, err := l.mgr.HostUser(svc)
	if err != nil {
		return nil, err
	}
	if err := prepareLogDir(dir, owner); err != nil {
		return nil, err
	}
	var layers []string
	if prepared != nil {
		layers = prepared.Layers
	}
	sb, err := l.mgr.Create(svc, cfg.CgroupParent, layers...)
	if err != nil {
		return nil, err
	}
	// The init writes its own diagnostics to its stderr; the command's
	// output goes to the log dir. Give libcontainer real files: with nil
	// stdio its start fails when several sandboxes start at once.
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, errors.Join(err, sb.Destroy())
	}
	defer devnull.Close()
	if err := sb.Start(sandbox.Stdio{Stdin: devnull, Stdout: devnull, Stderr: devnull, LogDir: dir, LogMaxSize: u.Logs.MaxSize, LogMaxFiles: u.Logs.MaxFiles}); err != nil {
		return nil, errors.Join(err, sb.Destroy())
	}
	if prepared != nil {
		// The sandbox's init holds its image while it lives, also after
		// this daemon is gone: no rm or prune takes its layers.
		pid, err := sb.Pid()
		if err == nil {
			err = prepared.Hold(pid)
		}
		if err != nil {
			return nil, errors.Join(err, sb.Destroy())
		}
	}
	return sb, nil
}

// imageStore is the image store, opened once.
func (l *launcher) imageStore() (*image.Store, error) {
	l.storeMu.Lock()
	defer l.storeMu.Unlock()
	if l.store == nil {
		s, err := image.Open(imagerun.StoreDir(cmp.Or(l.dataDir, spec.DefaultDataDir)))
		if err != nil {
			return nil, err
		}
		l.store = s
	}
	return l.store, nil
}

// imageDigest is the manifest digest ref names in the image store now.
func (l *launcher) imageDigest(ref string) (string, error) {
	store, err := l.imageStore()
	if err != nil {
		return "", err
	}
	img, err := store.Get(ref)
	if err != nil {
		return "", err
	}
	return img.Digest.String(), nil
}

// lockFile takes an exclusive, non-blocking lock, so a second daemon on
// the same state dir refuses to start instead of fighting the first.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("daemon lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w (%s is locked)", ErrLocked, path)
	}
	return func() { f.Close() }, nil
}

func hostname() string {
	h, _ := os.Hostname()
	return h
}

// prepareLogDir makes the service's log directory and gives it, and the
// log files in it, to the service's user: the sandbox's init writes and
// rotates them as that user. That user owns the directory, so what is in
// it is hostile input: every step is relative to an open directory and
// follows no symlink, ownership is changed on open files, and a file with
// more than one link (a hard link to a file elsewhere) is left alone.
func prepareLogDir(dir string, user spec.User) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	parent, err := beneath.OpenRoot(filepath.Dir(dir))
	if err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	defer parent.Close()
	logs, err := parent.MkdirAll(filepath.Base(dir), 0o750)
	if err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	defer logs.Close()
	uid, gid := int(user.UID), int(user.GID)
	if err := logs.File().Chown(uid, gid); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	names, err := logs.File().Readdirnames(-1)
	if err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	for _, name := range names {
		// Files left by an earlier user of the service (its user changed).
		f, err := logs.OpenFile(name)
		if err != nil {
			continue // not a regular file, or a symlink: not ours to chown
		}
		var st unix.Stat_t
		if err := unix.Fstat(int(f.Fd()), &st); err == nil && st.Nlink == 1 {
			err = f.Chown(uid, gid)
		}
		f.Close()
		if err != nil {
			return fmt.Errorf("log dir: %s: %w", name, err)
		}
	}
	return nil
}

// describeDeps says what a service waits for: "db to be healthy, cache to
// start".
func describeDeps(deps []spec.Dependency) string {
	var parts []string
	for _, dep := range deps {
		what := " to start"
		if dep.Condition == spec.DependHealthy {
			what = " to be healthy"
		}
		parts = append(parts, dep.Name+what)
	}
	return strings.Join(parts, ", ")
}
