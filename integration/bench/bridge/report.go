package bridge

import (
	"fmt"
	"io"
	"time"

	"github.com/corral-dev/corral/integration/bench/stats"
)

// Issue 15's goals.
const (
	// StartGoalMS is what --network bridge may add to a start, at the
	// median of the rounds' differences.
	StartGoalMS = 5.0
	// ThroughputGoal is the least a published port's throughput may be,
	// over loopback's without a sandbox.
	ThroughputGoal = 0.8
	// RTTGoalUS is what a published port may add to a round trip.
	RTTGoalUS = 50.0
)

// Report is the bridge part's result.
type Report struct {
	Bridge   string   `json:"bridge"`
	Subnet   string   `json:"subnet"`
	HostAddr string   `json:"host_addr"`
	Start    *Start   `json:"start,omitempty"`
	Scale    *Scale   `json:"scale,omitempty"`
	Traffic  *Traffic `json:"traffic,omitempty"`
}

// Start is `corral run` of a command that only opens a FIFO (the bench
// holds its other end), with --network bridge and with --network none, in
// interleaved rounds: timed to the command running (the goal) and to the
// run's exit, the network's teardown included.
type Start struct {
	Warmup int     `json:"warmup_rounds"`
	Rounds int     `json:"rounds"`
	GoalMS float64 `json:"goal_ms"`
	// Up is from the fork of corral to the sandbox's command running;
	// Exit to corral's exit, everything torn down.
	Up   Phase `json:"to_running"`
	Exit Phase `json:"to_exit"`
}

// Phase is one measure of the start, for both networks.
type Phase struct {
	None     stats.Summary `json:"none"`
	Bridge   stats.Summary `json:"bridge"`
	NoneMS   []float64     `json:"none_samples_ms"`
	BridgeMS []float64     `json:"bridge_samples_ms"`
	// AddedMS is the median of the rounds' differences, bridge - none,
	// within AddedLoMS..AddedHiMS with 95% confidence.
	AddedMS   float64 `json:"added_ms"`
	AddedLoMS float64 `json:"added_lo_ms"`
	AddedHiMS float64 `json:"added_hi_ms"`
}

func newPhase(none, bridge []time.Duration) Phase {
	p := Phase{None: stats.Summarize(none), Bridge: stats.Summarize(bridge),
		NoneMS: stats.MSList(none), BridgeMS: stats.MSList(bridge)}
	p.AddedMS, p.AddedLoMS, p.AddedHiMS = stats.PairedMedian(p.BridgeMS, p.NoneMS)
	return p
}

func newStart(warmup int, noneUp, bridgeUp, noneExit, bridgeExit []time.Duration) *Start {
	return &Start{Warmup: warmup, Rounds: len(noneUp), GoalMS: StartGoalMS,
		Up: newPhase(noneUp, bridgeUp), Exit: newPhase(noneExit, bridgeExit)}
}

// Scale is a daemon of Services services, all with network: none or all
// with network: bridge, each started and stopped Reps times.
type Scale struct {
	Services int        `json:"services"`
	Reps     int        `json:"repetitions"`
	None     []ScaleRun `json:"none"`
	Bridge   []ScaleRun `json:"bridge"`
	Notes    []string   `json:"notes,omitempty"`
}

// ScaleRun is one daemon's run.
type ScaleRun struct {
	// UpS is from the daemon's fork to every service's command exec'd;
	// FirstUpS to the first one.
	UpS           float64 `json:"up_s"`
	FirstUpS      float64 `json:"first_up_s"`
	StartFailures int     `json:"start_failures"`
	// DownS is from SIGTERM to the daemon's exit, every sandbox gone.
	DownS float64 `json:"down_s"`
}

// Traffic is TCP through a published port against loopback without a
// sandbox, in interleaved rounds: each round measures every path once.
type Traffic struct {
	Rounds    int     `json:"rounds"`
	WindowS   float64 `json:"window_s"`
	PingPongs int     `json:"ping_pongs"`
	Paths     []Path  `json:"paths"`
	GoalRatio float64 `json:"goal_ratio"`
	GoalRTTUS float64 `json:"goal_rtt_added_us"`
}

