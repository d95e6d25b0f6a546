// Package alert is corral's alert dispatcher. The daemon reports every
// state change of a service to a Dispatcher (Observe); the dispatcher
// decides whether it is worth an alert, and delivers alerts to the
// service's sinks (a webhook, an exec hook) in the background.
//
// The rules, per service:
//
//   - A problem (Observation.Problem != "") sends an alert of that kind,
//     unless one of the same kind was sent within Settings.Cooldown; it
//     opens an incident.
//   - While an incident is open, the first fine observation starts a timer
//     of Settings.RecoverAfter (later fine observations keep it running).
//     When it fires with no problem in between, one AlertRecovered alert is
//     sent and the incident closes. A problem cancels the timer.
//   - Closing an incident forgets the cooldowns: the next problem is a new
//     incident and is alerted at once, so a "recovered" alert is never
//     the last word on a service that is failing again.
//   - Settings that are not Enabled send nothing and close any incident.
//
// Deliveries never hold up the caller: each sink has one worker and a
// bounded queue (spec.DefaultAlertQueueLength); an alert that does not fit
// is dropped and logged. One worker per sink keeps a sink's alerts in the
// order they were decided.
package alert

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/spec"
)

// PayloadVersion is the "corral" field of every alert: the version of the
// payload format.
const PayloadVersion = "v1"

// DefaultCloseWait is how long Close lets queued and in-flight deliveries
// finish before it cancels them.
const DefaultCloseWait = 2 * time.Second

// maxRetryDelay caps the exponential delay between two attempts.
const maxRetryDelay = time.Minute

// Alert is the JSON document a sink receives: the webhook's request body,
// the exec hook's stdin.
//
//	{"kind": "crashloop", "service": "web", "state": "crashloop",
//	 "reason": "5 exits in 60s", "time": "2025-01-02T15:04:05.123456789Z",
//	 "host": "box1", "exits": [{"time": ..., "code": 3, "reason": ..., "ran": 12000000}],
//	 "last_lines": ["..."], "corral": "v1"}
//
// Exits and LastLines are always arrays (possibly empty), oldest first.
// An exit's "ran" is in nanoseconds, as in the control API (api.Exit).
type Alert struct {
	// Kind is one of spec.AlertFailed, AlertCrashLoop, AlertOOM,
	// AlertUnhealthy or AlertRecovered.
	Kind    string `json:"kind"`
	Service string `json:"service"`
	// State is the supervisor's state when the alert was decided.
	State string `json:"state"`
	// Reason says in words what happened.
	Reason string `json:"reason"`
	// Time is when it happened (RFC 3339 with nanoseconds); for a
	// recovery, when the service had been fine for RecoverAfter.
	Time time.Time `json:"time"`
	// Host is the name of the machine the daemon runs on.
	Host string `json:"host"`
	// Exits are the service's most recent exits (at most
	// spec.DefaultAlertExitsIncluded), newest last.
	Exits []api.Exit `json:"exits"`
	// LastLines are the last lines the service printed (at most
	// spec.DefaultAlertLinesIncluded).
	LastLines []string `json:"last_lines"`
	// Corral is PayloadVersion.
	Corral string `json:"corral"`
}

// Observation is what the daemon reports of a service after a change.
type Observation struct {
	Service string
	// Settings are the service's effective alert settings.
	Settings spec.Alerts
	// Problem is "" when the service is fine now (running, and healthy if
	// checked); else the alert kind: spec.AlertFailed, AlertCrashLoop,
	// AlertOOM or AlertUnhealthy.
	Problem string
	// State is the supervisor's state, e.g. "running", "crashloop".
	State string
	// Reason says in words what happened.
	Reason string
	// Time is when the change happened (zero: now). Cooldowns are measured
	// between these times.
	Time time.Time
	// Exits are the most recent exits, newest last. Only the last
	// spec.DefaultAlertExitsIncluded are sent.
	Exits []api.Exit
	// LastLines are the last lines the service printed. Only the last
	// spec.DefaultAlertLinesIncluded are sent.
	LastLines []string
}

// Counts are the dispatcher's running totals. Sent, Failed and Dropped
// count deliveries (one per sink of an alert); Suppressed counts alerts.
type Counts struct {
	Sent       uint64 // delivered
	Failed     uint64 // given up after every attempt failed
	Suppressed uint64 // held back by the cooldown
	Dropped    uint64 // discarded: the sink's queue was full, or Close cut it short
}

// Dispatcher decides and delivers alerts. Its methods are safe for
// concurrent use. The exported fields tune it for tests; set them before
// the first Observe.
type Dispatcher struct {
	// RetryBaseDelay is the delay before the first retry of a failed
	// delivery; each further retry waits twice as long (at most a minute).
	RetryBaseDelay time.Duration
	// CloseWait bounds how long Close waits for deliveries to finish.
	CloseWait time.Duration

	log      logrus.FieldLogger
	host     string
	client   *webhookClient
	ctx      context.Context // cancelled by Close: aborts deliveries
	cancel   context.CancelFunc
	workers  sync.WaitGroup
	queueLen int

	mu       sync.Mutex
	closed   bool
	services map[string]*incident
	sinks    map[string]*sink // sinks with a running worker, by target key
	counts   Counts
}

// incident is what the dispatcher remembers of one service.
type incident struct {
	open bool
	// lastSent is when an alert of each kind was last sent.
	lastSent map[string]time.Time
	// recovery is the pending recovery timer (nil: none); gen tells a
	// timer that fired after it was stopped from the current one.
	recovery *time.Timer
	gen      uint64
	// fine is the observation that started the recovery timer, with the
	// latest settings.
	fine Observation
}

