package integration

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/cgroup"
)

// pyServer is a python3 one-liner HTTP server on 127.0.0.1:8080 (inside
// the sandbox's own network namespace) answering /healthz with 200 for
// the first okFor seconds of its life, 500 after.
func pyServer(okFor float64) string {
	script := fmt.Sprintf(`import http.server,time
t0=time.time()
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(s):
        s.send_response(200 if time.time()-t0<%g else 500); s.end_headers()
    def log_message(s,*a): pass
print("serving",flush=True)
http.server.HTTPServer(("127.0.0.1",8080),H).serve_forever()`, okFor)
	js, _ := json.Marshal([]string{"/usr/bin/python3", "-c", script})
	return string(js)
}

// TestHTTPHealthCheckFailingRestartsWithBackoff: a service whose HTTP check
// fails after a while is stopped, its end recorded as unhealthy, and it is
// restarted through the restart policy's backoff; its state shows starting
// until the first check passes.
func TestHTTPHealthCheckFailingRestartsWithBackoff(t *testing.T) {
	d := newDaemon(t, `
  web:
    command: `+pyServer(1.5)+`
    health: {http: {port: 8080, path: /healthz}, interval: 200ms, timeout: 150ms, retries: 2, start_period: 3s}
    restart: {policy: on-failure, backoff: {initial: 300ms, max: 5s, jitter: 0}}
`).start()
	first := d.waitFor("web", 10*time.Second, "starting with a sandbox", func(st *api.ServiceDetail) bool { return st.PID != 0 })
	if first.State != "starting" && first.Health != "healthy" {
		t.Errorf("before its first check passed: state %s, health %q; want starting", first.State, first.Health)
	}
	d.waitFor("web", 10*time.Second, "healthy", func(st *api.ServiceDetail) bool { return st.State == "running" && st.Health == "healthy" })
	st := d.waitFor("web", 15*time.Second, "restarted after failing its check", func(st *api.ServiceDetail) bool {
		return len(st.Exits) > 0 && st.PID != 0 && st.PID != first.PID && !st.StartedAt.IsZero()
	})
	e := st.Exits[0]
	if e.Kind != api.ExitUnhealthy || !strings.Contains(e.Reason, "health check") || !strings.Contains(e.Reason, "500") {
		t.Errorf("exit after the failed check: %+v", e)
	}
	if st.RestartsByKind[api.ExitUnhealthy] < 1 {
		t.Errorf("restarts by kind %v; want an unhealthy one", st.RestartsByKind)
	}
	// The restart waited for the backoff: no sandbox ran in between.
	if gap := st.StartedAt.Sub(e.Time); gap < 250*time.Millisecond {
		t.Errorf("restarted %s after the unhealthy exit; want the 300ms backoff", gap)
	}
	// The second failure backs off longer: the delay grows.
	st = d.waitFor("web", 20*time.Second, "restarted twice", func(st *api.ServiceDetail) bool {
		return len(st.Exits) >= 2 && st.PID != 0 && !st.StartedAt.IsZero()
	})
	if gap := st.StartedAt.Sub(st.Exits[1].Time); gap < 500*time.Millisecond {
		t.Errorf("second restart %s after its exit; want the doubled backoff (600ms)", gap)
	}
	d.stop()
}

// TestExecHealthCheckRunsInsideTheSandbox: the check command sees what
// the service sees (its hostname, its PID 1, its seccomp filter), not the
// host.
func TestExecHealthCheckRunsInsideTheSandbox(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "host-only")
	if err := os.WriteFile(marker, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t, `
  inside:
    command: ["/bin/sleep", "1000"]
    hostname: checked
    health:
      exec: ["/bin/sh", "-c", "test \"$(hostname)\" = checked && grep -q corral-init /proc/1/cmdline && grep -q 'Seccomp:.*2' /proc/self/status && grep -q 'NoNewPrivs:.*1' /proc/self/status"]
      interval: 15s
      timeout: 15s
  hostview:
    command: ["/bin/sleep", "1000"]
    health: {exec: ["/bin/test", "-e", "`+marker+`"], interval: 1s, timeout: 1s, retries: 2, on_unhealthy: none}
`).start()
	// Generous timeouts and waits: under emulation (the cgroup v2 VM, on
	// a busy host) one exec takes from a good part of a second to
	// several seconds. The check's speed is the benchmark's business;
	// this test is about where it runs.
	d.waitFor("inside", 90*time.Second, "healthy", func(st *api.ServiceDetail) bool { return st.State == "running" && st.Health == "healthy" })
	st := d.waitFor("hostview", 60*time.Second, "unhealthy", func(st *api.ServiceDetail) bool { return st.Health == "unhealthy" })
	// on_unhealthy: none: reported, not restarted.
	time.Sleep(1500 * time.Millisecond)
	if again := d.status("hostview"); again.PID != st.PID || len(again.Exits) != 0 {
		t.Errorf("on_unhealthy none restarted the service: %+v", again.Service)
	}
	d.stop()
}

