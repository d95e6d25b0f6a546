package spec

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
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
	// MinLogMaxSize is the smallest logs.max_size: below it a service
	// would rotate its log on nearly every line.
	MinLogMaxSize int64 = 4 << 10
	// DefaultDependCondition is the condition of a depends_on entry that
	// names none.
	DefaultDependCondition = DependStarted
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

// ParseRestartPolicy reads a restart policy as the service file spells it:
// "no", "on-failure", "on-failure:N" (N ≥ 1 consecutive failed restarts,
// then the service is left failed), "always" or "unless-stopped".
func ParseRestartPolicy(s string) (mode string, maxRetries int, err error) {
	bad := fmt.Errorf("invalid restart policy %q: use %s, %s, %s:N (N ≥ 1), %s or %s",
		s, RestartNo, RestartOnFailure, RestartOnFailure, RestartAlways, RestartUnlessStopped)
	mode, count, hasCount := strings.Cut(s, ":")
	switch mode {
	case RestartNo, RestartAlways, RestartUnlessStopped:
		if hasCount {
			return "", 0, bad
		}
		return mode, 0, nil
	case RestartOnFailure:
		if !hasCount {
			return mode, 0, nil
		}
		// ParseUint, not Atoi: "+3" and "-0" are not how anyone writes N.
		n, err := strconv.ParseUint(count, 10, 31)
		if err != nil || n < 1 {
			return "", 0, bad
		}
		return mode, int(n), nil
	}
	return "", 0, bad
}

// maxSignal is the highest signal number on Linux (SIGRTMAX).
const maxSignal = 64

// ParseSignal reads a signal by name or number: "SIGTERM", "TERM",
// "sigterm" and "15" are the same signal.
func ParseSignal(s string) (syscall.Signal, error) {
	t := strings.TrimSpace(s)
	if n, err := strconv.Atoi(t); err == nil {
		if n < 1 || n > maxSignal {
			return 0, fmt.Errorf("invalid signal %d: use a name such as SIGTERM or a number from 1 to %d", n, maxSignal)
		}
		return syscall.Signal(n), nil
	}
	name := strings.ToUpper(t)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, fmt.Errorf("unknown signal %q: use a name such as SIGTERM, SIGINT, SIGQUIT, SIGHUP or a number", s)
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
	// Health is the service's health check (nil: none).
	Health *Health
	// Alerts are the daemon's, with the service's overrides.
	Alerts Alerts
}

// Readiness says whether the service reports being ready (a health check
// or notify): it shows starting until then, and dependents waiting for
// condition healthy wait for that.
func (u *Unit) Readiness() bool { return u.Health != nil || u.Service.Notify }

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
	// Metrics is the Prometheus endpoint (off unless Listen is set).
	Metrics Metrics
	// Alerts are the daemon-wide alert settings.
	Alerts Alerts
	// Bridge is the bridge network of services with network: bridge.
	Bridge Bridge
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
