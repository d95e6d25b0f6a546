package alert

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/spec"
)

// webhook is a test sink: an HTTP server on 127.0.0.1 that records the
// alerts posted to it and answers with answer(n) for the n-th request.
type webhook struct {
	*httptest.Server
	mu       sync.Mutex
	alerts   []Alert
	raw      [][]byte
	headers  []http.Header
	requests int
	answer   func(n int) int
}

func newWebhook(t *testing.T) *webhook {
	t.Helper()
	w := &webhook{answer: func(int) int { return http.StatusNoContent }}
	w.Server = httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		var raw json.RawMessage
		err := json.NewDecoder(r.Body).Decode(&raw)
		w.mu.Lock()
		w.requests++
		status := w.answer(w.requests)
		if err == nil && status/100 == 2 {
			var a Alert
			if err := json.Unmarshal(raw, &a); err != nil {
				t.Errorf("webhook body: %v", err)
			}
			w.alerts = append(w.alerts, a)
			w.raw = append(w.raw, raw)
			w.headers = append(w.headers, r.Header.Clone())
		}
		w.mu.Unlock()
		rw.WriteHeader(status)
	}))
	t.Cleanup(w.Close)
	return w
}

// kinds are the kinds of the alerts received so far, "service/kind".
func (w *webhook) kinds() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var ks []string
	for _, a := range w.alerts {
		ks = append(ks, a.Service+"/"+a.Kind)
	}
	return ks
}

func (w *webhook) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.alerts)
}

// newDispatcher returns a dispatcher with fast retries, closed at the end
// of the test, and the hook that records its log.
func newDispatcher(t *testing.T) (*Dispatcher, *logtest.Hook) {
	t.Helper()
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	d := New(log, "testhost")
	d.RetryBaseDelay = time.Millisecond
	d.CloseWait = time.Second
	t.Cleanup(d.Close)
	return d, hook
}

// settings sends to url, with no retries, a long cooldown and a long
// RecoverAfter; tests shorten what they need.
func settings(url string) spec.Alerts {
	return spec.Alerts{WebhookURL: url, Timeout: 2 * time.Second, Cooldown: time.Hour, RecoverAfter: time.Hour}
}

// waitFor polls cond until it holds, failing the test after a deadline.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

var flushes int

// flush sends a problem of a service of its own through w and waits for
// it: every alert queued for w before it has been delivered by then.
func flush(t *testing.T, d *Dispatcher, w *webhook) {
	t.Helper()
	flushes++
	name := "flush-" + strconv.Itoa(flushes)
	d.Observe(Observation{Service: name, Settings: settings(w.URL), Problem: spec.AlertFailed})
	waitFor(t, name, func() bool { return slices.Contains(w.kinds(), name+"/"+spec.AlertFailed) })
}

// without returns ks without the flush alerts.
func without(ks []string) []string {
	return slices.DeleteFunc(ks, func(k string) bool { return strings.HasPrefix(k, "flush-") })
}

func problem(s spec.Alerts, kind string, at time.Time) Observation {
	return Observation{Service: "web", Settings: s, Problem: kind, State: kind, Reason: "it broke", Time: at}
}

func fine(s spec.Alerts, at time.Time) Observation {
	return Observation{Service: "web", Settings: s, State: "running", Reason: "started", Time: at}
}

