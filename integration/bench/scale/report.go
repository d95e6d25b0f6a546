package scale

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/corral-dev/corral/integration/bench/stats"
	"github.com/corral-dev/corral/internal/procstat"
)

// Repetition is one supervisor's run: start all the services, read
// memory, count wake-ups while idle, stop them all.
type Repetition struct {
	// UpS is from the supervisor's fork to the bench seeing every
	// service's command exec'd; FirstUpS to the first one.
	UpS      float64 `json:"up_s"`
	FirstUpS float64 `json:"first_up_s"`
	// StartFailures are starts that failed and were retried.
	StartFailures int `json:"start_failures"`
	// StartCPUS is the CPU time the supervisor used up to all running,
	// StartChildCPUS that of its children that ended meanwhile (for
	// corral, libcontainer's nsexec stages);
	// HostCPUS the time all CPUs were busy meanwhile, whoever used it
	// (sandbox set-up in the kernel and in the inits included).
	StartCPUS      float64 `json:"start_cpu_s"`
	StartChildCPUS float64 `json:"start_child_cpu_s"`
	HostCPUS       float64 `json:"host_cpu_s"`
	// InitsCPUS is the CPU time of corral's sandbox inits so far: an
	// init keeps its PID from the fork by libcontainer through its
	// set-up of the sandbox (runc's Go init) to corral's own init, so
	// this is what setting up the sandboxes cost inside them.
	InitsCPUS float64 `json:"inits_cpu_s"`
	// SupervisorPSS is the corral daemon's, or s6-svscan's and every
	// s6-supervise's; InitsPSS the corral sandboxes' inits';
	// CommandsPSS the services' own. Bytes.
	SupervisorPSS int64 `json:"supervisor_pss"`
	InitsPSS      int64 `json:"inits_pss"`
	CommandsPSS   int64 `json:"commands_pss"`
	// CgroupMem is the memory charged to the sandboxes' cgroups, and
	// CgroupKernelMem the kernel's part of it (corral only). Bytes.
	CgroupMem       int64 `json:"cgroup_mem"`
	CgroupKernelMem int64 `json:"cgroup_kernel_mem"`
	// IdleWakeups are the supervisor's context switches over the idle
	// window; IdleInitWakeups the corral inits'.
	IdleWakeups     int64   `json:"idle_wakeups"`
	IdleInitWakeups int64   `json:"idle_init_wakeups"`
	IdleCPUMS       float64 `json:"idle_cpu_ms"`
	// DownS is from SIGTERM to the supervisor's exit with every service
	// gone.
	DownS float64 `json:"down_s"`
	// What corral's metrics endpoint costs its daemon.
	MetricsCost
}

// Report is the scale part's result.
type Report struct {
	Services int          `json:"services"`
	Reps     int          `json:"repetitions"`
	IdleS    float64      `json:"idle_window_s"`
	Corral   []Repetition `json:"corral"`
	S6       []Repetition `json:"s6,omitempty"`
	// Runc are `runc run -d` of each service one after another: only
	// UpS, FirstUpS and DownS (runc delete --force of each) are set.
	Runc []Repetition `json:"runc,omitempty"`
	// Image is corral's daemon with each service from one image: only
	// the times and HostCPUS are set.
	Image []Repetition `json:"corral_image,omitempty"`
	Notes []string     `json:"notes,omitempty"`
}

// metric is one line of the table: how to read it from a run, and
// corral's goal if it has one.
type metric struct {
	label string
	value func(Repetition) float64
	goal  string
	// met says whether corral's median meets the goal.
	met func(median float64) bool
	// corralOnly: s6 has no such thing.
	corralOnly bool
	// runc: runc's run has it too.
	runc bool
}

const mb = 1 << 20

