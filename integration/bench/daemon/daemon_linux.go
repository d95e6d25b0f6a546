// Package daemon starts and drives a `corral daemon` for the bench, on a
// service file and a state dir of the bench's own: its control socket,
// its event stream, and a stop that checks nothing was left behind.
package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/child"
	"github.com/corral-dev/corral/runtime/api"
)

// Daemon is a `corral daemon` the bench started.
type Daemon struct {
	*child.Proc
	StateDir string
	Socket   string
	Client   *api.Client
}

// Start starts `corral --state-dir stateDir [global...] daemon --config
// config`, its output going to logPath; global are more of corral's global
// flags (--data-dir DIR).
func Start(g *child.Group, corral, stateDir, config, logPath string, global ...string) (*Daemon, error) {
	return StartWrapped(g, nil, corral, stateDir, config, logPath, global...)
}

// StartWrapped is Start with the daemon's command line after wrapper, a
// command that execs the rest of its arguments (nsenter --net=FILE --),
// so that the daemon's PID is the wrapper's.
func StartWrapped(g *child.Group, wrapper []string, corral, stateDir, config, logPath string, global ...string) (*Daemon, error) {
	argv := append(append(slices.Clone(wrapper), corral, "--state-dir", stateDir), global...)
	argv = append(argv, "daemon", "--config", config)
	p, err := g.Start("corral daemon", argv, logPath)
	if err != nil {
		return nil, err
	}
	socket := filepath.Join(stateDir, "corral.sock")
	return &Daemon{Proc: p, StateDir: stateDir, Socket: socket, Client: api.NewClient(socket)}, nil
}

// WaitReady waits until the daemon answers on its control socket.
func (d *Daemon) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := d.ErrIfExited(); err != nil {
			return fmt.Errorf("wait for the daemon to answer: %w", err)
		}
		if _, err := d.Client.Version(ctx); err == nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("corral daemon not answering on %s after %s%s", d.Socket, timeout, d.LogTail())
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// WaitRunning waits until the daemon lists n services, every one running.
// A service that failed for good ends the wait.
func (d *Daemon) WaitRunning(ctx context.Context, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if err := d.ErrIfExited(); err != nil {
			return err
		}
		list, err := d.Client.List(ctx)
		if err != nil {
			return fmt.Errorf("wait for %d services running: %w", n, err)
		}
		running := 0
		for _, s := range list {
			switch s.State {
			case "running":
				running++
			case "failed":
				return fmt.Errorf("service %s failed: %s%s", s.Name, s.Message, d.LogTail())
			}
		}
		if running == n && len(list) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %d of %d services running%s", timeout, running, n, d.LogTail())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ErrIfExited reports a daemon that has ended, with its log's tail.
func (d *Daemon) ErrIfExited() error {
	if err := d.ExitedErr(); err != nil {
		return fmt.Errorf("%w%s", err, d.LogTail())
	}
	return nil
}

// Event is a daemon event and when the bench read it.
type Event struct {
	api.Event
	At time.Time
}

// Stream is a subscription to the daemon's events. The daemon sends the
// response header once it has subscribed, and Subscribe returns only
// then: no state change after Subscribe returns is missed (unless the
// daemon drops events for a subscriber that lags 256 behind).
type Stream struct {
	C      <-chan Event // closed when the stream ends
	cancel context.CancelFunc
}

// Subscribe opens GET /v1/events itself rather than through api.Client,
// whose Events does not say when the subscription is in place.
func (d *Daemon) Subscribe(ctx context.Context) (*Stream, error) {
	ctx, cancel := context.WithCancel(ctx)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.Socket)
		},
		DisableCompression: true,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://corral/"+api.Version+"/events", nil)
	if err != nil {
		cancel()
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("subscribe to the daemon's events: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("subscribe to the daemon's events: %s", resp.Status)
	}
	ch := make(chan Event, 4096)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		dec := json.NewDecoder(resp.Body)
		for {
			var ev api.Event
			if err := dec.Decode(&ev); err != nil {
				return
			}
			select {
			case ch <- Event{Event: ev, At: time.Now()}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return &Stream{C: ch, cancel: cancel}, nil
}

// Close ends the subscription; C is closed soon after.
func (s *Stream) Close() { s.cancel() }

// Drain ends the subscription and returns the events not read yet.
func (s *Stream) Drain() []Event {
	s.Close()
	var out []Event
	for ev := range s.C {
		out = append(out, ev)
	}
	return out
}

// StopAndCheck stops the daemon with SIGTERM and returns the time it took
// to exit. Then the daemon must have left nothing behind: no cgroup at
// cgroupParent (its service file's) in any hierarchy, no sandbox record
// in its state dir.
func (d *Daemon) StopAndCheck(cgroupParent string) (time.Duration, error) {
	took, err := d.Stop()
	if err != nil {
		return took, err
	}
	left := cgroupfs.Existing(cgroupParent)
	recs, _ := os.ReadDir(filepath.Join(d.StateDir, "sandboxes"))
	for _, r := range recs {
		left = append(left, filepath.Join(d.StateDir, "sandboxes", r.Name()))
	}
	if len(left) > 0 {
		return took, errors.New("corral daemon exited 0 but left " + strings.Join(left, ", "))
	}
	return took, nil
}

// YAMLString quotes s for a service file: a JSON string is a YAML
// double-quoted scalar.
func YAMLString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// YAMLList is items as a YAML flow sequence of quoted strings.
func YAMLList(items ...string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = YAMLString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
