package alert

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/spec"
)

// hookWaitDelay is how long an exec hook's output is waited for after the
// hook has ended or been killed (a child of it may hold the pipe open).
const hookWaitDelay = time.Second

// maxErrorOutput bounds how much of a failed sink's answer (a webhook's
// response body, an exec hook's output) goes into the error.
const maxErrorOutput = 512

// target is one place alerts go: a webhook URL or an exec hook.
type target struct {
	webhook string
	exec    []string
}

// targets are the sinks of settings.
func targets(s spec.Alerts) []target {
	var ts []target
	if s.WebhookURL != "" {
		ts = append(ts, target{webhook: s.WebhookURL})
	}
	if len(s.Exec) > 0 {
		ts = append(ts, target{exec: s.Exec})
	}
	return ts
}

// key identifies the target's worker.
func (t target) key() string {
	if t.webhook != "" {
		return "webhook\x00" + t.webhook
	}
	return "exec\x00" + strings.Join(t.exec, "\x00")
}

// String names the target in logs. A webhook URL often carries a secret
// in its path or query, so only its scheme and host are shown.
func (t target) String() string {
	if t.webhook != "" {
		if u, err := url.Parse(t.webhook); err == nil {
			return "webhook " + u.Scheme + "://" + u.Host
		}
		return "webhook"
	}
	return "exec " + t.exec[0]
}

// delivery is one alert for one sink.
type delivery struct {
	target   target
	alert    Alert
	body     []byte
	settings spec.Alerts
}

func (j delivery) fields() logrus.Fields {
	return logrus.Fields{"service": j.alert.Service, "kind": j.alert.Kind, "sink": j.target.String()}
}

// sink is the queue of one target, drained by one worker goroutine that
// runs while the queue is not empty.
type sink struct {
	key   string
	queue []delivery
}

// enqueue queues j for its sink, starting the sink's worker if it has
// none. d.mu is held, and d is not closed.
func (d *Dispatcher) enqueue(j delivery) {
	key := j.target.key()
	s := d.sinks[key]
	if s == nil {
		s = &sink{key: key}
		d.sinks[key] = s
		d.workers.Add(1)
		go d.work(s)
	}
	if len(s.queue) >= d.queueLen {
		d.counts.Dropped++
		d.log.WithFields(j.fields()).Error("alert dropped: the sink's queue is full")
		return
	}
	s.queue = append(s.queue, j)
}

// work delivers s's queue in order, and ends (removing s) when it is empty.
func (d *Dispatcher) work(s *sink) {
	defer d.workers.Done()
	for {
		d.mu.Lock()
		if len(s.queue) == 0 || d.ctx.Err() != nil {
			if n := len(s.queue); n > 0 {
				d.counts.Dropped += uint64(n)
				d.log.WithField("sink", s.queue[0].target.String()).WithField("alerts", n).Error("alerts dropped: closing")
			}
			delete(d.sinks, s.key)
			d.mu.Unlock()
			return
		}
		j := s.queue[0]
		s.queue[0] = delivery{}
		s.queue = s.queue[1:]
		d.mu.Unlock()
		d.deliver(j)
	}
}

// deliver sends j, retrying up to j.settings.Retries times with an
// exponential delay, and counts and logs the outcome.
func (d *Dispatcher) deliver(j delivery) {
	var err error
	attempts := 0
	for {
		attempts++
		if err = d.attempt(j); err == nil {
			d.log.WithFields(j.fields()).WithField("attempts", attempts).Info("alert sent")
			d.count(&d.counts.Sent)
			return
		}
		if attempts > j.settings.Retries || d.ctx.Err() != nil {
			break
		}
		delay := retryDelay(d.RetryBaseDelay, attempts)
		d.log.WithFields(j.fields()).WithError(err).WithField("retry_in", delay).Debug("alert delivery failed")
		t := time.NewTimer(delay)
		select {
		case <-t.C:
			continue
		case <-d.ctx.Done(): // closing: give up now
			t.Stop()
		}
		break
	}
	d.log.WithFields(j.fields()).WithError(err).WithField("attempts", attempts).Error("alert not delivered: giving up")
	d.count(&d.counts.Failed)
}

// count adds one to a counter of d.counts (after the outcome is logged, so
// that what Counts shows is in the log).
func (d *Dispatcher) count(c *uint64) {
	d.mu.Lock()
	*c++
	d.mu.Unlock()
}

// retryDelay is the delay after the given failed attempt (1, 2, ...):
// base, 2×base, 4×base..., at most maxRetryDelay.
func retryDelay(base time.Duration, attempt int) time.Duration {
	delay := base
	for i := 1; i < attempt && delay < maxRetryDelay; i++ {
		delay *= 2
	}
	return min(delay, maxRetryDelay)
}

// attempt makes one try at delivering j, bounded by its timeout.
func (d *Dispatcher) attempt(j delivery) error {
	timeout := j.settings.Timeout
	if timeout <= 0 {
		timeout = spec.DefaultAlertTimeout
	}
	ctx, cancel := context.WithTimeout(d.ctx, timeout)
	defer cancel()
	if j.target.webhook != "" {
		return d.client.post(ctx, j.target.webhook, j.body)
	}
	return runHook(ctx, j.target.exec, j.alert, j.body)
}

// webhookClient posts alerts. It has a transport of its own, so that
// Close can drop its idle connections.
type webhookClient struct {
	http *http.Client
}

func newWebhookClient() *webhookClient {
	return &webhookClient{http: &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}}
}

// post sends body to rawURL; a 2xx answer is success.
func (c *webhookClient) post(ctx context.Context, rawURL string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("post webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "corral-alert/"+PayloadVersion)
	resp, err := c.http.Do(req)
	if err != nil {
		// A *url.Error repeats the whole URL, which may hold a secret.
		if ue := (*url.Error)(nil); errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("post webhook: %w", err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorOutput))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // let the connection be reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("post webhook: status %s: %q", resp.Status, bytes.TrimSpace(answer))
	}
	return nil
}

func (c *webhookClient) closeIdle() { c.http.CloseIdleConnections() }

// runHook runs argv (no shell) with body on its stdin, as one line
// (NDJSON: a hook that appends its stdin to a file keeps one alert per
// line), and CORRAL_ALERT_KIND and CORRAL_ALERT_SERVICE in its
// environment; exit status 0 is success. When ctx ends, the hook's process
// group is killed.
func runHook(ctx context.Context, argv []string, a Alert, body []byte) error {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Stdin = io.MultiReader(bytes.NewReader(body), strings.NewReader("\n"))
	cmd.Env = append(os.Environ(), "CORRAL_ALERT_KIND="+a.Kind, "CORRAL_ALERT_SERVICE="+a.Service)
	out := &capped{max: maxErrorOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = hookWaitDelay
	killGroup(cmd)
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", err, context.Cause(ctx))
		}
		if o := bytes.TrimSpace(out.buf); len(o) > 0 {
			return fmt.Errorf("run hook %s: %w: %q", argv[0], err, o)
		}
		return fmt.Errorf("run hook %s: %w", argv[0], err)
	}
	return nil
}

// capped keeps the first max bytes written to it and discards the rest.
type capped struct {
	buf []byte
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}
