package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

// corralDaemon is a `corral daemon` the bench started on a service file
// of its own, with a state dir of its own under the scratch dir.
type corralDaemon struct {
	*child
	stateDir string
	socket   string
	client   *api.Client
}

// startDaemon starts `corral --state-dir stateDir daemon --config config`,
// its output going to logPath.
func startDaemon(cs *children, corral, stateDir, config, logPath string) (*corralDaemon, error) {
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("make daemon state dir: %w", err)
	}
	argv := []string{corral, "--state-dir", stateDir, "daemon", "--config", config}
	c, err := cs.start("corral daemon", argv, logPath)
	if err != nil {
		return nil, err
	}
	socket := filepath.Join(stateDir, "corral.sock")
	return &corralDaemon{child: c, stateDir: stateDir, socket: socket, client: api.NewClient(socket)}, nil
}

// waitReady waits until the daemon answers on its control socket.
func (d *corralDaemon) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if d.exited() {
			return fmt.Errorf("corral daemon exited at start: %v%s", d.exitErr, logTail(d.logPath))
		}
		if _, err := d.client.Version(ctx); err == nil {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("corral daemon not answering on %s after %s%s", d.socket, timeout, logTail(d.logPath))
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// receivedEvent is a daemon event and when the bench read it.
type receivedEvent struct {
	api.Event
	at time.Time
}

// eventStream is a subscription to the daemon's events. The daemon sends
// the response header once it has subscribed, and subscribe returns only
// then: no state change after subscribe returns is missed (unless the
// daemon drops events for a subscriber that lags 256 behind).
type eventStream struct {
	C      <-chan receivedEvent // closed when the stream ends
	cancel context.CancelFunc
}

// subscribe opens GET /v1/events itself rather than through api.Client,
// whose Events does not say when the subscription is in place.
func (d *corralDaemon) subscribe(ctx context.Context) (*eventStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dl net.Dialer
			return dl.DialContext(ctx, "unix", d.socket)
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
	ch := make(chan receivedEvent, 4096)
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
			case ch <- receivedEvent{Event: ev, at: time.Now()}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return &eventStream{C: ch, cancel: cancel}, nil
}

func (s *eventStream) close() { s.cancel() }

// stopAndCheck stops the daemon with SIGTERM and returns the time it took
// to exit. Then the daemon must have left nothing behind: no cgroup under
// cgroupParent in any hierarchy, no sandbox record in its state dir.
func (d *corralDaemon) stopAndCheck(cgroupParent string) (time.Duration, error) {
	took, err := d.stop()
	if err != nil {
		return took, err
	}
	var left []string
	left = append(left, existingCgroups(cgroupParent)...)
	if recs, _ := os.ReadDir(filepath.Join(d.stateDir, "sandboxes")); len(recs) > 0 {
		for _, r := range recs {
			left = append(left, filepath.Join(d.stateDir, "sandboxes", r.Name()))
		}
	}
	if len(left) > 0 {
		return took, fmt.Errorf("corral daemon exited 0 but left %s", strings.Join(left, ", "))
	}
	return took, nil
}

// yamlString quotes s for a YAML file: a JSON string is a YAML
// double-quoted scalar.
func yamlString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func yamlList(items ...string) string {
	q := make([]string, len(items))
	for i, s := range items {
		q[i] = yamlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// errIfExited reports a daemon that ended during a measurement.
func (d *corralDaemon) errIfExited() error {
	if d.exited() {
		return errors.New("corral daemon exited during the measurement: " + fmt.Sprint(d.exitErr) + logTail(d.logPath))
	}
	return nil
}