func metrics(services int) []metric {
	return []metric{
		{label: "all running, from the fork (s)", value: func(r Repetition) float64 { return r.UpS }, runc: true,
			goal: fmt.Sprintf("< %g s", upGoal.Seconds()), met: func(m float64) bool { return m < upGoal.Seconds() }},
		{label: "first running (s)", value: func(r Repetition) float64 { return r.FirstUpS }, runc: true},
		{label: "failed starts, retried", value: func(r Repetition) float64 { return float64(r.StartFailures) }, corralOnly: true},
		{label: "supervisor CPU to start all (s)", value: func(r Repetition) float64 { return r.StartCPUS }},
		{label: "its exited children's CPU (s)", value: func(r Repetition) float64 { return r.StartChildCPUS }},
		{label: "sandbox inits' CPU to set up (s)", value: func(r Repetition) float64 { return r.InitsCPUS }, corralOnly: true},
		{label: "host CPU busy until all running (s)", value: func(r Repetition) float64 { return r.HostCPUS }},
		{label: "supervisor PSS (MB)", value: func(r Repetition) float64 { return float64(r.SupervisorPSS) / mb }},
		{label: fmt.Sprintf("%d sandbox inits PSS (MB)", services), value: func(r Repetition) float64 { return float64(r.InitsPSS) / mb }, corralOnly: true},
		{label: fmt.Sprintf("%d commands PSS (MB)", services), value: func(r Repetition) float64 { return float64(r.CommandsPSS) / mb }},
		{label: "sandbox cgroups' memory charge (MB)", value: func(r Repetition) float64 { return float64(r.CgroupMem) / mb }, corralOnly: true},
		{label: "  of which the kernel's (MB)", value: func(r Repetition) float64 { return float64(r.CgroupKernelMem) / mb }, corralOnly: true},
		{label: fmt.Sprintf("supervisor wake-ups in %s idle", idle), value: func(r Repetition) float64 { return float64(r.IdleWakeups) },
			goal: "0", met: func(m float64) bool { return m == 0 }},
		{label: fmt.Sprintf("supervisor CPU in %s idle (ms)", idle), value: func(r Repetition) float64 { return r.IdleCPUMS }},
		{label: fmt.Sprintf("sandbox inits wake-ups in %s idle", idle), value: func(r Repetition) float64 { return float64(r.IdleInitWakeups) }, corralOnly: true},
		{label: "stop all: SIGTERM to all gone (s)", value: func(r Repetition) float64 { return r.DownS }, runc: true,
			goal: fmt.Sprintf("< %g s", downGoal.Seconds()), met: func(m float64) bool { return m < downGoal.Seconds() }},
	}
}

// metricsCostMetrics are the lines of the table for corral's metrics
// endpoint.
func metricsCostMetrics() []metric {
	kb := func(v int64) float64 { return float64(v) / 1024 }
	ms := []metric{
		{label: fmt.Sprintf("daemon CPU in %s idle, no scrape (ms)", metricsInterval), value: func(r Repetition) float64 { return r.MetricsIdleCPUMS }},
		{label: "daemon CPU per scrape (ms)", value: func(r Repetition) float64 { return r.ScrapeCPUMS }},
		{label: "  per series (us)", value: func(r Repetition) float64 { return 1000 * r.ScrapeCPUMS / float64(r.ScrapeSeries) }},
		{label: "scrape latency p50 (ms)", value: func(r Repetition) float64 { return r.ScrapeP50MS }},
		{label: "scrape latency p95 (ms)", value: func(r Repetition) float64 { return r.ScrapeP95MS }},
		{label: "series in a scrape", value: func(r Repetition) float64 { return float64(r.ScrapeSeries) }},
		{label: "bytes per scrape, gzip (KB)", value: func(r Repetition) float64 { return kb(r.ScrapeWireBytes) }},
		{label: "  unpacked (KB)", value: func(r Repetition) float64 { return kb(r.ScrapeTextBytes) }},
		{label: "daemon PSS after the scrapes (MB)", value: func(r Repetition) float64 { return float64(r.ScrapedPSS) / mb }},
		{label: fmt.Sprintf("CPU, a scrape every %s (%% of a core)", metricsInterval), value: func(r Repetition) float64 { return r.MetricsCPUPct }},
	}
	for i := range ms {
		ms[i].corralOnly = true
	}
	return ms
}

// medianOf is the median of one metric over runs, with its range.
func medianOf(runs []Repetition, value func(Repetition) float64) (med, lo, hi float64) {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = value(r)
	}
	sort.Float64s(v)
	return stats.Median(v), v[0], v[len(v)-1]
}