// writeHook writes an executable shell script to a temporary directory.
func writeHook(t *testing.T, script string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hook")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestPayload(t *testing.T) {
	d, _ := newDispatcher(t)
	w := newWebhook(t)
	out := filepath.Join(t.TempDir(), "alerts")
	hook := writeHook(t, `{ cat; echo; } >> "$1"; echo "$CORRAL_ALERT_KIND $CORRAL_ALERT_SERVICE" >> "$1.env"`)
	s := settings(w.URL)
	s.Exec = []string{hook, out}

	at := time.Date(2025, 1, 2, 15, 4, 5, 123456789, time.UTC)
	var exits []api.Exit
	for i := range 7 {
		exits = append(exits, api.Exit{Time: at.Add(time.Duration(i) * time.Second), Code: i, Reason: fmt.Sprintf("exited with code %d", i), Ran: time.Second})
	}
	var lines []string
	for i := range 25 {
		lines = append(lines, fmt.Sprintf("line %d", i))
	}
	d.Observe(Observation{Service: "web", Settings: s, Problem: spec.AlertOOM, State: "backoff",
		Reason: "killed by the kernel OOM killer", Time: at, Exits: exits, LastLines: lines})

	waitFor(t, "the webhook", func() bool { return w.count() == 1 })
	waitFor(t, "the exec hook", func() bool { return d.Counts().Sent == 2 })

	fromHook, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	env, err := os.ReadFile(out + ".env")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(env)); got != "oom web" {
		t.Errorf("hook environment: got %q, want %q", got, "oom web")
	}
	if ct := w.headers[0].Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type: got %q", ct)
	}
	for sink, raw := range map[string][]byte{"webhook": w.raw[0], "exec": fromHook} {
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(raw, &doc); err != nil {
			t.Fatalf("%s: %v: %s", sink, err, raw)
		}
		want := map[string]string{
			"kind": `"oom"`, "service": `"web"`, "state": `"backoff"`, "reason": `"killed by the kernel OOM killer"`,
			"time": `"2025-01-02T15:04:05.123456789Z"`, "host": `"testhost"`, "corral": `"v1"`,
		}
		for k, v := range want {
			if string(doc[k]) != v {
				t.Errorf("%s: %s: got %s, want %s", sink, k, doc[k], v)
			}
		}
		var a Alert
		if err := json.Unmarshal(raw, &a); err != nil {
			t.Fatal(err)
		}
		if len(a.Exits) != spec.DefaultAlertExitsIncluded || a.Exits[len(a.Exits)-1].Code != 6 || a.Exits[len(a.Exits)-1].Ran != time.Second {
			t.Errorf("%s: exits: want the last %d, newest last; got %+v", sink, spec.DefaultAlertExitsIncluded, a.Exits)
		}
		if len(a.LastLines) != spec.DefaultAlertLinesIncluded || a.LastLines[0] != "line 5" || a.LastLines[19] != "line 24" {
			t.Errorf("%s: last_lines: want lines 5 to 24; got %q", sink, a.LastLines)
		}
	}

	// No exits or lines: empty arrays, not null.
	d.Observe(Observation{Service: "db", Settings: settings(w.URL), Problem: spec.AlertFailed})
	waitFor(t, "the second alert", func() bool { return w.count() == 2 })
	if raw := string(w.raw[1]); !strings.Contains(raw, `"exits":[]`) || !strings.Contains(raw, `"last_lines":[]`) {
		t.Errorf("want empty arrays: %s", raw)
	}
}

func TestCooldownFlapping(t *testing.T) {
	d, _ := newDispatcher(t)
	w := newWebhook(t)
	s := settings(w.URL)
	s.Cooldown = time.Minute
	t0 := time.Now()

	// Crash, run, crash, run, crash within the cooldown: one alert.
	for i := range 3 {
		d.Observe(problem(s, spec.AlertCrashLoop, t0.Add(time.Duration(2*i)*time.Second)))
		d.Observe(fine(s, t0.Add(time.Duration(2*i+1)*time.Second)))
	}
	flush(t, d, w)
	if got := without(w.kinds()); !slices.Equal(got, []string{"web/crashloop"}) {
		t.Errorf("within the cooldown: got %q, want one crashloop alert", got)
	}
	if c := d.Counts(); c.Suppressed != 2 {
		t.Errorf("suppressed: got %d, want 2", c.Suppressed)
	}

	// Once the cooldown has passed, the problem is alerted again.
	d.Observe(problem(s, spec.AlertCrashLoop, t0.Add(time.Minute+time.Second)))
	flush(t, d, w)
	if got := without(w.kinds()); !slices.Equal(got, []string{"web/crashloop", "web/crashloop"}) {
		t.Errorf("after the cooldown: got %q, want two crashloop alerts", got)
	}
}

func TestCooldownPerKind(t *testing.T) {
	d, _ := newDispatcher(t)
	w := newWebhook(t)
	s := settings(w.URL)
	t0 := time.Now()
	d.Observe(problem(s, spec.AlertCrashLoop, t0))
	d.Observe(problem(s, spec.AlertOOM, t0.Add(time.Second)))
	d.Observe(problem(s, spec.AlertCrashLoop, t0.Add(2*time.Second))) // suppressed
	d.Observe(Observation{Service: "db", Settings: s, Problem: spec.AlertCrashLoop, Time: t0.Add(3 * time.Second)})
	flush(t, d, w)
	want := []string{"web/crashloop", "web/oom", "db/crashloop"}
	if got := without(w.kinds()); !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if c := d.Counts(); c.Suppressed != 1 {
		t.Errorf("suppressed: got %d, want 1", c.Suppressed)
	}
}