// TestDependsOnHealthyDelaysTheDependent: the dependent starts only once
// its dependency's check passes; the dependency shows starting until then.
func TestDependsOnHealthyDelaysTheDependent(t *testing.T) {
	slow := `["/usr/bin/python3", "-c", "import socket,time\ntime.sleep(1.5)\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('127.0.0.1',5432))\ns.listen()\nwhile True: s.accept()[0].close()"]`
	d := newDaemon(t, `
  db:
    command: `+slow+`
    health: {tcp: {port: 5432}, interval: 100ms, timeout: 100ms, start_period: 5s}
  app:
    command: ["/bin/sleep", "1000"]
    depends_on: [{service: db, condition: healthy}]
`).start()
	db := d.waitFor("db", 10*time.Second, "started", func(st *api.ServiceDetail) bool { return st.PID != 0 })
	if db.State != "starting" {
		t.Errorf("db is %s before its check passed; want starting", db.State)
	}
	if app := d.status("app"); app.PID != 0 {
		t.Fatalf("app started before db was healthy: %+v", app.Service)
	}
	app := d.waitRunning("app")
	db = d.status("db")
	if db.State != "running" || db.Health != "healthy" {
		t.Errorf("db %s/%s once app runs", db.State, db.Health)
	}
	if gap := app.StartedAt.Sub(db.StartedAt); gap < 1400*time.Millisecond {
		t.Errorf("app started %s after db; want after db listened (1.5s)", gap)
	}
	d.stop()
}

// TestNotifyReadiness: a service speaking sd_notify shows starting until
// it sends READY=1 on $NOTIFY_SOCKET, and its STATUS= is shown.
func TestNotifyReadiness(t *testing.T) {
	notifier := `["/usr/bin/python3", "-c", "import os,socket,time\nprint('as nobody',flush=True)\ntime.sleep(1)\ns=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)\ns.sendto(b'READY=1\\nSTATUS=serving requests',os.environ['NOTIFY_SOCKET'])\ntime.sleep(1000)"]`
	d := newDaemon(t, `
  notifier:
    command: `+notifier+`
    notify: true
    user: 65534
`).start()
	st := d.waitFor("notifier", 10*time.Second, "started", func(st *api.ServiceDetail) bool { return st.PID != 0 })
	if st.State != "starting" {
		t.Errorf("state %s before READY=1; want starting", st.State)
	}
	st = d.waitFor("notifier", 10*time.Second, "ready", func(st *api.ServiceDetail) bool { return st.State == "running" })
	if ran := time.Since(st.StartedAt); ran < 900*time.Millisecond {
		t.Errorf("running %s after its start; it said READY=1 after 1s", ran)
	}
	if st.NotifyStatus != "serving requests" {
		t.Errorf("notify status %q", st.NotifyStatus)
	}
	// Its init, running as its user, could write its log.
	d.waitLogged("notifier", "as nobody")
	if st.LogError != "" || st.LogLinesLost != 0 {
		t.Errorf("log of a service run as nobody: error %q, %d lines lost", st.LogError, st.LogLinesLost)
	}
	d.stop()
}

