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
// Beside the supervision: health checks and sd_notify readiness
// (health.go, notify.go), alerts on failures and recoveries (alerts.go),
// the Prometheus endpoint (metrics.go), and what survives a restart of the
// daemon (persist.go).
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/beneath"
	"github.com/corral-dev/corral/runtime/alert"
	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/sandbox"
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
}

// Daemon supervises the services of one service file.
type Daemon struct {
	opts   Options
	log    logrus.FieldLogger
	host   *cgroup.Host
	mgr    *sandbox.Manager
	events *broadcaster
	wg     sync.WaitGroup
	ctx    context.Context

	mu       sync.Mutex // guards cfg and services
	cfg      *spec.Config
	services map[string]*service
	reloadMu sync.Mutex // one reload at a time

	// cleanStart: the previous daemon stopped its services on its way out
	// (or there was none), rather than dying or leaving them running.
	cleanStart bool
	// stopping: the daemon is shutting down; start-up starts nothing more.
	stopping atomic.Bool
	// alerts sends the services' alerts (nil until Run sets it up).
	alerts *alert.Dispatcher
}

// ErrLocked is returned when another daemon holds the state dir.
var ErrLocked = errors.New("another corral daemon is using this state dir")

func (d *Daemon) daemonDir() string { return filepath.Join(d.opts.StateDir, "daemon") }

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
	d := &Daemon{opts: opts, log: opts.Log, host: host, events: newBroadcaster(), cfg: cfg, services: map[string]*service{}}
	if err := os.MkdirAll(d.savedDir(), 0o700); err != nil {
		return fmt.Errorf("state dir %s: %w", opts.StateDir, err)
	}
	unlock, err := lockFile(filepath.Join(d.daemonDir(), "lock"))
	if err != nil {
		return err
	}
	defer unlock()
	// The pid file lets scripts (make down) signal the daemon.
	pidFile := filepath.Join(d.daemonDir(), "pid")
	if err := store.WriteFile(pidFile, []byte(fmt.Sprintf("%d\n", os.Getpid())), 0o644); err != nil {
		return err
	}
	defer os.Remove(pidFile)
	if d.mgr, err = sandbox.NewManager(opts.StateDir, host, opts.Log, sandbox.Detached, cfg.CgroupParent); err != nil {
		return err
	}
	for _, dir := range []string{d.daemonDir(), d.savedDir()} {
		if _, err := store.SweepTemp(dir); err != nil {
			d.log.WithError(err).Warn("sweep")
		}
	}
	d.cleanStart = d.takeCleanStop()
	adopted, err := d.mgr.Adopt()
	if err != nil {
		// Those it could not take over stay as they are, untouched.
		d.log.WithError(err).Error("some sandboxes of the previous daemon could not be adopted")
	}

	// Signals are caught before anything is started, so that a SIGTERM
	// during start-up stops what was started instead of killing the
	// daemon with its work half done.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP, unix.SIGUSR2)
	defer signal.Stop(sigs)

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.ctx = runCtx
	if err := d.serveMetrics(runCtx); err != nil {
		return err
	}
	d.alerts = alert.New(d.log, hostname())
	defer d.alerts.Close()
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
			d.stopping.Store(true)
			<-started
			return d.shutdown(cancel, serveErr)
		case <-ctx.Done():
			d.stopping.Store(true)
			<-started
			return d.shutdown(cancel, serveErr)
		case err := <-serveErr:
			d.stopping.Store(true)
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
// its services on its way out. No previous daemon counts as clean.
func (d *Daemon) takeCleanStop() bool {
	entries, _ := os.ReadDir(d.savedDir())
	err := os.Remove(d.cleanStopPath())
	return err == nil || len(entries) == 0
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
		saved := d.loadSaved(a.Name)
		rec := supervisor.Resume(saved.Saved, a.Started(), u.Readiness())
		s := newService(d, u, rec, saved)
		s.liveOOM = saved.SandboxOOMKills // the rest happened while no daemon ran
		s.adopt(a.Sandbox)
		select { // count them once the service's goroutine runs
		case s.ooms <- a.Sandbox:
		default:
		}
		log := s.log.WithField("pid", s.view.pid)
		if a.Running {
			log.WithField("since", a.Started().Format(time.RFC3339)).Info("adopted running sandbox")
		} else {
			log.Info("adopted sandbox that ended while no daemon was running")
		}
		d.mu.Lock()
		d.services[a.Name] = s
		d.mu.Unlock()
		// The first event says it was adopted; from "" as on a first start.
		s.publish(supervisor.Record{}, supervisor.Event{Kind: supervisor.EvStarted})
		if rec.Desired == supervisor.Down {
			// The operator's stop was under way when the daemon died:
			// carry it out before the sandbox's end can be taken for a
			// failure to restart.
			s.step(supervisor.Event{Kind: supervisor.EvStop}, nil)
		}
		d.wg.Add(1)
		go s.run(d.ctx)
		change := d.compareAdopted(cfg, u, a)
		switch {
		case rec.Desired == supervisor.Down:
		case !a.Running:
			// Its exit, already on s.exited, drives the restart policy.
		case change == spec.Reshaped:
			log.Info("configuration changed while no daemon was running: restarting it")
			_ = s.send(d.ctx, command{kind: cmdEvent, ev: supervisor.Event{Kind: supervisor.EvRestart}})
		case change == spec.LimitsOnly:
			if err := a.UpdateResources(u.Service.Resources); err != nil {
				log.WithError(err).Error("update limits in place")
			} else {
				log.Info("limits changed while no daemon was running: updated in place")
			}
		}
	}
}

