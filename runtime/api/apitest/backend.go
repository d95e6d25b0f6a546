// Package apitest provides an in-memory api.Backend and a server on a
// temporary socket, for tests of the API and of its clients (the CLI).
package apitest

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/corral-dev/corral/runtime/api"
)

// Backend is an api.Backend held in memory. It keeps its services in the
// order given, and start, stop and restart change their state the way the
// daemon would, without running anything. It records every call, fails
// the methods it is told to, streams the events a test publishes and the
// log lines a test appends. It is safe for concurrent use.
type Backend struct {
	mu       sync.Mutex
	services []*api.ServiceDetail
	plan     api.Plan
	fail     map[string]error
	calls    []Call
	subs     []*subscriber
	logs     map[string][]string
	changed  chan struct{} // closed, and replaced, on every change of subs or logs
}

// Call is one call a Backend received: its method and argument (the
// names, the name, dryRun or the LogsRequest; nil for List and Events).
type Call struct {
	Method string
	Arg    any
}

type subscriber struct {
	ctx context.Context
	ch  chan api.Event
}

// NewBackend returns a Backend holding services, in that order.
func NewBackend(services ...api.ServiceDetail) *Backend {
	b := &Backend{fail: map[string]error{}, logs: map[string][]string{}, changed: make(chan struct{})}
	for _, s := range services {
		b.services = append(b.services, &s)
	}
	return b
}

// Fail makes every later call of method ("List", "Status", "Start",
// "Stop", "Restart", "Reload", "Events", "Logs") return err; nil undoes it.
func (b *Backend) Fail(method string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail[method] = err
}

// SetPlan sets the plan Reload returns.
func (b *Backend) SetPlan(p api.Plan) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.plan = p
}

// Calls returns the calls received so far, in order.
func (b *Backend) Calls() []Call {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// Publish sends events to every open Events stream, in order: it returns
// once each stream has taken them or ended.
func (b *Backend) Publish(events ...api.Event) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, ev := range events {
		for _, s := range b.subs {
			select {
			case s.ch <- ev:
			case <-s.ctx.Done():
			}
		}
	}
}

// WaitSubscribers waits until exactly n Events streams are open.
func (b *Backend) WaitSubscribers(ctx context.Context, n int) error {
	for {
		b.mu.Lock()
		got, changed := len(b.subs), b.changed
		b.mu.Unlock()
		if got == n {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("wait for %d event streams (have %d): %w", n, got, ctx.Err())
		}
	}
}

// AppendLog adds lines (without their newline) to a service's log.
func (b *Backend) AppendLog(name string, lines ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.logs[name] = append(b.logs[name], lines...)
	b.notifyLocked()
}

func (b *Backend) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// begin records a call and returns the error the method is set to fail with.
func (b *Backend) begin(method string, arg any) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, Call{Method: method, Arg: arg})
	return b.fail[method]
}

func (b *Backend) lookupLocked(name string) (*api.ServiceDetail, error) {
	for _, s := range b.services {
		if s.Name == name {
			return s, nil
		}
	}
	return nil, fmt.Errorf("service %q %w", name, api.ErrNotFound)
}

// List returns the services' states.
func (b *Backend) List(ctx context.Context) ([]api.Service, error) {
	if err := b.begin("List", nil); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []api.Service
	for _, s := range b.services {
		out = append(out, s.Service)
	}
	return out, nil
}

// Status returns a copy of the named service.
func (b *Backend) Status(ctx context.Context, name string) (*api.ServiceDetail, error) {
	if err := b.begin("Status", name); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s, err := b.lookupLocked(name)
	if err != nil {
		return nil, err
	}
	d := *s
	return &d, nil
}

// Start marks the services wanted up and running.
func (b *Backend) Start(ctx context.Context, names []string) error {
	return b.each("Start", names, func(s *api.ServiceDetail) { s.Desired, s.State = "up", "running" })
}

// Stop marks the services wanted down and stopped.
func (b *Backend) Stop(ctx context.Context, names []string) error {
	return b.each("Stop", names, func(s *api.ServiceDetail) { s.Desired, s.State, s.PID = "down", "stopped", 0 })
}

// Restart marks the services wanted up and running, once more restarted.
func (b *Backend) Restart(ctx context.Context, names []string) error {
	return b.each("Restart", names, func(s *api.ServiceDetail) { s.Desired, s.State = "up", "running"; s.Restarts++ })
}

// each applies change to the named services, or to none if one is unknown.
func (b *Backend) each(method string, names []string, change func(*api.ServiceDetail)) error {
	if err := b.begin(method, slices.Clone(names)); err != nil {
		return err
	}
	if len(names) == 0 {
		return fmt.Errorf("%s: no service named: %w", strings.ToLower(method), api.ErrInvalid)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var ss []*api.ServiceDetail
	for _, n := range names {
		s, err := b.lookupLocked(n)
		if err != nil {
			return err
		}
		ss = append(ss, s)
	}
	for _, s := range ss {
		change(s)
	}
	return nil
}

// Reload returns the plan set with SetPlan.
func (b *Backend) Reload(ctx context.Context, dryRun bool) (*api.Plan, error) {
	if err := b.begin("Reload", dryRun); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.plan
	return &p, nil
}

// Events returns a stream of what Publish sends, until ctx ends.
func (b *Backend) Events(ctx context.Context) (<-chan api.Event, error) {
	if err := b.begin("Events", nil); err != nil {
		return nil, err
	}
	s := &subscriber{ctx: ctx, ch: make(chan api.Event)}
	b.mu.Lock()
	b.subs = append(b.subs, s)
	b.notifyLocked()
	b.mu.Unlock()
	context.AfterFunc(ctx, func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.subs = slices.DeleteFunc(b.subs, func(x *subscriber) bool { return x == s })
		close(s.ch)
		b.notifyLocked()
	})
	return s.ch, nil
}

// Logs writes the last req.Tail lines appended for the service (all if
// negative) and, with req.Follow, the lines appended later, until ctx
// ends.
func (b *Backend) Logs(ctx context.Context, req api.LogsRequest, w io.Writer) error {
	if err := b.begin("Logs", req); err != nil {
		return err
	}
	b.mu.Lock()
	_, err := b.lookupLocked(req.Name)
	lines, changed := b.logs[req.Name], b.changed
	b.mu.Unlock()
	if err != nil {
		return err
	}
	next := 0
	if req.Tail >= 0 && len(lines) > req.Tail {
		next = len(lines) - req.Tail
	}
	for {
		if next < len(lines) {
			if _, err := io.WriteString(w, strings.Join(lines[next:], "\n")+"\n"); err != nil {
				return err
			}
			next = len(lines)
		}
		if !req.Follow {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil
		}
		b.mu.Lock()
		lines, changed = b.logs[req.Name], b.changed
		b.mu.Unlock()
	}
}

// Audit reports a score of 0 for each named service that exists (every
// one without names), with no checks.
func (b *Backend) Audit(ctx context.Context, names []string) ([]api.AuditReport, error) {
	if err := b.begin("Audit", names); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []api.AuditReport
	if len(names) == 0 {
		for _, s := range b.services {
			out = append(out, api.AuditReport{Service: s.Name})
		}
		return out, nil
	}
	for _, n := range names {
		if _, err := b.lookupLocked(n); err != nil {
			return nil, err
		}
		out = append(out, api.AuditReport{Service: n})
	}
	return out, nil
}