func formatMedian(runs []Repetition, value func(Repetition) float64) string {
	if len(runs) == 0 {
		return "-"
	}
	med, lo, hi := medianOf(runs, value)
	if len(runs) == 1 || lo == hi {
		return trimFloat(med)
	}
	return fmt.Sprintf("%s (%s-%s)", trimFloat(med), trimFloat(lo), trimFloat(hi))
}

// trimFloat prints with the precision a value's size calls for.
func trimFloat(v float64) string {
	switch {
	case v == float64(int64(v)):
		return fmt.Sprintf("%d", int64(v))
	case v < 10 && v > -10:
		return fmt.Sprintf("%.2f", v)
	}
	return fmt.Sprintf("%.1f", v)
}

// Print writes the table, with the metrics endpoint's if it was measured.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nScale: %d services running `%s`, each started, measured and stopped %d times; median (min-max)\n", r.Services, command, r.Reps)
	fmt.Fprintf(w, "corral: one daemon; each service in its own sandbox (built-in root, memory %s, pids %s, default hardening).\n", memoryFlag, pidsFlag)
	fmt.Fprintf(w, "s6: s6-svscan + one s6-supervise per service, NO sandbox; its \"supervisor\" figures are s6-svscan's and every s6-supervise's.\n")
	fmt.Fprintf(w, "runc: `runc run -d` of each service one after another (busybox root, Docker's seccomp profile, the same limits); stop: `runc delete --force` of each.\n")
	fmt.Fprintf(w, "%-38s %-24s %-24s %-24s %s\n", "", "corral", "s6", "runc", "corral's goal")
	r.printMetrics(w, metrics(r.Services))
	r.printRatioGoals(w)
	fmt.Fprintf(w, "(running: the service's command has exec'd, the same event for both: the kernel's exec event (proc connector), at its time,\n")
	fmt.Fprintf(w, " of %s in a child of the supervisor's child (a sandbox's init, an s6-supervise); corral's daemon reports \"running\" before it.\n", commandName)
	fmt.Fprintf(w, " Wake-ups: voluntary+involuntary context switches of every thread, /proc/PID/task/*/status; CPU: utime+stime, /proc/PID/stat,\n")
	fmt.Fprintf(w, " %d ms ticks.)\n", int(time.Second/time.Millisecond)/procstat.UserHZ)
	if len(r.Corral) > 0 && r.Corral[0].ScrapeSeries > 0 {
		r.printMetricsCost(w)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, n)
	}
}

// printMetricsCost shows what corral's metrics endpoint costs its daemon.
func (r *Report) printMetricsCost(w io.Writer) {
	fmt.Fprintf(w, "\nMetrics: corral's daemon serving /metrics on 127.0.0.1 with the %d services running (on in every corral run above, first scraped\n", r.Services)
	fmt.Fprintf(w, "after them): 1 scrape unmeasured, %s without scrapes, then %d scrapes back to back, as Prometheus makes them (one\n", metricsInterval, metricsScrapes)
	fmt.Fprintf(w, "kept-alive connection, gzip); a scrape's CPU is the daemon's over the scrapes and %s after, less its idle rate.\n", metricsTail)
	r.printMetrics(w, metricsCostMetrics())
	idle, _, _ := medianOf(r.Corral, func(r Repetition) float64 { return r.MetricsIdleCPUMS })
	scrape, _, _ := medianOf(r.Corral, func(r Repetition) float64 { return r.ScrapeCPUMS })
	fmt.Fprintf(w, "(CPU share at one scrape every %s = (idle CPU per %s + CPU per scrape) / %s, of one core; from the medians:\n",
		metricsInterval, metricsInterval, metricsInterval)
	fmt.Fprintf(w, " (%s ms + %s ms) / %g ms = %.3f%%; %s.\n",
		trimFloat(idle), trimFloat(scrape), float64(metricsInterval.Milliseconds()), 100*(idle+scrape)/float64(metricsInterval.Milliseconds()),
		scrapeVsIdle(scrape, idle))
	fmt.Fprintf(w, " Daemon CPU: %s; latency: request sent to body read to its end; series: sample lines.)\n", r.Corral[0].MetricsCPUClock)
}