// Path is one way to the server, its figures of each round, and (but
// for the baseline, the first) how they compare with the baseline's.
type Path struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	// MBps is each round's throughput, MB (10^6 bytes) a second; RTTUS
	// each round's median round trip, µs.
	MBps  []float64 `json:"mb_per_s"`
	RTTUS []float64 `json:"rtt_us"`
	// Ratio is the median of the rounds' throughput over the
	// baseline's; AddedUS that of their RTT less the baseline's; each
	// with its 95% interval.
	Ratio     float64 `json:"vs_loopback"`
	RatioLo   float64 `json:"vs_loopback_lo"`
	RatioHi   float64 `json:"vs_loopback_hi"`
	AddedUS   float64 `json:"rtt_added_us"`
	AddedLoUS float64 `json:"rtt_added_lo_us"`
	AddedHiUS float64 `json:"rtt_added_hi_us"`
}

// compare fills in how each path compares with the first, round by round.
func (t *Traffic) compare() {
	if len(t.Paths) == 0 {
		return
	}
	base := t.Paths[0]
	for i := range t.Paths {
		p := &t.Paths[i]
		p.Ratio, p.RatioLo, p.RatioHi = stats.PairedRatio(p.MBps, base.MBps)
		p.AddedUS, p.AddedLoUS, p.AddedHiUS = stats.PairedMedian(p.RTTUS, base.RTTUS)
	}
}

// verdict says whether a figure meets its goal.
func verdict(met bool) string {
	if met {
		return "met"
	}
	return "NOT met"
}

// Print writes the three tables and their verdicts.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nBridge network (issue 15): corral in a network namespace of the bench's, bridge %s, subnet %s, the host's address %s\n",
		r.Bridge, r.Subnet, r.HostAddr)
	if s := r.Start; s != nil {
		fmt.Fprintf(w, "\n`corral run` of a command that opens a FIFO and exits, %d warm-up + %d measured rounds, the two networks interleaved\n", s.Warmup, s.Rounds)
		fmt.Fprintf(w, "%-30s %5s %10s %8s %8s\n", "network", "runs", "median ms", "p95 ms", "min ms")
		for _, v := range []struct {
			name string
			s    stats.Summary
		}{{"none, to running", s.Up.None}, {"bridge, to running", s.Up.Bridge}, {"none, to exit", s.Exit.None}, {"bridge, to exit", s.Exit.Bridge}} {
			fmt.Fprintf(w, "%-30s %5d %10.2f %8.2f %8.2f\n", v.name, v.s.Runs, v.s.MedianMS, v.s.P95MS, v.s.MinMS)
		}
		fmt.Fprintf(w, "bridge start cost, to the command running: %+.2f ms the median of the rounds' differences (95%% CI %+.2f..%+.2f; goal <= %.0f ms: %s)\n",
			s.Up.AddedMS, s.Up.AddedLoMS, s.Up.AddedHiMS, s.GoalMS, verdict(s.Up.AddedMS <= s.GoalMS))
		fmt.Fprintf(w, "bridge cost, to the run's exit (teardown of the veth, rules and conntrack included; no goal): %+.2f ms (95%% CI %+.2f..%+.2f)\n",
			s.Exit.AddedMS, s.Exit.AddedLoMS, s.Exit.AddedHiMS)
	}
	if s := r.Scale; s != nil {
		s.print(w)
	}
	if t := r.Traffic; t != nil {
		t.print(w)
	}
}

