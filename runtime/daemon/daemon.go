// Package daemon is `corral daemon`: it reads the service file, runs each
// service in its own sandbox under a supervisor goroutine, serves the
// control API, reloads the file on SIGHUP or request, and on SIGTERM stops
// every service in dependency order and leaves nothing behind.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"time"

	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

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

	desiredMu sync.Mutex
	desired   map[string]supervisor.Desired
}

// ErrLocked is returned when another daemon holds the state dir.
var ErrLocked = errors.New("another corral daemon is using this state dir")

func (d *Daemon) daemonDir() string   { return filepath.Join(d.opts.StateDir, "daemon") }
func (d *Daemon) desiredPath() string { return filepath.Join(d.daemonDir(), "desired.json") }

// Run runs the daemon until ctx ends or it receives SIGTERM or SIGINT;
// SIGHUP reloads the service file.
func Run(ctx context.Context, opts Options) error {
	cfg, err := spec.Load(opts.ConfigPath)
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
	if err := os.MkdirAll(d.daemonDir(), 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
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
	if d.mgr, err = sandbox.NewManager(opts.StateDir, host, opts.Log); err != nil {
		return err
	}
	d.loadDesired()

	runCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	d.ctx = runCtx
	serveErr := make(chan error, 1)
	go func() { serveErr <- api.NewServer(d, d.log).Serve(runCtx, opts.SocketPath) }()

	d.log.WithFields(logrus.Fields{"config": cfg.Path, "services": len(cfg.Units), "cgroups": host.Mode}).Info("daemon started")
	var all []string
	for _, u := range cfg.Units {
		all = append(all, u.Service.Name)
	}
	d.startAll(cfg, all)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGINT, unix.SIGHUP)
	defer signal.Stop(sigs)
	for {
		select {
		case sig := <-sigs:
			if sig == unix.SIGHUP {
				if _, err := d.Reload(ctx, false); err != nil {
					d.log.WithError(err).Error("reload refused; the running configuration is unchanged")
				}
				continue
			}
			d.log.WithField("signal", sig).Info("shutting down")
			return d.shutdown(cancel, serveErr)
		case <-ctx.Done():
			return d.shutdown(cancel, serveErr)
		case err := <-serveErr:
			d.shutdownServices()
			return fmt.Errorf("control socket: %w", err)
		}
	}
}

func (d *Daemon) shutdown(cancel context.CancelFunc, serveErr chan error) error {
	d.shutdownServices()
	cancel()
	<-serveErr
	d.log.Info("daemon stopped")
	return nil
}

// startAll creates a goroutine for each named unit of cfg and starts them in dependency waves: a wave starts once
// every service of the previous one has left the starting state.
func (d *Daemon) startAll(cfg *spec.Config, names []string) {
	want := map[string]bool{}
	for _, u := range cfg.Units {
		if contains(names, u.Service.Name) {
			want[u.Service.Name] = true
			s := newService(d, u, supervisor.Record{})
			d.mu.Lock()
			d.services[u.Service.Name] = s
			d.mu.Unlock()
			d.wg.Add(1)
			go s.run(d.ctx)
		}
	}
	for _, wave := range spec.StartOrder(cfg) {
		var started []*service
		for _, name := range wave {
			if !want[name] {
				continue
			}
			s := d.service(name)
			if s.unit.Restart.Mode == spec.RestartUnlessStopped && d.desiredOf(name) == supervisor.Down {
				d.log.WithField("service", name).Info("stays stopped: stopped by the operator before (unless-stopped)")
				continue
			}
			_ = s.send(d.ctx, command{kind: cmdEvent, ev: supervisor.Event{Kind: supervisor.EvStart}})
			started = append(started, s)
		}
		d.waitLeft(started, supervisor.Starting, 30*time.Second)
	}
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
	if err := os.MkdirAll(logDir, 0o750); err != nil {
		return nil, fmt.Errorf("log dir: %w", err)
	}
	sb, err := d.mgr.Create(&u.Service, cfg.CgroupParent)
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

// Desired states persist so that an operator's stop survives a daemon
// restart for unless-stopped services.
func (d *Daemon) loadDesired() {
	d.desired = map[string]supervisor.Desired{}
	if err := store.ReadJSON(d.desiredPath(), &d.desired); err != nil && !os.IsNotExist(err) {
		d.log.WithError(err).Warn("desired states unreadable; starting every service")
		d.desired = map[string]supervisor.Desired{}
	}
}

func (d *Daemon) desiredOf(name string) supervisor.Desired {
	d.desiredMu.Lock()
	defer d.desiredMu.Unlock()
	return d.desired[name]
}

func (d *Daemon) persistDesired(name string, want supervisor.Desired) {
	d.desiredMu.Lock()
	defer d.desiredMu.Unlock()
	if d.desired[name] == want {
		return
	}
	d.desired[name] = want
	if err := store.WriteJSON(d.desiredPath(), d.desired); err != nil {
		d.log.WithError(err).Error("persist desired state")
	}
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
