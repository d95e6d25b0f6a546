package metrics

import (
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/corral-dev/corral/runtime/supervisor"
)

// fixture: a running service with everything, one in backoff after an
// OOM kill (no cgroup), one never started, one running without limits.
func fixture() []Service {
	return []Service{
		{
			Name: "web", State: "running", Up: true,
			Restarts:     map[string]uint64{"exit": 2, "oom": 1},
			OOMKills:     1,
			LastExitCode: 137, HasExited: true,
			Health:     "healthy",
			CPUSeconds: 12.5, MemoryBytes: 48 << 20, MemoryLimitBytes: 64 << 20,
			PidsCurrent: 7, PidsLimit: 100, CPUThrottledSeconds: 0.25,
			HasCgroup:    true,
			LogLinesLost: 3,
			OnBridge:     true, RxBytes: 1000, TxBytes: 2000, Restricted: true, EgressDenied: 5,
		},
		{
			Name: "db", State: "backoff",
			Restarts:     map[string]uint64{"unhealthy": 4},
			LastExitCode: 1, HasExited: true,
			Health: "unhealthy",
		},
		{Name: "job", State: "stopped"},
		{
			Name: "api", State: "running", Up: true, Health: "starting",
			CPUSeconds: 1, MemoryBytes: 1 << 20, PidsCurrent: 1, HasCgroup: true,
			OnBridge: true, RxBytes: 10, TxBytes: 20,
		},
	}
}