// scrapeVsIdle compares a scrape's CPU with the daemon's idle CPU over
// metricsInterval.
func scrapeVsIdle(scrape, idle float64) string {
	if idle == 0 {
		return fmt.Sprintf("the idle daemon used no CPU at all in %s: the share is the scrape's alone", metricsInterval)
	}
	return fmt.Sprintf("a scrape costs %s times the daemon's idle CPU over %s", trimFloat(scrape/idle), metricsInterval)
}

// printMetrics prints lines of the table: corral's median, s6's unless
// the line is corral's alone, and whether corral meets its goal.
func (r *Report) printMetrics(w io.Writer, metrics []metric) {
	for _, m := range metrics {
		goal := ""
		if m.goal != "" && len(r.Corral) > 0 {
			med, _, _ := medianOf(r.Corral, m.value)
			goal = m.goal + ": met"
			if !m.met(med) {
				goal = m.goal + ": NOT met"
			}
		}
		s6, runc := "-", "-"
		if !m.corralOnly {
			s6 = formatMedian(r.S6, m.value)
		}
		if m.runc {
			runc = formatMedian(r.Runc, m.value)
		}
		fmt.Fprintf(w, "%-38s %-24s %-24s %-24s %s\n", m.label, formatMedian(r.Corral, m.value), s6, runc, goal)
	}
}

// The performance issue's goals for 200 services: all running in at most
// 0.4 times runc's time and 3 times s6's; the daemon and the inits in at
// most 30 MB + 0.5 MB per sandbox of PSS.
const (
	runcRatioGoal = 0.4
	s6RatioGoal   = 3.0
	pssBaseGoal   = 30 * mb
	pssPerSandbox = mb / 2
)

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// printRatioGoals prints the goals that compare corral with the others,
// from the medians, each with met or NOT met: on the built-in root, and
// from one image.
func (r *Report) printRatioGoals(w io.Writer) {
	if len(r.Corral) == 0 {
		return
	}
	up := func(r Repetition) float64 { return r.UpS }
	corral, _, _ := medianOf(r.Corral, up)
	r.PrintUpGoals(w, "", corral)
	if len(r.Image) > 0 {
		image, lo, hi := medianOf(r.Image, up)
		down, _, _ := medianOf(r.Image, func(r Repetition) float64 { return r.DownS })
		fmt.Fprintf(w, "corral, every service from one image (busybox, imported once): all running %s s (%s-%s), stop all %s s\n",
			trimFloat(image), trimFloat(lo), trimFloat(hi), trimFloat(down))
		r.PrintUpGoals(w, " from one image", image)
	}
	pss, _, _ := medianOf(r.Corral, func(r Repetition) float64 { return float64(r.SupervisorPSS + r.InitsPSS) })
	goal := float64(pssBaseGoal) + float64(r.Services)*pssPerSandbox
	fmt.Fprintf(w, "daemon + inits PSS: %.1f MB (goal <= 30 MB + 0.5 MB x %d = %.0f MB: %s)\n", pss/mb, r.Services, goal/mb, verdict(pss <= goal))
}

// PrintUpGoals prints the goals for corral's time to all running, up
// (seconds, a median), against runc's and s6's medians of this part:
// what says which corral (" from one image", " on the bridge network").
func (r *Report) PrintUpGoals(w io.Writer, what string, up float64) {
	for _, other := range []struct {
		name string
		runs []Repetition
		goal float64
	}{{"runc run -d one by one", r.Runc, runcRatioGoal}, {"s6-svscan", r.S6, s6RatioGoal}} {
		if len(other.runs) == 0 {
			continue
		}
		o, _, _ := medianOf(other.runs, func(r Repetition) float64 { return r.UpS })
		if o <= 0 {
			continue
		}
		ratio := up / o
		fmt.Fprintf(w, "all running%s, corral / %s: %.2f (goal <= %g: %s)\n", what, other.name, ratio, other.goal, verdict(ratio <= other.goal))
	}
}