func TestOneRecovery(t *testing.T) {
	d, _ := newDispatcher(t)
	w := newWebhook(t)
	s := settings(w.URL)
	s.RecoverAfter = 50 * time.Millisecond

	d.Observe(fine(s, time.Time{})) // no incident: nothing
	d.Observe(problem(s, spec.AlertUnhealthy, time.Time{}))
	// Fine for four times RecoverAfter, reported again and again.
	for end := time.Now().Add(4 * s.RecoverAfter); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		d.Observe(fine(s, time.Time{}))
	}
	waitFor(t, "the recovery", func() bool { return slices.Contains(w.kinds(), "web/recovered") })
	flush(t, d, w)
	if got, want := without(w.kinds()), []string{"web/unhealthy", "web/recovered"}; !slices.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
	w.mu.Lock()
	a := w.alerts[1]
	w.mu.Unlock()
	if a.State != "running" || a.Reason != "started" || a.Time.IsZero() {
		t.Errorf("recovery alert: %+v", a)
	}
}

func TestProblemCancelsRecovery(t *testing.T) {
	d, _ := newDispatcher(t)
	w := newWebhook(t)
	s := settings(w.URL)
	s.RecoverAfter = 400 * time.Millisecond

	d.Observe(problem(s, spec.AlertCrashLoop, time.Time{}))
	d.Observe(fine(s, time.Time{})) // starts a recovery timer...
	time.Sleep(s.RecoverAfter / 4)
	d.Observe(problem(s, spec.AlertCrashLoop, time.Time{})) // ...which this cancels
	restarted := time.Now()
	d.Observe(fine(s, time.Time{})) // a new timer

	waitFor(t, "the recovery", func() bool { return slices.Contains(w.kinds(), "web/recovered") })
	if took := time.Since(restarted); took < s.RecoverAfter {
		t.Errorf("recovered %v after the last problem, before RecoverAfter (%v): the first timer was not cancelled", took, s.RecoverAfter)
	}
	flush(t, d, w)
	if got, want := without(w.kinds()), []string{"web/crashloop", "web/recovered"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestProblemAfterRecoveryAlertsAgain(t *testing.T) {
	d, _ := newDispatcher(t)
	w := newWebhook(t)
	s := settings(w.URL) // an hour of cooldown
	s.RecoverAfter = 10 * time.Millisecond

	d.Observe(problem(s, spec.AlertCrashLoop, time.Time{}))
	d.Observe(fine(s, time.Time{}))
	waitFor(t, "the recovery", func() bool { return slices.Contains(w.kinds(), "web/recovered") })
	d.Observe(problem(s, spec.AlertCrashLoop, time.Time{}))
	flush(t, d, w)
	if got, want := without(w.kinds()), []string{"web/crashloop", "web/recovered", "web/crashloop"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestDisabledSendsNothing(t *testing.T) {
	d, _ := newDispatcher(t)
	w := newWebhook(t)
	off := settings(w.URL)
	off.Disabled = true
	noSink := settings("")
	noSink.RecoverAfter = 0

	d.Observe(problem(off, spec.AlertFailed, time.Time{}))
	d.Observe(fine(off, time.Time{}))
	d.Observe(problem(noSink, spec.AlertFailed, time.Time{}))
	d.Observe(fine(noSink, time.Time{}))

	// An incident opened while enabled is closed when alerts are turned off.
	on := settings(w.URL)
	on.RecoverAfter = 0
	d.Observe(problem(on, spec.AlertOOM, time.Time{}))
	d.Observe(problem(off, spec.AlertOOM, time.Time{}))
	d.Observe(fine(on, time.Time{})) // no incident any more: no recovery

	flush(t, d, w)
	if got, want := without(w.kinds()), []string{"web/oom"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	if c := d.Counts(); c.Suppressed != 0 {
		t.Errorf("suppressed: got %d, want 0", c.Suppressed)
	}
}

func TestWebhookRetriedThenGivenUp(t *testing.T) {
	t.Run("closed port", func(t *testing.T) {
		d, log := newDispatcher(t)
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		url := "http://" + ln.Addr().String() + "/secret-token"
		ln.Close()
		s := settings(url)
		s.Retries = 2

		start := time.Now()
		d.Observe(problem(s, spec.AlertFailed, time.Time{}))
		if took := time.Since(start); took > 5*time.Millisecond {
			t.Errorf("Observe took %v", took)
		}
		waitFor(t, "the delivery to fail", func() bool { return d.Counts().Failed == 1 })

		var gaveUp []*logrus.Entry
		for _, e := range log.AllEntries() {
			if e.Level == logrus.ErrorLevel {
				gaveUp = append(gaveUp, e)
			}
			if strings.Contains(e.Message, "secret-token") || strings.Contains(fmt.Sprint(e.Data), "secret-token") {
				t.Errorf("the log shows the webhook's URL: %s %v", e.Message, e.Data)
			}
		}
		if len(gaveUp) != 1 {
			t.Fatalf("want one error logged, got %d", len(gaveUp))
		}
		e := gaveUp[0]
		if e.Data["service"] != "web" || e.Data["kind"] != spec.AlertFailed || e.Data["sink"] != "webhook http://"+ln.Addr().String() ||
			e.Data["attempts"] != 3 || e.Data[logrus.ErrorKey] == nil {
			t.Errorf("give-up log entry: %q %v", e.Message, e.Data)
		}
		if c := d.Counts(); c.Sent != 0 {
			t.Errorf("sent: %d", c.Sent)
		}
	})

	t.Run("server error", func(t *testing.T) {
		d, _ := newDispatcher(t)
		w := newWebhook(t)
		w.answer = func(int) int { return http.StatusInternalServerError }
		s := settings(w.URL)
		s.Retries = 3
		d.Observe(problem(s, spec.AlertFailed, time.Time{}))
		waitFor(t, "the delivery to fail", func() bool { return d.Counts().Failed == 1 })
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.requests != 4 {
			t.Errorf("requests: got %d, want 1 + 3 retries", w.requests)
		}
	})

	t.Run("succeeds on retry", func(t *testing.T) {
		d, _ := newDispatcher(t)
		w := newWebhook(t)
		w.answer = func(n int) int {
			if n < 3 {
				return http.StatusBadGateway
			}
			return http.StatusOK
		}
		s := settings(w.URL)
		s.Retries = 3
		d.Observe(problem(s, spec.AlertFailed, time.Time{}))
		waitFor(t, "the delivery", func() bool { return d.Counts().Sent == 1 })
		if c := d.Counts(); c.Failed != 0 || w.count() != 1 {
			t.Errorf("counts %+v, %d alerts received", c, w.count())
		}
	})
}

func TestExecHook(t *testing.T) {
	t.Run("failure retried", func(t *testing.T) {
		d, log := newDispatcher(t)
		runs := filepath.Join(t.TempDir(), "runs")
		hook := writeHook(t, `echo run >> "$1"; echo "no route to pager" >&2; exit 3`)
		s := settings("")
		s.Exec = []string{hook, runs}
		s.Retries = 2
		d.Observe(problem(s, spec.AlertFailed, time.Time{}))
		waitFor(t, "the delivery to fail", func() bool { return d.Counts().Failed == 1 })
		b, err := os.ReadFile(runs)
		if err != nil {
			t.Fatal(err)
		}
		if n := strings.Count(string(b), "run\n"); n != 3 {
			t.Errorf("runs: got %d, want 1 + 2 retries", n)
		}
		last := log.LastEntry()
		if err, _ := last.Data[logrus.ErrorKey].(error); err == nil || !strings.Contains(err.Error(), "no route to pager") || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("logged error: %v", last.Data[logrus.ErrorKey])
		}
	})

	t.Run("one alert per line", func(t *testing.T) {
		d, _ := newDispatcher(t)
		file := filepath.Join(t.TempDir(), "alerts.json")
		s := settings("")
		s.Exec = []string{"/usr/bin/tee", "-a", file}
		d.Observe(problem(s, spec.AlertFailed, time.Time{}))
		d.Observe(problem(s, spec.AlertOOM, time.Time{}))
		waitFor(t, "two deliveries", func() bool { return d.Counts().Sent == 2 })
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
		if len(lines) != 2 || !strings.HasSuffix(string(b), "\n") {
			t.Fatalf("the file holds %d lines, want 2 JSON lines:\n%s", len(lines), b)
		}
		for _, l := range lines {
			var a Alert
			if err := json.Unmarshal([]byte(l), &a); err != nil {
				t.Errorf("line %q: %v", l, err)
			}
		}
	})

	t.Run("killed on timeout", func(t *testing.T) {
		d, _ := newDispatcher(t)
		pidFile := filepath.Join(t.TempDir(), "pid")
		// The hook's child holds the output pipe: the whole group must die.
		hook := writeHook(t, `sleep 30 & echo $! > "$1"; wait`)
		s := settings("")
		s.Exec = []string{hook, pidFile}
		s.Timeout = 100 * time.Millisecond
		d.Observe(problem(s, spec.AlertFailed, time.Time{}))
		waitFor(t, "the delivery to fail", func() bool { return d.Counts().Failed == 1 })
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		pid := strings.TrimSpace(string(b))
		waitFor(t, "the hook's child to be killed", func() bool {
			stat, err := os.ReadFile("/proc/" + pid + "/stat")
			if err != nil {
				return true // gone
			}
			// The state follows the command name in parentheses.
			_, rest, _ := strings.Cut(string(stat), ") ")
			return strings.HasPrefix(rest, "Z") || strings.HasPrefix(rest, "X")
		})
	})
}

func TestObserveNeverBlocks(t *testing.T) {
	d, _ := newDispatcher(t)
	d.CloseWait = 50 * time.Millisecond
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		select {
		case arrived <- struct{}{}:
		default:
		}
		select { // hang until the client gives up
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	s := settings(srv.URL)
	s.Cooldown = 0
	s.Timeout = time.Minute
	s.Retries = 3

	d.Observe(problem(s, spec.AlertFailed, time.Time{}))
	<-arrived // the worker now hangs on the sink
	n := spec.DefaultAlertQueueLength + 50
	took := make([]time.Duration, n)
	for i := range n {
		start := time.Now()
		d.Observe(problem(s, spec.AlertFailed, time.Time{}))
		took[i] = time.Since(start)
	}
	// An Observe that waited on the sink would take a minute (its
	// timeout). The typical one must take well under 5ms; the slowest is
	// allowed a scheduling hiccup of a loaded test machine.
	slices.Sort(took)
	if median, slowest := took[n/2], took[n-1]; median > 5*time.Millisecond || slowest > 250*time.Millisecond {
		t.Errorf("Observe took %v (median), %v (slowest); want < 5ms", median, slowest)
	}
	if c := d.Counts(); c.Dropped != uint64(n-spec.DefaultAlertQueueLength) {
		t.Errorf("dropped: got %d, want %d", c.Dropped, n-spec.DefaultAlertQueueLength)
	}

	start := time.Now()
	d.Close()
	if took := time.Since(start); took > d.CloseWait+time.Second {
		t.Errorf("Close took %v", took)
	}
	c := d.Counts()
	if c.Failed != 1 || c.Sent != 0 || c.Dropped != uint64(n) {
		t.Errorf("after Close: %+v; want the hanging delivery failed and the queue dropped", c)
	}
	d.Observe(problem(s, spec.AlertOOM, time.Time{})) // ignored
	if d.Counts() != c {
		t.Errorf("Observe after Close changed the counts")
	}
}

func TestCloseCancelsRecovery(t *testing.T) {
	d, _ := newDispatcher(t)
	w := newWebhook(t)
	s := settings(w.URL)
	s.RecoverAfter = 20 * time.Millisecond
	d.Observe(problem(s, spec.AlertFailed, time.Time{}))
	d.Observe(fine(s, time.Time{}))
	d.Close()
	time.Sleep(3 * s.RecoverAfter) // when the recovery would have fired
	if got := w.kinds(); !slices.Equal(got, []string{"web/failed"}) {
		t.Errorf("got %q, want only the failure", got)
	}
}

func TestForget(t *testing.T) {
	d, _ := newDispatcher(t)
	w := newWebhook(t)
	s := settings(w.URL)
	s.RecoverAfter = 20 * time.Millisecond
	d.Observe(problem(s, spec.AlertFailed, time.Time{}))
	d.Observe(fine(s, time.Time{}))
	d.Forget("web")
	d.Observe(problem(s, spec.AlertFailed, time.Time{})) // no cooldown remembered
	d.Observe(fine(s, time.Time{}))
	waitFor(t, "the recovery", func() bool { return slices.Contains(w.kinds(), "web/recovered") })
	time.Sleep(3 * s.RecoverAfter) // when the forgotten recovery would have fired
	flush(t, d, w)
	if got, want := without(w.kinds()), []string{"web/failed", "web/failed", "web/recovered"}; !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		base    time.Duration
		attempt int
		want    time.Duration
	}{
		{time.Second, 1, time.Second},
		{time.Second, 2, 2 * time.Second},
		{time.Second, 4, 8 * time.Second},
		{time.Second, 7, time.Minute},
		{time.Second, 100, time.Minute},
		{time.Millisecond, 3, 4 * time.Millisecond},
	} {
		if got := retryDelay(tc.base, tc.attempt); got != tc.want {
			t.Errorf("retryDelay(%v, %d) = %v, want %v", tc.base, tc.attempt, got, tc.want)
		}
	}
}