// scrape serves reg over HTTP and returns each sample, keyed
// name{label="value",...} with the labels sorted by name.
func scrape(t *testing.T, h http.Handler) map[string]float64 {
	t.Helper()
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("scrape: %s: %s", resp.Status, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for name, f := range families {
		for _, m := range f.Metric {
			out[key(name, m.GetLabel())] = value(f.GetType(), m)
		}
	}
	return out
}

func key(name string, labels []*dto.LabelPair) string {
	var parts []string
	for _, l := range labels {
		parts = append(parts, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

func value(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_UNTYPED:
		return m.GetUntyped().GetValue()
	}
	return -1
}

func TestScrape(t *testing.T) {
	var calls atomic.Int32
	reg := NewRegistry(func() []Service { calls.Add(1); return fixture() }, "1.2.3")
	got := scrape(t, Handler(reg))
	if n := calls.Load(); n != 1 {
		t.Errorf("services() called %d times in one scrape, want 1", n)
	}

	want := map[string]float64{
		`corral_build_info{version="1.2.3"}`: 1,

		`corral_service_up{service="web"}`:                                 1,
		`corral_service_state{service="web",state="running"}`:              1,
		`corral_service_state{service="web",state="backoff"}`:              0,
		`corral_service_state{service="web",state="failed"}`:               0,
		`corral_service_restarts_total{reason="exit",service="web"}`:       2,
		`corral_service_restarts_total{reason="oom",service="web"}`:        1,
		`corral_service_restarts_total{reason="operator",service="web"}`:   0,
		`corral_service_restarts_total{reason="pids_limit",service="web"}`: 0,
		`corral_service_oom_kills_total{service="web"}`:                    1,
		`corral_service_last_exit_code{service="web"}`:                     137,
		`corral_service_healthy{service="web"}`:                            1,
		`corral_service_cpu_seconds_total{service="web"}`:                  12.5,
		`corral_service_memory_bytes{service="web"}`:                       48 << 20,
		`corral_service_memory_limit_bytes{service="web"}`:                 64 << 20,
		`corral_service_pids{service="web"}`:                               7,
		`corral_service_pids_limit{service="web"}`:                         100,
		`corral_service_cpu_throttled_seconds_total{service="web"}`:        0.25,
		`corral_service_log_lines_lost_total{service="web"}`:               3,
		`corral_service_network_receive_bytes_total{service="web"}`:        1000,
		`corral_service_network_transmit_bytes_total{service="web"}`:       2000,
		`corral_service_egress_denied_packets_total{service="web"}`:        5,
		`corral_service_network_receive_bytes_total{service="api"}`:        10,
		`corral_service_network_transmit_bytes_total{service="api"}`:       20,

		`corral_service_up{service="db"}`:                                0,
		`corral_service_state{service="db",state="backoff"}`:             1,
		`corral_service_state{service="db",state="running"}`:             0,
		`corral_service_restarts_total{reason="unhealthy",service="db"}`: 4,
		`corral_service_restarts_total{reason="exit",service="db"}`:      0,
		`corral_service_last_exit_code{service="db"}`:                    1,
		`corral_service_healthy{service="db"}`:                           0,
		`corral_service_oom_kills_total{service="db"}`:                   0,
		`corral_service_log_lines_lost_total{service="db"}`:              0,
		`corral_service_state{service="job",state="stopped"}`:            1,
		`corral_service_healthy{service="api"}`:                          0,
		`corral_service_memory_bytes{service="api"}`:                     1 << 20,
		`corral_service_cpu_throttled_seconds_total{service="api"}`:      0,

		`corral_services{state="running"}`:   2,
		`corral_services{state="backoff"}`:   1,
		`corral_services{state="stopped"}`:   1,
		`corral_services{state="starting"}`:  0,
		`corral_services{state="crashloop"}`: 0,
		`corral_services{state="stopping"}`:  0,
		`corral_services{state="failed"}`:    0,
	}
	for k, v := range want {
		if g, ok := got[k]; !ok {
			t.Errorf("%s missing", k)
		} else if g != v {
			t.Errorf("%s = %g, want %g", k, g, v)
		}
	}

	absent := []string{
		// db and job have no cgroup: no cgroup series at all.
		`corral_service_cpu_seconds_total{service="db"}`,
		`corral_service_memory_bytes{service="db"}`,
		`corral_service_memory_limit_bytes{service="db"}`,
		`corral_service_pids{service="db"}`,
		`corral_service_pids_limit{service="db"}`,
		`corral_service_cpu_throttled_seconds_total{service="db"}`,
		`corral_service_cpu_seconds_total{service="job"}`,
		`corral_service_memory_bytes{service="job"}`,
		// job never ended and has no check.
		`corral_service_last_exit_code{service="job"}`,
		`corral_service_healthy{service="job"}`,
		// only web and api are on the bridge, only web has an egress list.
		`corral_service_network_receive_bytes_total{service="db"}`,
		`corral_service_network_transmit_bytes_total{service="job"}`,
		`corral_service_egress_denied_packets_total{service="api"}`,
		// api runs without limits.
		`corral_service_memory_limit_bytes{service="api"}`,
		`corral_service_pids_limit{service="api"}`,
	}
	for _, k := range absent {
		if v, ok := got[k]; ok {
			t.Errorf("%s = %g, want it absent", k, v)
		}
	}

	// Every state and every restart reason of every service is present.
	for _, name := range []string{"web", "db", "job", "api"} {
		for _, st := range States {
			if _, ok := got[fmt.Sprintf(`corral_service_state{service=%q,state=%q}`, name, st)]; !ok {
				t.Errorf("state %s of %s missing", st, name)
			}
		}
		for _, r := range RestartReasons {
			if _, ok := got[fmt.Sprintf(`corral_service_restarts_total{reason=%q,service=%q}`, r, name)]; !ok {
				t.Errorf("restart reason %s of %s missing", r, name)
			}
		}
	}

	// The daemon's own Go and process series are there too, under
	// client_golang's names.
	for _, k := range []string{`go_goroutines{}`, `go_threads{}`, fmt.Sprintf(`go_info{version=%q}`, runtime.Version()),
		`go_memstats_alloc_bytes{}`, `go_memstats_sys_bytes{}`,
		`process_cpu_seconds_total{}`, `process_resident_memory_bytes{}`, `process_virtual_memory_bytes{}`,
		`process_open_fds{}`, `process_max_fds{}`, `process_start_time_seconds{}`} {
		if v, ok := got[k]; !ok {
			t.Errorf("%s missing", k)
		} else if v <= 0 && k != `process_cpu_seconds_total{}` { // under 10 ms reads 0
			t.Errorf("%s = %g, want > 0", k, v)
		}
	}
	// This process started after boot and before now.
	if st := got[`process_start_time_seconds{}`]; st > float64(time.Now().Unix())+1 || st < float64(time.Now().Add(-24*time.Hour).Unix()) {
		t.Errorf("process_start_time_seconds = %g, now is %d", st, time.Now().Unix())
	}
}

// TestUnknownStateAndReason: a state or reason this package does not list
// is still exported, beside the known ones.
func TestUnknownStateAndReason(t *testing.T) {
	reg := NewRegistry(func() []Service {
		return []Service{{Name: "x", State: "paused", Restarts: map[string]uint64{"cosmic_ray": 1}}}
	}, "dev")
	got := scrape(t, Handler(reg))
	for k, v := range map[string]float64{
		`corral_service_state{service="x",state="paused"}`:               1,
		`corral_service_state{service="x",state="running"}`:              0,
		`corral_service_restarts_total{reason="cosmic_ray",service="x"}`: 1,
		`corral_service_restarts_total{reason="exit",service="x"}`:       0,
		`corral_services{state="paused"}`:                                1,
		`corral_services{state="running"}`:                               0,
	} {
		if g, ok := got[k]; !ok || g != v {
			t.Errorf("%s = %g (present %t), want %g", k, g, ok, v)
		}
	}
}

// TestNoServices: the per-state counts and the build are there before
// any service is.
func TestNoServices(t *testing.T) {
	got := scrape(t, Handler(NewRegistry(func() []Service { return nil }, "dev")))
	for _, st := range States {
		if v, ok := got[fmt.Sprintf(`corral_services{state=%q}`, st)]; !ok || v != 0 {
			t.Errorf("corral_services{state=%q} = %g (present %t), want 0", st, v, ok)
		}
	}
	if got[`corral_build_info{version="dev"}`] != 1 {
		t.Error("corral_build_info missing")
	}
}

// TestLint: client_golang's parser reads every family of the output, and
// its linter finds nothing to complain of.
func TestLint(t *testing.T) {
	var out strings.Builder
	if _, err := NewRegistry(fixture, "dev").WriteTo(&out); err != nil {
		t.Fatal(err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(strings.NewReader(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	var list []*dto.MetricFamily
	for _, f := range families {
		list = append(list, f)
	}
	problems, err := promlint.NewWithMetricFamilies(list).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

// TestLabelValuesAreEscaped: a value with a quote, a backslash and a
// newline reads back unchanged.
func TestLabelValuesAreEscaped(t *testing.T) {
	version := "1.0 \"beta\"\\\nnext"
	got := scrape(t, Handler(NewRegistry(func() []Service { return nil }, version)))
	if got[fmt.Sprintf(`corral_build_info{version=%q}`, version)] != 1 {
		t.Errorf("corral_build_info with version %q missing: %v", version, got)
	}
}

func TestFormatValue(t *testing.T) {
	for v, want := range map[float64]string{
		0: "0", 1: "1", 12.5: "12.5", 1 << 40: "1.099511627776e+12", -3: "-3",
		math.Inf(1): "+Inf", math.Inf(-1): "-Inf", math.NaN(): "NaN",
	} {
		if got := formatValue(v); got != want {
			t.Errorf("formatValue(%g) = %q, want %q", v, got, want)
		}
	}
}

// TestHandlerGzipMethodsAndInFlight: gzip when asked, text otherwise;
// only GET and HEAD; a fifth scrape while four are in flight is refused,
// and the next one after they end is served.
func TestHandlerGzipMethodsAndInFlight(t *testing.T) {
	release := make(chan struct{})
	var blocked atomic.Bool
	entered := make(chan struct{}, maxInFlight)
	reg := NewRegistry(func() []Service {
		if blocked.Load() {
			entered <- struct{}{}
			<-release
		}
		return fixture()
	}, "dev")
	srv := httptest.NewServer(Handler(reg))
	defer srv.Close()

	req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req) // no transparent gunzip
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Content-Encoding") != "gzip" {
		t.Errorf("Content-Encoding %q with Accept-Encoding gzip", resp.Header.Get("Content-Encoding"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(zr)
	resp.Body.Close()
	if err != nil || !strings.Contains(string(body), `corral_service_up{service="web"} 1`) {
		t.Errorf("gzipped body (%v):\n%s", err, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != ContentType {
		t.Errorf("Content-Type %q", ct)
	}

	resp, err = http.Post(srv.URL, "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %s, want 405", resp.Status)
	}

	blocked.Store(true)
	done := make(chan int, maxInFlight)
	for range maxInFlight {
		go func() {
			resp, err := http.Get(srv.URL)
			if err != nil {
				done <- 0
				return
			}
			resp.Body.Close()
			done <- resp.StatusCode
		}()
	}
	for range maxInFlight {
		<-entered
	}
	resp, err = http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("scrape beyond %d in flight: %s, want 503", maxInFlight, resp.Status)
	}
	blocked.Store(false)
	close(release)
	for range maxInFlight {
		if code := <-done; code != http.StatusOK {
			t.Errorf("scrape in flight: %d", code)
		}
	}
	if got := scrape(t, Handler(reg)); got[`corral_service_up{service="web"}`] != 1 {
		t.Error("scrape after the others ended failed")
	}
}

func TestParseStat(t *testing.T) {
	// The command holds a space and a parenthesis, as a process can
	// make it.
	line := "1234 (co) rral) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 50 0 0 20 0 8 0 4200 123456789 2048 18446744073709551615\n"
	st, ok := parseStat([]byte(line))
	if !ok {
		t.Fatal("not parsed")
	}
	if want := (selfStat{utime: 250, stime: 50, starttime: 4200, vsize: 123456789, rss: 2048}); st != want {
		t.Errorf("parseStat = %+v, want %+v", st, want)
	}
	if _, ok := parseStat([]byte("1234 (x) S 1 2")); ok {
		t.Error("short line parsed")
	}
}

// TestStatesMatchSupervisor keeps States in step with the supervisor's.
func TestStatesMatchSupervisor(t *testing.T) {
	var want []string
	for _, s := range supervisor.States {
		want = append(want, string(s))
	}
	got := slices.Clone(States)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("States = %v, supervisor has %v", got, want)
	}
}

func TestListenError(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l2, err := Listen(l.Addr().String()); err == nil || !strings.Contains(err.Error(), "listen for metrics") {
		if l2 != nil {
			l2.Close()
		}
		t.Errorf("Listen on a taken address: %v", err)
	}
}

func TestServe(t *testing.T) {
	// A free port: taken, then let go.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	log, hook := logtest.NewNullLogger()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	reg := NewRegistry(fixture, "dev")
	ml, err := Listen(addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- Serve(ctx, ml, Handler(reg), log) }()

	var resp *http.Response
	for deadline := time.Now().Add(5 * time.Second); ; {
		resp, err = http.Get("http://" + addr + Path)
		if err == nil || time.Now().After(deadline) {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("Serve ended: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), `corral_service_up{service="web"} 1`) {
		t.Errorf("GET %s: %s\n%s", Path, resp.Status, body)
	}
	if resp, err := http.Get("http://" + addr + "/other"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET /other: %s, want 404", resp.Status)
		}
	}

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve after ctx ended: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after ctx ended")
	}
	if e := hook.LastEntry(); e == nil || e.Level != logrus.InfoLevel || e.Message != "serving metrics" {
		t.Errorf("log: %+v", hook.AllEntries())
	}
	if resp, err := http.Get("http://" + addr + Path); err == nil {
		resp.Body.Close()
		t.Error("still serving after ctx ended")
	}
}

func TestAcceptsGzip(t *testing.T) {
	for h, want := range map[string]bool{
		"": false, "gzip": true, "deflate, gzip": true, "GZIP;q=0.5": true,
		"gzip;q=0": false, "gzip; q=0.000": false, "identity": false, "gzip;q=x": false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept-Encoding", h)
		if got := acceptsGzip(r); got != want {
			t.Errorf("Accept-Encoding %q: %v, want %v", h, got, want)
		}
	}
}