// compareAdopted says how an adopted sandbox differs from what its unit
// would make now: a new cgroup parent or log dir reshapes it too. A
// sandbox whose record was lost (Service unknown) is taken to match: it is
// never restarted on a guess.
func (d *Daemon) compareAdopted(cfg *spec.Config, u *spec.Unit, a *sandbox.Adopted) spec.Change {
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
		case <-time.After(spec.DefaultStopTimeout):
			_ = a.KillAll()
			<-done
		}
	}
	if err := a.Destroy(); err != nil {
		log.WithError(err).Error("remove sandbox")
	}
	if err := os.Remove(d.savedPath(a.Name)); err != nil && !os.IsNotExist(err) {
		log.WithError(err).Warn("remove saved state")
	}
}

// startAll creates a goroutine for each named unit of cfg and starts them
// in dependency waves.
func (d *Daemon) startAll(cfg *spec.Config, names []string) {
	d.startWaves(cfg, d.register(cfg, names))
}

// startPlan is what register decided: the services it made, and those of
// them that stay down (stopped by the operator before).
type startPlan struct{ want, stayDown map[string]bool }

// register makes a goroutine for each named unit of cfg that has none yet.
func (d *Daemon) register(cfg *spec.Config, names []string) startPlan {
	want := map[string]bool{}
	stayDown := map[string]bool{}
	for _, u := range cfg.Units {
		if contains(names, u.Service.Name) && d.service(u.Service.Name) == nil {
			want[u.Service.Name] = true
			saved := d.loadSaved(u.Service.Name)
			// The operator's stop holds across a daemon's death; across a
			// clean stop only for unless-stopped (as Docker's policies).
			stayDown[u.Service.Name] = saved.Desired == supervisor.Down &&
				(!d.cleanStart || u.Restart.Mode == spec.RestartUnlessStopped)
			s := newService(d, u, supervisor.Restore(saved.Saved), saved)
			d.mu.Lock()
			d.services[u.Service.Name] = s
			d.mu.Unlock()
			d.wg.Add(1)
			go s.run(d.ctx)
		}
	}
	for name := range want {
		if s := d.service(name); !stayDown[name] && len(s.unit.DependsOn) > 0 {
			s.setNote("waiting for " + describeDeps(s.unit.DependsOn))
		}
	}
	return startPlan{want: want, stayDown: stayDown}
}

// startWaves starts the services of plan in dependency waves: a wave
// starts once every service of the previous one has left the starting
// state.
func (d *Daemon) startWaves(cfg *spec.Config, plan startPlan) {
	want, stayDown := plan.want, plan.stayDown
	for _, wave := range spec.StartOrder(cfg) {
		var started []*service
		for _, name := range wave {
			if !want[name] || d.stopping.Load() {
				continue
			}
			s := d.service(name)
			if stayDown[name] {
				d.log.WithField("service", name).Info("stays stopped: stopped by the operator before")
				continue
			}
			if dep, why := d.unreadyDependency(cfg, s.unit); dep != "" {
				d.log.WithFields(logrus.Fields{"service": name, "dependency": dep}).Warn("not started: " + why)
				s.setNote("not started: " + why + "; start it with corral start once " + dep + " is healthy")
				continue
			}
			_ = s.send(d.ctx, command{kind: cmdEvent, ev: supervisor.Event{Kind: supervisor.EvStart}})
			started = append(started, s)
		}
		d.waitStarted(cfg, started)
	}
}

