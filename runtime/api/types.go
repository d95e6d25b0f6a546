// Package api is corral's control protocol: JSON over HTTP on a unix
// socket that only root can reach. Paths are versioned (/v1/...). The
// daemon implements Backend; the CLI uses Client.
package api

import (
	"context"
	"errors"
	"io"
	"time"
)

// Version is the protocol version, the first element of every path.
const Version = "v1"

// Error classes. Every error the API returns carries one, so the CLI can
// branch on it (errors.Is) instead of parsing text.
var (
	ErrNotFound    = errors.New("not found")
	ErrInvalid     = errors.New("invalid")
	ErrConflict    = errors.New("conflict")
	ErrUnavailable = errors.New("unavailable")
	// ErrForbidden: the caller may not use the daemon (only root and the
	// daemon's own user may).
	ErrForbidden = errors.New("forbidden")
)

// Exit is one recorded end of a service's sandbox.
type Exit struct {
	Time     time.Time `json:"time"`
	Code     int       `json:"code"`             // exit status, or 128+signal
	Signal   int       `json:"signal,omitempty"` // the killing signal, if any
	OOMKills uint64    `json:"oom_kills,omitempty"`
	// PidsLimitHits counts forks refused by the pids limit.
	PidsLimitHits uint64 `json:"pids_limit_hits,omitempty"`
	// Reason says in words how it ended ("exited with code 3", "killed by
	// the kernel OOM killer (memory limit 64MiB)", "stopped by operator").
	Reason string `json:"reason"`
	// Ran is how long the sandbox had been running.
	Ran time.Duration `json:"ran"`
	// Kind classes the end: one of the Exit* constants.
	Kind string `json:"kind"`
	// LastLines are the last lines the service printed before it ended.
	LastLines []string `json:"last_lines,omitempty"`
}

// Kinds of Exit, most telling first: when several apply (an OOM kill
// during an operator's stop), the first in this list is the one given.
const (
	ExitStartFailed = "start_failed" // the sandbox or its command could not be started
	ExitUnhealthy   = "unhealthy"    // stopped for failing its health check
	ExitStopTimeout = "stop_timeout" // killed because it outlived the stop timeout
	ExitOperator    = "operator"     // stopped or restarted by the operator (or a reload)
	ExitOOM         = "oom"          // the kernel OOM killer killed in the sandbox
	ExitPidsLimit   = "pids_limit"   // forks were refused by the pids limit
	ExitSignal      = "signal"       // killed by a signal
	ExitCode        = "exit"         // exited on its own, with Code
)

// Service is one service's current state, as `corral ps` shows it.
type Service struct {
	Name string `json:"name"`
	// State is the supervisor's word: starting, running, backoff,
	// crashloop, stopping, stopped, failed.
	State string `json:"state"`
	// Desired is what the operator wants: "up" or "down".
	Desired   string    `json:"desired"`
	PID       int       `json:"pid,omitempty"`
	StartedAt time.Time `json:"started_at,omitempty"`
	Restarts  int       `json:"restarts"`
	// Message explains the state: the failure reason, the crash loop,
	// the time of the next attempt.
	Message     string        `json:"message,omitempty"`
	NextAttempt time.Time     `json:"next_attempt,omitempty"`
	LastExit    *Exit         `json:"last_exit,omitempty"`
	MemoryUsage uint64        `json:"memory_usage"`
	MemoryLimit uint64        `json:"memory_limit"` // 0: none
	CPUUsage    time.Duration `json:"cpu_usage"`
	PidsCurrent uint64        `json:"pids_current"`
	PidsLimit   uint64        `json:"pids_limit"`
	// CPUThrottled is the CPU time the CPU quota held back.
	CPUThrottled time.Duration `json:"cpu_throttled"`
	// LogLinesLost counts output lines the sandbox could not write to its
	// log (a full disk) since it started; LogError says why while writing
	// still fails ("" once it works again).
	LogLinesLost uint64 `json:"log_lines_lost,omitempty"`
	LogError     string `json:"log_error,omitempty"`
	// Health is the health check's verdict: starting, healthy or
	// unhealthy ("" without a check); HealthDetail the last check's words.
	Health       string `json:"health,omitempty"`
	HealthDetail string `json:"health_detail,omitempty"`
	// NotifyStatus is the service's last STATUS= over sd_notify.
	NotifyStatus string `json:"notify_status,omitempty"`
	// Restarts by the kind of exit that led to them, and the OOM kills
	// seen in all of this daemon's sandboxes of the service.
	RestartsByKind map[string]uint64 `json:"restarts_by_kind,omitempty"`
	OOMKillsTotal  uint64            `json:"oom_kills_total,omitempty"`
}

