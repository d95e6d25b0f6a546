// Package metrics exports the services' figures to Prometheus: a
// registry that asks the daemon for every service once per scrape and
// writes them, with the daemon's own Go and process series, in
// Prometheus' text format, and the HTTP endpoint that serves them.
//
// It writes the text format itself rather than through client_golang:
// this binary is also every sandbox's init and every corral-runc command,
// and client_golang's package init (its default registry's Go and
// process collectors, procfs' and the runtime metrics' descriptions)
// cost ~0.85 ms of each of those starts (corral --version 4.68 -> 3.83
// ms, interleaved medians of 400), for series the daemon writes once per
// scrape. The tests parse and lint the output with client_golang's own
// parser and linter.
//
// Series (the service label is the service's name):
//
//	corral_service_up{service}                           gauge    1 while a sandbox runs, else 0
//	corral_service_state{service,state}                  gauge    1 for the current supervisor state, 0 for every other
//	corral_service_restarts_total{service,reason}        counter  restarts by reason class (every class always present)
//	corral_service_oom_kills_total{service}              counter  processes the kernel OOM killer killed
//	corral_service_last_exit_code{service}               gauge    exit status of the last sandbox (128+signal); only after one ended
//	corral_service_healthy{service}                      gauge    1 healthy, 0 unhealthy or starting; only with a health check
//	corral_service_cpu_seconds_total{service}            counter  CPU time of the running sandbox (*)
//	corral_service_memory_bytes{service}                 gauge    memory in use (*)
//	corral_service_memory_limit_bytes{service}           gauge    memory limit (*); only with a limit
//	corral_service_pids{service}                         gauge    tasks in the sandbox (*)
//	corral_service_pids_limit{service}                   gauge    pids limit (*); only with a limit
//	corral_service_cpu_throttled_seconds_total{service}  counter  CPU time held back by the CPU quota (*)
//	corral_service_log_lines_lost_total{service}         counter  output lines the sandbox could not write to its log
//	corral_service_network_receive_bytes_total{service}  counter  bytes the sandbox received on the bridge (+)
//	corral_service_network_transmit_bytes_total{service} counter  bytes the sandbox sent on the bridge (+)
//	corral_service_egress_denied_packets_total{service}  counter  packets its egress list refused (+); only with a list
//	corral_services{state}                               gauge    services in each state (every state always present)
//	corral_build_info{version}                           gauge    always 1
//
// (*) read from the sandbox's cgroup: present only while a sandbox runs,
// and, as counters, they start again from 0 with each new sandbox.
// (+) read from the sandbox's veth and the bridge's nftables counters: the
// same, for a sandbox on the bridge (network: bridge).
package metrics

import (
	"io"
	"maps"
	"slices"
)

// Service is one service's figures at scrape time (the daemon fills it).
type Service struct {
	Name string
	// State is the supervisor's word: one of States.
	State string
	// Up: a sandbox runs.
	Up bool
	// Restarts counts restarts by reason class (see RestartReasons);
	// classes missing from the map are exported as 0.
	Restarts map[string]uint64
	// OOMKills is the total over the service's life in this daemon.
	OOMKills uint64
	// LastExitCode is the exit status of the last sandbox (128+signal),
	// valid when HasExited.
	LastExitCode int
	HasExited    bool
	// Health is "" (no check), "healthy", "unhealthy" or "starting".
	Health string

	// The cgroup figures, valid when HasCgroup (a sandbox runs).
	CPUSeconds          float64
	MemoryBytes         uint64
	MemoryLimitBytes    uint64 // 0: no limit
	PidsCurrent         uint64
	PidsLimit           uint64 // 0: no limit
	CPUThrottledSeconds float64
	HasCgroup           bool

	// LogLinesLost counts output lines the sandbox could not write to its log.
	LogLinesLost uint64

	// The bridge figures, valid when OnBridge (a sandbox runs on it);
	// EgressDenied also needs Restricted (it has an egress list).
	OnBridge         bool
	RxBytes, TxBytes uint64
	Restricted       bool
	EgressDenied     uint64
}

// States are the supervisor states, each always exported by
// corral_service_state and corral_services.
var States = []string{"starting", "running", "backoff", "crashloop", "stopping", "stopped", "failed"}

// RestartReasons are the reason classes of a restart, each always
// exported by corral_service_restarts_total.
var RestartReasons = []string{"exit", "signal", "oom", "pids_limit", "unhealthy", "start_failed", "operator", "stop_timeout"}

// Registry writes corral's series, and the daemon's Go and process
// series, at each scrape.
type Registry struct {
	services func() []Service
	version  string
}

// NewRegistry returns the registry of corral's series, which calls
// services once per scrape. version is the daemon's build, exported as
// corral_build_info.
func NewRegistry(services func() []Service, version string) *Registry {
	return &Registry{services: services, version: version}
}

// family is one metric family: its name, help, type and label names.
type family struct {
	name, help string
	counter    bool
	labels     []string
}

func gaugeFamily(name, help string, labels ...string) *family {
	return &family{name: name, help: help, labels: labels}
}

func counterFamily(name, help string, labels ...string) *family {
	return &family{name: name, help: help, counter: true, labels: labels}
}