// waitStarted waits until each service of ss has done what its dependents
// wait for: started (its sandbox runs, or it failed to), or, for those a
// dependent needs healthy, ready.
func (d *Daemon) waitStarted(cfg *spec.Config, ss []*service) {
	for _, s := range ss {
		needReady := dependedOnHealthy(cfg, s.name)
		deadline := time.Now().Add(30 * time.Second)
		if needReady {
			deadline = time.Now().Add(readyTimeout(s.unit))
		}
		for !d.stopping.Load() && time.Now().Before(deadline) {
			v := s.snapshot()
			if v.done || !needReady && (v.rec.State != supervisor.Starting && v.rec.State != "" || v.rec.AwaitingReady()) {
				break
			}
			// Ready; or given up on. Restarts on the way (backoff) are
			// waited through, within the deadline.
			if needReady && (v.rec.State == supervisor.Running && v.health != healthUnhealthy ||
				v.rec.State == supervisor.Failed || v.rec.State == supervisor.Stopped) {
				break
			}
			time.Sleep(2 * time.Millisecond)
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
func (d *Daemon) unreadyDependency(cfg *spec.Config, u *spec.Unit) (string, string) {
	for _, dep := range u.DependsOn {
		if dep.Condition != spec.DependHealthy {
			continue
		}
		s := d.service(dep.Name)
		if s == nil {
			continue
		}
		v := s.snapshot()
		if v.rec.State != supervisor.Running || v.health == healthUnhealthy {
			return dep.Name, fmt.Sprintf("dependency %s is %s, not healthy", dep.Name, describeState(v))
		}
	}
	return "", ""
}

func describeState(v view) string {
	switch {
	case v.rec.AwaitingReady():
		return "not ready"
	case v.health == healthUnhealthy:
		return "unhealthy"
	case v.rec.State == "":
		return string(supervisor.Stopped)
	}
	return string(v.rec.State)
}

// waitLeft waits until no service in ss is in state st (or timeout).
func (d *Daemon) waitLeft(ss []*service, st supervisor.State, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for _, s := range ss {
		for {
			v := s.snapshot()
			if v.rec.State != st && v.rec.State != "" || v.done || time.Now().After(deadline) {
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// shutdownServices stops every service, dependents before their
// dependencies and each wave in parallel, then ends their goroutines.
func (d *Daemon) shutdownServices() {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	for _, wave := range spec.StopOrder(cfg) {
		var ss []*service
		for _, name := range wave {
			if s := d.service(name); s != nil {
				_ = s.send(context.Background(), command{kind: cmdRemove, shutdown: true})
				ss = append(ss, s)
			}
		}
		waitDone(ss)
	}
	d.wg.Wait()
	if err := d.host.RemoveEmpty(cfg.CgroupParent); err != nil {
		d.log.WithError(err).Warn("remove cgroup parent")
	}
}

// waitDone waits until the goroutines of ss have ended.
func waitDone(ss []*service) {
	for _, s := range ss {
		for !s.snapshot().done {
			time.Sleep(2 * time.Millisecond)
		}
	}
}

func (d *Daemon) service(name string) *service {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.services[name]
}

// startSandbox creates and starts a sandbox for the unit, its output going
// to its log directory.
func (d *Daemon) startSandbox(u *spec.Unit) (*sandbox.Sandbox, error) {
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	logDir := filepath.Join(cfg.LogDir, u.Service.Name)
	if err := prepareLogDir(logDir, u.Service.User); err != nil {
		return nil, err
	}
	svc := u.Service
	sb, err := d.mgr.Create(&svc, cfg.CgroupParent)
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
	if err := sb.Start(sandbox.Stdio{Stdin: devnull, Stdout: devnull, Stderr: devnull, LogDir: logDir, LogMaxSize: u.Logs.MaxSize, LogMaxFiles: u.Logs.MaxFiles}); err != nil {
		return nil, errors.Join(err, sb.Destroy())
	}
	return sb, nil
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
