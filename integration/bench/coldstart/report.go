package coldstart

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/corral-dev/corral/integration/bench/stats"
)

// goalRatio is the target for corral's median start-to-exit time as a
// fraction of runc's with the same isolation and Docker's profile, and
// crunGoalRatio as a fraction of crun's (the performance issue's goals).
const (
	goalRatio     = 0.50
	crunGoalRatio = 1.00
)

// UsernsGoalMS is what a sandbox's own user namespace (with the id-mapped
// mount of a directory root) may add to a start, at the median.
const UsernsGoalMS = 2.0

// VariantResult is one line of the table.
type VariantResult struct {
	Name    string   `json:"name"`
	Note    string   `json:"note"`
	Command []string `json:"command"`
	stats.Summary
	// VsRunc is the median over runc's median.
	VsRunc    float64   `json:"vs_runc"`
	SamplesMS []float64 `json:"samples_ms"`
}

// Report is the cold part's result.
type Report struct {
	Warmup   int             `json:"warmup_rounds"`
	Rounds   int             `json:"rounds"`
	Variants []VariantResult `json:"variants"`
	Goal     float64         `json:"goal_ratio"`
}

func newReport(cfg Config, variants []*Variant, samples [][]time.Duration) *Report {
	r := &Report{Warmup: cfg.Warmup, Rounds: cfg.Rounds, Goal: goalRatio}
	for i, v := range variants {
		r.Variants = append(r.Variants, VariantResult{
			Name: v.name, Note: v.note, Command: v.argv(1),
			Summary: stats.Summarize(samples[i]), SamplesMS: stats.MSList(samples[i]),
		})
	}
	if runc := r.find("runc"); runc != nil && runc.MedianMS > 0 {
		runcMedian := runc.MedianMS
		for i := range r.Variants {
			r.Variants[i].VsRunc = r.Variants[i].MedianMS / runcMedian
		}
	}
	return r
}

func (r *Report) find(name string) *VariantResult {
	for i := range r.Variants {
		if r.Variants[i].Name == name {
			return &r.Variants[i]
		}
	}
	return nil
}

// Print writes the table, the ratios against the goal and the commands.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintf(w, "Cold start-to-exit of /bin/true (memory %s, %s CPU, %s pids)\n", MemoryFlag, CPUsFlag, PidsFlag)
	fmt.Fprintf(w, "%-38s %5s %10s %8s %8s %8s  %s\n", "variant", "runs", "median ms", "p95 ms", "min ms", "vs runc", "notes")
	for _, v := range r.Variants {
		fmt.Fprintf(w, "%-38s %5d %10.2f %8.2f %8.2f %8.2f  %s\n", v.Name, v.Runs, v.MedianMS, v.P95MS, v.MinMS, v.VsRunc, v.Note)
	}
	fmt.Fprintln(w)
	// The goals are judged on the same busybox root as runc's and crun's;
	// the built-in root (what `corral run` gives without --rootfs) is
	// shown beside it. Each ratio is the median of the rounds' own (every
	// round runs each variant once), with its 95% interval.
	for _, g := range []struct {
		variant, base string
		goal          float64
		note          string
	}{
		{"corral --rootfs busybox", "runc", r.Goal, "  [same root; runc with Docker's seccomp profile]"},
		{"corral (host root)", "runc", r.Goal, ""},
		{"corral --rootfs busybox", "crun", crunGoalRatio, "  [same root]"},
	} {
		if line := r.ratioGoal(g.variant, g.base, g.goal); line != "" {
			fmt.Fprintln(w, line+g.note)
		}
	}
	// What the user namespace costs: the same variant with and without
	// it (issue 13's goal: at most 2 ms at the median).
	for _, name := range []string{"corral (host root)", "corral --rootfs busybox"} {
		with, without := r.find(name), r.find(name+" --userns host")
		if with != nil && without != nil {
			// The median of the rounds' differences (see stats.PairedMedian):
			// a few ms of start cost is small beside a busy machine's spread,
			// and its interval says whether the rounds settle it.
			m, lo, hi := stats.PairedMedian(with.SamplesMS, without.SamplesMS)
			verdict := "met"
			if m > UsernsGoalMS {
				verdict = "NOT met"
			}
			fmt.Fprintf(w, "user namespace cost, %s: %+.2f ms the median of the rounds' differences (95%% CI %+.2f..%+.2f; goal <= %.0f ms: %s), %+.2f ms between the medians\n",
				name, m, lo, hi, UsernsGoalMS, verdict, with.MedianMS-without.MedianMS)
		}
	}
	if img, host := r.find("corral --image busybox"), r.find("corral (host root)"); img != nil && host != nil && host.MedianMS > 0 {
		fmt.Fprintf(w, "corral --image busybox / corral (host root) median ratio: %.2f (goal <= %.2f)\n", img.MedianMS/host.MedianMS, ImageGoalRatio)
	}
	fmt.Fprintln(w, "\ncommands (run 1):")
	for _, v := range r.Variants {
		fmt.Fprintf(w, "  %-38s %s\n", v.Name+":", strings.Join(v.Command, " "))
	}
}

// ratioGoal is the line that judges variant's time over base's against
// goal, or "" if either is missing.
func (r *Report) ratioGoal(variant, base string, goal float64) string {
	v, b := r.find(variant), r.find(base)
	if v == nil || b == nil {
		return ""
	}
	m, lo, hi := stats.PairedRatio(v.SamplesMS, b.SamplesMS)
	return fmt.Sprintf("%s / %s: %.2fx (95%% CI %.2f-%.2f; goal <= %.2fx: %s)", variant, base, m, lo, hi, goal, stats.RatioVerdict(m, lo, hi, goal))
}
