package spec

import (
	"syscall"
	"time"
)

// Restart modes.
const (
	RestartNo            = "no"
	RestartOnFailure     = "on-failure"
	RestartAlways        = "always"
	RestartUnlessStopped = "unless-stopped"
)

// Policy defaults. They neither hammer the host (a crashing service is
// retried at most every 30 s once backed off) nor leave a service down for
// minutes after a short outage (the cap is 30 s, and the delay goes back
// to 200 ms once the service has run for a minute).
const (
	DefaultRestartMode             = RestartOnFailure
	DefaultBackoffInitial          = 200 * time.Millisecond
	DefaultBackoffMax              = 30 * time.Second
	DefaultBackoffMultiplier       = 2.0
	DefaultBackoffJitter           = 0.2 // ± this fraction of each delay
	DefaultBackoffResetAfter       = 60 * time.Second
	DefaultCrashLoopFailures       = 5
	DefaultCrashLoopWindow         = 60 * time.Second
	DefaultStopSignal              = syscall.SIGTERM
	DefaultLogMaxSize        int64 = 10 << 20
	DefaultLogMaxFiles             = 3
	DefaultLogDir                  = "/var/log/corral"
)

// Restart says when a service whose sandbox ended is started again.
type Restart struct {
	// Mode is RestartNo, RestartOnFailure, RestartAlways or
	// RestartUnlessStopped.
	Mode string
	// MaxRetries bounds consecutive failed restarts under on-failure:N;
	// 0 means no bound.
	MaxRetries int
	Backoff    Backoff
	CrashLoop  CrashLoop
}

// Backoff is the exponential delay between restarts.
type Backoff struct {
	Initial    time.Duration
	Max        time.Duration
	Multiplier float64
	// Jitter spreads each delay by ± this fraction, so services that fail
	// together do not restart in lock-step.
	Jitter float64
	// ResetAfter: a sandbox that ran this long was stable; the next delay
	// starts again from Initial.
	ResetAfter time.Duration
}

// CrashLoop: Failures exits within Window put the service in the visible
// crash-loop state (it keeps being retried at the capped delay).
type CrashLoop struct {
	Failures int
	Window   time.Duration
}

// Stop is how a service's sandbox is stopped: Signal to its init, then,
// Timeout later, SIGKILL to every process in it.
type Stop struct {
	Signal  syscall.Signal
	Timeout time.Duration
}

// Logs bounds a service's log files: the current file is rotated when it
// would pass MaxSize, and at most MaxFiles files (current included) kept.
type Logs struct {
	MaxSize  int64
	MaxFiles int
}

// DefaultRestart is the restart policy of a service that sets none.
func DefaultRestart() Restart {
	return Restart{
		Mode: DefaultRestartMode,
		Backoff: Backoff{
			Initial: DefaultBackoffInitial, Max: DefaultBackoffMax, Multiplier: DefaultBackoffMultiplier,
			Jitter: DefaultBackoffJitter, ResetAfter: DefaultBackoffResetAfter,
		},
		CrashLoop: CrashLoop{Failures: DefaultCrashLoopFailures, Window: DefaultCrashLoopWindow},
	}
}

// DefaultStop is the stop policy of a service that sets none.
func DefaultStop() Stop { return Stop{Signal: DefaultStopSignal, Timeout: DefaultStopTimeout} }

// DefaultLogs is the log policy of a service that sets none.
func DefaultLogs() Logs { return Logs{MaxSize: DefaultLogMaxSize, MaxFiles: DefaultLogMaxFiles} }

// Unit is one service as the daemon runs it: its sandbox and the policies
// that supervise it.
type Unit struct {
	Service   Service
	Restart   Restart
	Stop      Stop
	Logs      Logs
	DependsOn []Dependency
}

// Dependency conditions.
const (
	// DependStarted: the dependency's sandbox is running.
	DependStarted = "started"
	// DependHealthy: the dependency passed its health check.
	DependHealthy = "healthy"
)

// Dependency is one entry of depends_on.
type Dependency struct {
	Name      string
	Condition string
}

// Config is a whole service file: the daemon's settings and the units, in
// file order.
type Config struct {
	// Path is the file the configuration was read from.
	Path string
	// CgroupParent is where every service's cgroup is made.
	CgroupParent string
	// LogDir holds one directory of log files per service.
	LogDir string
	Units  []*Unit
}

// Unit returns the unit named name, or nil.
func (c *Config) Unit(name string) *Unit {
	for _, u := range c.Units {
		if u.Service.Name == name {
			return u
		}
	}
	return nil
}