// New returns a dispatcher that logs to log and names the machine
// hostname in its alerts. Close it when done.
func New(log logrus.FieldLogger, hostname string) *Dispatcher {
	ctx, cancel := context.WithCancel(context.Background())
	return &Dispatcher{
		RetryBaseDelay: spec.DefaultAlertRetryBaseDelay,
		CloseWait:      DefaultCloseWait,
		log:            log,
		host:           hostname,
		client:         newWebhookClient(),
		ctx:            ctx,
		cancel:         cancel,
		queueLen:       spec.DefaultAlertQueueLength,
		services:       map[string]*incident{},
		sinks:          map[string]*sink{},
	}
}

// Observe takes one change of a service. It never blocks on a sink: at
// most it queues deliveries. After Close it does nothing.
func (d *Dispatcher) Observe(o Observation) {
	if o.Time.IsZero() {
		o.Time = time.Now()
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return
	}
	if !o.Settings.Enabled() {
		d.forget(o.Service)
		return
	}
	inc := d.services[o.Service]
	if o.Problem == "" {
		if inc == nil || !inc.open {
			return
		}
		if inc.recovery == nil {
			inc.gen++
			gen := inc.gen
			inc.recovery = time.AfterFunc(max(o.Settings.RecoverAfter, 0), func() { d.recovered(o.Service, gen) })
			inc.fine = o
		}
		inc.fine.Settings = o.Settings // a reload may change where the recovery goes
		return
	}
	if inc == nil {
		inc = &incident{lastSent: map[string]time.Time{}}
		d.services[o.Service] = inc
	}
	inc.open = true
	inc.stopRecovery()
	if last, ok := inc.lastSent[o.Problem]; ok && o.Time.Sub(last) < o.Settings.Cooldown {
		d.counts.Suppressed++
		d.log.WithFields(logrus.Fields{"service": o.Service, "kind": o.Problem}).Debug("alert suppressed: cooldown")
		return
	}
	inc.lastSent[o.Problem] = o.Time
	d.dispatch(o, o.Problem, o.Time)
}

// recovered is the recovery timer of service firing.
func (d *Dispatcher) recovered(service string, gen uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	inc := d.services[service]
	if d.closed || inc == nil || inc.gen != gen || inc.recovery == nil {
		return // stopped after it fired
	}
	o := inc.fine
	inc.recovery, inc.fine = nil, Observation{}
	inc.open = false
	clear(inc.lastSent)
	d.dispatch(o, spec.AlertRecovered, time.Now())
}

// stopRecovery cancels a pending recovery.
func (inc *incident) stopRecovery() {
	if inc.recovery != nil {
		inc.recovery.Stop()
		inc.recovery, inc.fine = nil, Observation{}
	}
}

// Forget drops what the dispatcher remembers of service: its open
// incident, a pending recovery and the cooldowns. Call it when the
// service is removed, or stopped by the operator, so that no "recovered"
// alert follows.
func (d *Dispatcher) Forget(service string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.forget(service)
}

func (d *Dispatcher) forget(service string) {
	if inc := d.services[service]; inc != nil {
		inc.stopRecovery()
		delete(d.services, service)
	}
}

// dispatch builds the alert of kind about o and queues it for each of
// o's sinks. d.mu is held.
func (d *Dispatcher) dispatch(o Observation, kind string, at time.Time) {
	a := Alert{
		Kind: kind, Service: o.Service, State: o.State, Reason: o.Reason, Time: at, Host: d.host,
		Exits:     append([]api.Exit{}, lastN(o.Exits, spec.DefaultAlertExitsIncluded)...),
		LastLines: append([]string{}, lastN(o.LastLines, spec.DefaultAlertLinesIncluded)...),
		Corral:    PayloadVersion,
	}
	body, err := json.Marshal(a)
	if err != nil { // cannot happen with these types; never lose an alert silently
		d.log.WithError(err).WithFields(logrus.Fields{"service": o.Service, "kind": kind}).Error("encode alert")
		return
	}
	for _, t := range targets(o.Settings) {
		d.enqueue(delivery{target: t, alert: a, body: body, settings: o.Settings})
	}
}

// lastN returns the last n elements of s.
func lastN[T any](s []T, n int) []T {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// Counts returns the running totals.
func (d *Dispatcher) Counts() Counts {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts
}

// Close stops the recovery timers and takes no more observations. It
// lets queued and in-flight deliveries finish for up to CloseWait, then
// cancels them (killing exec hooks) and returns soon after; what is left
// in the queues is dropped. Pending recoveries are not sent.
func (d *Dispatcher) Close() {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return
	}
	d.closed = true
	for _, inc := range d.services {
		inc.stopRecovery()
	}
	d.mu.Unlock()

	done := make(chan struct{})
	go func() { d.workers.Wait(); close(done) }()
	timer := time.NewTimer(d.CloseWait)
	defer timer.Stop()
	select {
	case <-done:
	case <-timer.C:
		d.cancel()
		// Cancelled deliveries end promptly (an exec hook's output is
		// waited for at most hookWaitDelay); do not hang on one that does not.
		timer.Reset(hookWaitDelay + time.Second)
		select {
		case <-done:
		case <-timer.C:
			d.log.Warn("alert deliveries still running after close")
		}
	}
	d.cancel()
	d.client.closeIdle()
}