// TestDaemonReportsChildOOMAndPidsLimitWithLastLines: exits caused by a
// limit are classed as such even when PID 1 exits 0, and carry the last
// lines printed.
func TestDaemonReportsChildOOMAndPidsLimitWithLastLines(t *testing.T) {
	d := newDaemon(t, `
  hog:
    command: ["/bin/sh", "-c", "echo about to allocate; head -c 209715200 /dev/zero | tail > /dev/null; echo survived; exit 0"]
    resources: {memory: 32M}
    restart: no
  forker:
    command: ["/bin/sh", "-c", "echo forking; for i in $(seq 40); do sleep 5 & done; wait; exit 0"]
    resources: {pids: 16}
    restart: no
`).start()
	hog := d.waitFor("hog", 20*time.Second, "ended", func(st *api.ServiceDetail) bool { return len(st.Exits) > 0 })
	e := hog.Exits[0]
	if e.Kind != api.ExitOOM || !strings.Contains(e.Reason, "OOM") {
		t.Errorf("hog exit %+v; want it classed as OOM", e)
	}
	if !containsLine(e.LastLines, "stdout about to allocate") {
		t.Errorf("hog exit's last lines %q", e.LastLines)
	}
	forker := d.waitFor("forker", 30*time.Second, "ended", func(st *api.ServiceDetail) bool { return len(st.Exits) > 0 })
	if e := forker.Exits[0]; e.Kind != api.ExitPidsLimit || e.PidsLimitHits == 0 || !strings.Contains(e.Reason, "pids limit (16)") {
		t.Errorf("forker exit %+v; want it classed as the pids limit", e)
	}
	r := d.ctl("status", "hog")
	if !strings.Contains(r.stdout, "about to allocate") {
		t.Errorf("corral status does not show the last lines:\n%s", r.stdout)
	}
	d.stop()
}

func containsLine(lines []string, suffix string) bool {
	for _, l := range lines {
		if strings.HasSuffix(l, suffix) {
			return true
		}
	}
	return false
}