// ServiceDetail is `corral status NAME`: the state plus history.
type ServiceDetail struct {
	Service
	Command []string `json:"command"`
	// Image is the image the sandbox runs, as REF@DIGEST ("" for none).
	Image   string `json:"image,omitempty"`
	Cgroup  string `json:"cgroup"`
	LogFile string `json:"log_file"`
	// Exits are the most recent ends of the service's sandbox, newest last.
	Exits []Exit `json:"exits"`
	// Loosened names the loosenings of the hardened sandbox the service
	// asks for by name, as the service file spells their keys
	// (unsafe_host_mounts).
	Loosened []string `json:"loosened,omitempty"`
	// Network is the sandbox's network (none, host, bridge). On the
	// bridge: Address is the running sandbox's, Publish its published
	// ports; with EgressRestricted it reaches only Egress (and its
	// resolver), else everything.
	Network          string   `json:"network,omitempty"`
	Address          string   `json:"address,omitempty"`
	Publish          []string `json:"publish,omitempty"`
	EgressRestricted bool     `json:"egress_restricted,omitempty"`
	Egress           []string `json:"egress,omitempty"`
}

// Event is one state change of a service.
type Event struct {
	Time    time.Time `json:"time"`
	Service string    `json:"service"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Reason  string    `json:"reason,omitempty"`
	PID     int       `json:"pid,omitempty"`
	Exit    *Exit     `json:"exit,omitempty"`
	// Health is set on a change of the health check's verdict (healthy,
	// unhealthy); From and To are then the unchanged state.
	Health string `json:"health,omitempty"`
}

// Plan is what a reload does (or, with dry-run, would do).
type Plan struct {
	Add       []string `json:"add,omitempty"`
	Remove    []string `json:"remove,omitempty"`
	Restart   []string `json:"restart,omitempty"`
	Update    []string `json:"update,omitempty"` // limits changed in place
	Unchanged []string `json:"unchanged,omitempty"`
	// Why says, by service, why one whose file entry is unchanged is
	// restarted (its image's tag moved).
	Why map[string]string `json:"why,omitempty"`
}

// LogsRequest selects log lines.
type LogsRequest struct {
	Name   string
	Tail   int  // last N lines; <0: all
	Follow bool // keep streaming new lines until the context ends
}

// NamesRequest is the body of start, stop and restart.
type NamesRequest struct {
	Names []string `json:"names"`
}

// VersionInfo is what GET /v1/version returns.
type VersionInfo struct {
	// Version is the daemon's build.
	Version string `json:"version"`
	// API is the protocol version the daemon speaks (Version).
	API string `json:"api"`
}

// Backend is what the server serves: the daemon implements it.
type Backend interface {
	List(ctx context.Context) ([]Service, error)
	Status(ctx context.Context, name string) (*ServiceDetail, error)
	Start(ctx context.Context, names []string) error
	Stop(ctx context.Context, names []string) error
	Restart(ctx context.Context, names []string) error
	// Reload re-reads the service file; with dryRun it only plans.
	Reload(ctx context.Context, dryRun bool) (*Plan, error)
	// Events streams state changes until ctx ends.
	Events(ctx context.Context) (<-chan Event, error)
	// Logs writes the selected log lines to w.
	Logs(ctx context.Context, req LogsRequest, w io.Writer) error
	// Audit scores the named services' sandboxes (every service when
	// none is named), as configured now.
	Audit(ctx context.Context, names []string) ([]AuditReport, error)
}

// AuditReport is a service's hardening, property by property, and its
// exposure score from 0 (locked down) to 10 (exposed).
type AuditReport struct {
	Service string       `json:"service"`
	Score   float64      `json:"score"`
	Checks  []AuditCheck `json:"checks"`
}

// AuditCheck is one property: what the service has, the verdict (ok,
// partial, exposed), its weight in the score and the exposure (0 to 1).
type AuditCheck struct {
	Name     string  `json:"name"`
	Setting  string  `json:"setting"`
	Verdict  string  `json:"verdict"`
	Weight   float64 `json:"weight"`
	Exposure float64 `json:"exposure"`
}