var (
	upFamily = gaugeFamily("corral_service_up",
		"Whether a sandbox of the service runs (1) or not (0).", "service")
	stateFamily = gaugeFamily("corral_service_state",
		"The service's supervisor state: 1 for the current state, 0 for the others.", "service", "state")
	restartsFamily = counterFamily("corral_service_restarts_total",
		"Restarts of the service by reason class (exit, signal, oom, pids_limit, unhealthy, start_failed, operator, stop_timeout).", "service", "reason")
	oomKillsFamily = counterFamily("corral_service_oom_kills_total",
		"Processes of the service the kernel OOM killer killed, over its life in this daemon.", "service")
	lastExitFamily = gaugeFamily("corral_service_last_exit_code",
		"Exit status of the service's last sandbox (128+signal when killed); absent until one ended.", "service")
	healthyFamily = gaugeFamily("corral_service_healthy",
		"Whether the service's health check passes (1) or not, or not yet (0); absent without a check.", "service")
	cpuFamily = counterFamily("corral_service_cpu_seconds_total",
		"CPU time used by the service's running sandbox; absent while none runs.", "service")
	memoryFamily = gaugeFamily("corral_service_memory_bytes",
		"Memory in use by the service's running sandbox; absent while none runs.", "service")
	memoryLimitFamily = gaugeFamily("corral_service_memory_limit_bytes",
		"Memory limit of the service's running sandbox; absent without a limit or a sandbox.", "service")
	pidsFamily = gaugeFamily("corral_service_pids",
		"Tasks (processes and threads) in the service's running sandbox; absent while none runs.", "service")
	pidsLimitFamily = gaugeFamily("corral_service_pids_limit",
		"Pids limit of the service's running sandbox; absent without a limit or a sandbox.", "service")
	throttledFamily = counterFamily("corral_service_cpu_throttled_seconds_total",
		"CPU time the CPU quota held back from the service's running sandbox; absent while none runs.", "service")
	logLostFamily = counterFamily("corral_service_log_lines_lost_total",
		"Output lines the service's sandbox could not write to its log.", "service")
	rxFamily = counterFamily("corral_service_network_receive_bytes_total",
		"Bytes the service's running sandbox received on the bridge; absent off the bridge or while none runs.", "service")
	txFamily = counterFamily("corral_service_network_transmit_bytes_total",
		"Bytes the service's running sandbox sent on the bridge; absent off the bridge or while none runs.", "service")
	deniedFamily = counterFamily("corral_service_egress_denied_packets_total",
		"Packets of the service's running sandbox its egress list refused; absent without a list.", "service")
	servicesFamily = gaugeFamily("corral_services",
		"Services in each supervisor state.", "state")
	buildInfoFamily = gaugeFamily("corral_build_info",
		"The corral build (always 1).", "version")

	// families is the order of the output.
	families = []*family{
		upFamily, stateFamily, restartsFamily, oomKillsFamily, lastExitFamily, healthyFamily,
		cpuFamily, memoryFamily, memoryLimitFamily, pidsFamily, pidsLimitFamily, throttledFamily,
		logLostFamily, rxFamily, txFamily, deniedFamily, servicesFamily, buildInfoFamily,
	}
)

// WriteTo writes every series once, corral's from one call of services,
// then the daemon's Go and process series.
func (r *Registry) WriteTo(w io.Writer) (int64, error) {
	t := newText()
	samples := r.collect()
	for _, f := range families {
		t.family(f, samples[f])
	}
	writeRuntime(t)
	return t.WriteTo(w)
}

// sample is one series' label values and value.
type sample struct {
	labels []string
	value  float64
}

// collect builds corral's samples, by family, from one call of services.
func (r *Registry) collect() map[*family][]sample {
	out := map[*family][]sample{}
	add := func(f *family, v float64, labels ...string) {
		out[f] = append(out[f], sample{labels: labels, value: v})
	}

	counts := make(map[string]int, len(States))
	for _, st := range States {
		counts[st] = 0
	}
	for _, s := range r.services() {
		if s.State != "" {
			counts[s.State]++
		}

		add(upFamily, boolValue(s.Up), s.Name)
		for _, st := range withExtra(States, s.State) {
			add(stateFamily, boolValue(st == s.State), s.Name, st)
		}
		for _, reason := range withExtra(RestartReasons, slices.Sorted(maps.Keys(s.Restarts))...) {
			add(restartsFamily, float64(s.Restarts[reason]), s.Name, reason)
		}
		add(oomKillsFamily, float64(s.OOMKills), s.Name)
		if s.HasExited {
			add(lastExitFamily, float64(s.LastExitCode), s.Name)
		}
		if s.Health != "" {
			add(healthyFamily, boolValue(s.Health == "healthy"), s.Name)
		}
		if s.HasCgroup {
			add(cpuFamily, s.CPUSeconds, s.Name)
			add(memoryFamily, float64(s.MemoryBytes), s.Name)
			if s.MemoryLimitBytes > 0 {
				add(memoryLimitFamily, float64(s.MemoryLimitBytes), s.Name)
			}
			add(pidsFamily, float64(s.PidsCurrent), s.Name)
			if s.PidsLimit > 0 {
				add(pidsLimitFamily, float64(s.PidsLimit), s.Name)
			}
			add(throttledFamily, s.CPUThrottledSeconds, s.Name)
		}
		add(logLostFamily, float64(s.LogLinesLost), s.Name)
		if s.OnBridge {
			add(rxFamily, float64(s.RxBytes), s.Name)
			add(txFamily, float64(s.TxBytes), s.Name)
			if s.Restricted {
				add(deniedFamily, float64(s.EgressDenied), s.Name)
			}
		}
	}
	for _, st := range slices.Sorted(maps.Keys(counts)) {
		add(servicesFamily, float64(counts[st]), st)
	}
	add(buildInfoFamily, 1, r.version)
	return out
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// withExtra returns known followed by the non-empty values of extra it
// lacks, so a state or reason this package does not know yet is still
// exported.
func withExtra(known []string, extra ...string) []string {
	out := slices.Clone(known)
	for _, e := range extra {
		if e != "" && !slices.Contains(out, e) {
			out = append(out, e)
		}
	}
	return out
}