// freePort finds a free TCP port on 127.0.0.1.
func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// scrape fetches the metrics endpoint and returns each sample line's
// value by its series ("name{labels}").
func scrape(t *testing.T, url string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// TestMetricsMatchTheCgroup: the endpoint serves the documented series,
// with the limits and usage the cgroup holds.
func TestMetricsMatchTheCgroup(t *testing.T) {
	port := freePort(t)
	d := newDaemon(t, fmt.Sprintf(`
  burner:
    command: ["/bin/sh", "-c", "while :; do :; done"]
    resources: {memory: 64M, pids: 50, cpus: 0.5}
  quitter:
    command: ["/bin/sh", "-c", "exit 3"]
    restart: no
`))
	d.writeDaemon(fmt.Sprintf("  metrics: {listen: \"127.0.0.1:%d\"}\n", port))
	d.start()
	st := d.waitRunning("burner")
	d.waitFor("quitter", 10*time.Second, "failed", func(st *api.ServiceDetail) bool { return st.State == "failed" })
	time.Sleep(time.Second) // some CPU time and throttling to count
	m := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	cg := filepath.Join(d.cgroup, "burner")
	want := map[string]float64{
		`corral_service_up{service="burner"}`:                    1,
		`corral_service_up{service="quitter"}`:                   0,
		`corral_service_state{service="burner",state="running"}`: 1,
		`corral_service_state{service="quitter",state="failed"}`: 1,
		`corral_service_state{service="burner",state="failed"}`:  0,
		`corral_service_last_exit_code{service="quitter"}`:       3,
		`corral_service_memory_limit_bytes{service="burner"}`:    64 << 20,
		`corral_service_pids_limit{service="burner"}`:            50,
		`corral_service_oom_kills_total{service="burner"}`:       0,
		`corral_services{state="running"}`:                       1,
	}
	for series, v := range want {
		if got, ok := m[series]; !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	stats, err := host.Stats(cg)
	if err != nil {
		t.Fatal(err)
	}
	cpu := m[`corral_service_cpu_seconds_total{service="burner"}`]
	if d := stats.CPUUsage.Seconds() - cpu; cpu <= 0.2 || d < 0 || d > 0.3 {
		t.Errorf("cpu seconds %v, cgroup %v read just after", cpu, stats.CPUUsage.Seconds())
	}
	mem := m[`corral_service_memory_bytes{service="burner"}`]
	if mem <= 0 || mem > 64<<20 || abs(mem-float64(stats.MemoryUsage)) > 4<<20 {
		t.Errorf("memory bytes %v, cgroup %v", mem, stats.MemoryUsage)
	}
	if p := m[`corral_service_pids{service="burner"}`]; p < 1 || p != float64(stats.PidsCurrent) {
		t.Errorf("pids %v, cgroup %v", p, stats.PidsCurrent)
	}
	if th := m[`corral_service_cpu_throttled_seconds_total{service="burner"}`]; th <= 0 {
		t.Errorf("throttled seconds %v under cpus 0.5", th)
	}
	for _, name := range []string{"corral_build_info", "go_goroutines", "process_cpu_seconds_total"} {
		found := false
		for series := range m {
			found = found || strings.HasPrefix(series, name)
		}
		if !found {
			t.Errorf("no %s series", name)
		}
	}
	_ = st
	// corral stats shows the same service with a CPU share near its quota.
	r := d.ctl("stats", "--no-stream", "burner")
	if r.code != 0 || !strings.Contains(r.stdout, "burner") || !strings.Contains(r.stdout, "64MiB") {
		t.Errorf("corral stats: %s", r)
	}
	d.stop()
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

// alertSink is a webhook receiver on 127.0.0.1 that records the alerts.
type alertSink struct {
	mu     sync.Mutex
	alerts []map[string]any
	url    string
}

func newAlertSink(t *testing.T) *alertSink {
	a := &alertSink{}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var m map[string]any
		if err := json.Unmarshal(body, &m); err != nil {
			t.Errorf("alert is not JSON: %q", body)
		}
		a.mu.Lock()
		a.alerts = append(a.alerts, m)
		a.mu.Unlock()
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	a.url = "http://" + l.Addr().String() + "/hook"
	return a
}

func (a *alertSink) kinds() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []string
	for _, m := range a.alerts {
		out = append(out, fmt.Sprint(m["kind"]))
	}
	return out
}

// TestWebhookGetsOneAlertPerFlapWindowAndOneRecovery: a flapping service
// alerts once within the cool-down, and once it runs steadily, one
// recovery follows.
func TestWebhookGetsOneAlertPerFlapWindowAndOneRecovery(t *testing.T) {
	sink := newAlertSink(t)
	flag := t.TempDir()
	d := newDaemon(t, `
  flappy:
    command: ["/bin/sh", "-c", "echo attempt; if [ -e /flag/stable ]; then exec sleep 1000; fi; sleep 0.2; exit 1"]
    mounts: ["`+flag+`:/flag:ro"]
    restart: {policy: always, backoff: {initial: 50ms, max: 200ms}, crash_loop: {failures: 3, window: 30s}}
    alerts: {webhook: "`+sink.url+`", cooldown: 1h, recover_after: 1s}
`).start()
	deadline := time.Now().Add(20 * time.Second)
	for len(sink.kinds()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no alert; daemon log:\n%s", d.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Keep flapping for a while: no second alert within the cool-down.
	time.Sleep(2 * time.Second)
	if k := sink.kinds(); len(k) != 1 || k[0] != "crashloop" {
		t.Fatalf("alerts while flapping: %v; want one crashloop", k)
	}
	if err := os.WriteFile(filepath.Join(flag, "stable"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for len(sink.kinds()) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery: alerts %v; daemon log:\n%s", sink.kinds(), d.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1500 * time.Millisecond)
	if k := sink.kinds(); len(k) != 2 || k[1] != "recovered" {
		t.Fatalf("alerts %v; want crashloop then one recovered", k)
	}
	sink.mu.Lock()
	first := sink.alerts[0]
	sink.mu.Unlock()
	if first["service"] != "flappy" || first["reason"] == "" || first["exits"] == nil || first["last_lines"] == nil {
		t.Errorf("alert document lacks fields: %v", first)
	}
	d.stop()
}

// TestTeeHookWritesOneAlertPerLine: the example's exec hook, tee -a into
// a file, makes NDJSON: each alert one JSON document on a line of its own.
func TestTeeHookWritesOneAlertPerLine(t *testing.T) {
	file := filepath.Join(t.TempDir(), "alerts.json")
	d := newDaemon(t, `
  one:
    command: ["/no/such/one"]
  two:
    command: ["/no/such/two"]
`)
	d.daemonExtra = "  alerts: {exec: [\"/usr/bin/tee\", \"-a\", \"" + file + "\"]}\n"
	d.write(d.services)
	d.start()
	deadline := time.Now().Add(20 * time.Second)
	for {
		data, _ := os.ReadFile(file)
		if strings.Count(string(data), "\n") >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alerts file after 20s: %q; daemon log:\n%s", data, d.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.stop()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	services := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var a map[string]any
		if err := json.Unmarshal([]byte(line), &a); err != nil {
			t.Errorf("line %q is not one JSON document: %v", line, err)
			continue
		}
		services[fmt.Sprint(a["service"])] = true
	}
	if !strings.HasSuffix(string(data), "\n") || !services["one"] || !services["two"] {
		t.Errorf("alerts file: want a line for each of one and two, each ending in a newline:\n%s", data)
	}
}

// TestDeadWebhookDoesNotDelayRestarts: a webhook that never answers does
// not slow supervision down.
func TestDeadWebhookDoesNotDelayRestarts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() { // accept and never answer
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	d := newDaemon(t, `
  victim:
    command: ["/bin/sleep", "1000"]
    resources: {memory: 16M}
    restart: {policy: always, backoff: {initial: 100ms, max: 200ms}, crash_loop: {failures: 1, window: 1m}}
    alerts: {webhook: "http://`+l.Addr().String()+`/hook", timeout: 10s, retries: 5, cooldown: 0s}
`).start()
	for i := range 3 {
		pid := d.waitRunning("victim").PID
		killed := time.Now()
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		st := d.waitFor("victim", 10*time.Second, "restarted", func(st *api.ServiceDetail) bool { return st.PID != 0 && st.PID != pid })
		if took := time.Since(killed); took > 2*time.Second {
			t.Errorf("restart %d took %s with a dead webhook", i, took)
		}
		_ = st
	}
	d.stop()
}

// TestChildOOMKillsAreCountedAndAlertedAsTheyHappen: a service whose
// child is OOM-killed again and again while the service runs on (cgroup
// v1; on v2 the whole sandbox goes, oom.group) has the kills counted in
// status and metrics, and alerted, while it runs: not only when it ends.
// The service waits a moment first, so that the sandbox's start (and its
// runc init, larger than the shell) is over when the OOM killer picks a
// victim: tail, which holds the whole input. The pipeline runs in a
// subshell that raises its own oom_score_adj (no privilege needed to
// raise it): a second OOM while tail's memory is still being reaped (seen
// on a slow host) then takes head or the subshell, never the service's
// own shell.
func TestChildOOMKillsAreCountedAndAlertedAsTheyHappen(t *testing.T) {
	sink := newAlertSink(t)
	d := newDaemon(t, `
  memhog:
    command: ["/bin/sh", "-c", "sleep 0.3; while :; do (echo 1000 > /proc/self/oom_score_adj; head -c 104857600 /dev/zero | tail > /dev/null); echo tried; sleep 0.2; done"]
    resources: {memory: 24M}
    alerts: {webhook: "`+sink.url+`", cooldown: 1h}
`)
	port := freePort(t)
	d.writeDaemon(fmt.Sprintf("  metrics: {listen: \"127.0.0.1:%d\"}\n", port))
	d.start()
	first := d.waitFor("memhog", 10*time.Second, "started", func(st *api.ServiceDetail) bool { return st.PID != 0 })
	st := d.waitFor("memhog", 30*time.Second, "counting OOM kills", func(st *api.ServiceDetail) bool { return st.OOMKillsTotal >= 2 })
	if host.Mode != cgroup.Unified && (st.PID != first.PID || st.State != "running") {
		t.Errorf("on cgroup v1 the service runs on: pid %d (was %d), state %s; exits %+v", st.PID, first.PID, st.State, st.Exits)
	}
	m := scrape(t, fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if got := m[`corral_service_oom_kills_total{service="memhog"}`]; got < 2 {
		t.Errorf("corral_service_oom_kills_total = %v; status counts %d", got, st.OOMKillsTotal)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !slices.Contains(sink.kinds(), "oom") {
		if time.Now().After(deadline) {
			t.Fatalf("no oom alert while the service runs: alerts %v", sink.kinds())
		}
		time.Sleep(20 * time.Millisecond)
	}
	sink.mu.Lock()
	for _, a := range sink.alerts {
		if a["kind"] == "oom" && !strings.Contains(fmt.Sprint(a["reason"]), "OOM killer") {
			t.Errorf("oom alert reason %q", a["reason"])
		}
	}
	sink.mu.Unlock()
	d.stop()
}