func (s *Scale) print(w io.Writer) {
	fmt.Fprintf(w, "\nScale: one daemon of %d services running `/bin/sleep`, all network none or all bridge, each started and stopped %d times (alternating); median (min-max)\n",
		s.Services, s.Reps)
	fmt.Fprintf(w, "%-38s %-24s %-24s %s\n", "", "none", "bridge", "bridge/none")
	for _, m := range []struct {
		label string
		value func(ScaleRun) float64
	}{
		{"all running, from the fork (s)", func(r ScaleRun) float64 { return r.UpS }},
		{"first running (s)", func(r ScaleRun) float64 { return r.FirstUpS }},
		{"failed starts, retried", func(r ScaleRun) float64 { return float64(r.StartFailures) }},
		{"stop all: SIGTERM to all gone (s)", func(r ScaleRun) float64 { return r.DownS }},
	} {
		none, nlo, nhi := scaleMedian(s.None, m.value)
		bridge, blo, bhi := scaleMedian(s.Bridge, m.value)
		ratio := "-"
		if none > 0 {
			ratio = fmt.Sprintf("%.2f", bridge/none)
		}
		fmt.Fprintf(w, "%-38s %-24s %-24s %s\n", m.label, formatRange(none, nlo, nhi, len(s.None)), formatRange(bridge, blo, bhi, len(s.Bridge)), ratio)
	}
	fmt.Fprintln(w, "(no goal in the issue: the ratio of the medians is printed. running: the service's command has exec'd, the kernel's exec event.)")
	for _, n := range s.Notes {
		fmt.Fprintln(w, n)
	}
}

// BridgeUp is the median time to all running on the bridge network, in
// seconds (0: no run).
func (s *Scale) BridgeUp() float64 {
	up, _, _ := scaleMedian(s.Bridge, func(r ScaleRun) float64 { return r.UpS })
	return up
}

func scaleMedian(runs []ScaleRun, value func(ScaleRun) float64) (med, lo, hi float64) {
	v := make([]float64, len(runs))
	for i, r := range runs {
		v[i] = value(r)
	}
	med, _, _ = stats.MedianCI(v)
	if len(v) == 0 {
		return 0, 0, 0
	}
	lo, hi = v[0], v[0]
	for _, x := range v {
		lo, hi = min(lo, x), max(hi, x)
	}
	return med, lo, hi
}

func formatRange(med, lo, hi float64, n int) string {
	switch {
	case n == 0:
		return "-"
	case n == 1 || lo == hi:
		return fmt.Sprintf("%.2f", med)
	}
	return fmt.Sprintf("%.2f (%.2f-%.2f)", med, lo, hi)
}

func (t *Traffic) print(w io.Writer) {
	fmt.Fprintf(w, "\nTCP through a published port (sandbox port 80 as 8080) against the same server on loopback without a sandbox;\n")
	fmt.Fprintf(w, "%d rounds, each path once a round in a rotating order: %.0f s of sending for the throughput, %d one-byte ping-pongs for the RTT\n",
		t.Rounds, t.WindowS, t.PingPongs)
	fmt.Fprintf(w, "%-34s %-22s %9s %22s %9s %24s\n", "path", "address", "MB/s", "vs loopback (95% CI)", "RTT us", "added us (95% CI)")
	for i, p := range t.Paths {
		mb, _, _ := stats.MedianCI(p.MBps)
		rtt, _, _ := stats.MedianCI(p.RTTUS)
		vs, added := "-", "-"
		if i > 0 {
			vs = fmt.Sprintf("%.2f (%.2f..%.2f)", p.Ratio, p.RatioLo, p.RatioHi)
			added = fmt.Sprintf("%+.1f (%+.1f..%+.1f)", p.AddedUS, p.AddedLoUS, p.AddedHiUS)
		}
		fmt.Fprintf(w, "%-34s %-22s %9.0f %22s %9.1f %24s\n", p.Name, p.Addr, mb, vs, rtt, added)
	}
	for _, p := range t.Paths[min(1, len(t.Paths)):] {
		fmt.Fprintf(w, "%s: throughput vs loopback %.2f (goal >= %.1f: %s); RTT added %+.1f us (goal <= %.0f us: %s)\n",
			p.Name, p.Ratio, t.GoalRatio, verdict(p.Ratio >= t.GoalRatio), p.AddedUS, t.GoalRTTUS, verdict(p.AddedUS <= t.GoalRTTUS))
	}
	fmt.Fprintln(w, "(ratios and added RTT: the median over the rounds of each round's figure against the same round's loopback figure.")
	fmt.Fprintln(w, " MB/s: bytes the server read / from the first write to its count received; RTT: the median of a round's ping-pongs.)")
}
