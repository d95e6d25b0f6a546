package restart

import (
	"fmt"
	"io"
	"sort"
	"time"

	"github.com/corral-dev/corral/integration/bench/daemon"
	"github.com/corral-dev/corral/integration/bench/stats"
)

// Result is one line of the table.
type Result struct {
	Name string `json:"name"`
	Note string `json:"note"`
	stats.Summary
	// VsCorral is the median over corral's restart median.
	VsCorral  float64   `json:"vs_corral"`
	SamplesMS []float64 `json:"samples_ms"`
}

// Phases split corral's restart, each measured from the kill: when the
// daemon had reaped and destroyed the old sandbox (the exit's time in its
// event), when it had the new one running (its "running" event), and when
// the new command wrote its stamp.
type Phases struct {
	Matched   int           `json:"matched"`
	Reaped    stats.Summary `json:"reaped"`
	Running   stats.Summary `json:"running"`
	Stamped   stats.Summary `json:"stamped"`
	Unmatched int           `json:"unmatched"`
}

// Report is the restart part's result.
type Report struct {
	Warmup  int      `json:"warmup_rounds"`
	Kills   int      `json:"kills"`
	GapMS   float64  `json:"gap_ms"`
	Results []Result `json:"results"`
	Phases  *Phases  `json:"corral_phases,omitempty"`
	// OverColdMS is corral's restart median minus the median cold start
	// of `corral run /bin/true` measured in the same rounds.
	OverColdMS float64 `json:"corral_minus_cold_ms"`
	GoalMS     float64 `json:"goal_ms"`
}

func newReport(cfg Config, rows []*row, kills []time.Time, events []daemon.Event) *Report {
	r := &Report{Warmup: warmup, Kills: cfg.Kills, GapMS: stats.MS(gap), GoalMS: goalMS}
	for _, row := range rows {
		r.Results = append(r.Results, Result{Name: row.name, Note: row.note,
			Summary: stats.Summarize(row.samples), SamplesMS: stats.MSList(row.samples)})
	}
	corral, cold := r.find("corral daemon"), r.find("corral run /bin/true")
	if corral != nil && corral.MedianMS > 0 {
		corralMedian := corral.MedianMS
		for i := range r.Results {
			r.Results[i].VsCorral = r.Results[i].MedianMS / corralMedian
		}
	}
	if corral != nil && cold != nil {
		r.OverColdMS = corral.MedianMS - cold.MedianMS
	}
	var stamped []time.Duration
	for _, row := range rows {
		if row.name == "corral daemon" {
			stamped = row.samples
		}
	}
	r.Phases = phases(kills, stamped, events)
	return r
}

// phases matches each kill of corral's sandbox with the daemon's events
// that follow it: the first running → starting move (whose exit was
// recorded once the old sandbox was destroyed) and the first move to
// running.
func phases(kills []time.Time, stamped []time.Duration, events []daemon.Event) *Phases {
	var evs []daemon.Event
	for _, e := range events {
		if e.Service == service {
			evs = append(evs, e)
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].Time.Before(evs[j].Time) })
	p := &Phases{}
	var reaped, running, stamps []time.Duration
	for i, t0 := range kills {
		var exitAt, runAt time.Time
		for _, e := range evs {
			if !e.Time.After(t0) {
				continue
			}
			if exitAt.IsZero() && e.From == "running" && e.To == "starting" && e.Exit != nil {
				exitAt = e.Exit.Time
			}
			if runAt.IsZero() && e.To == "running" {
				runAt = e.Time
			}
		}
		if exitAt.IsZero() || runAt.IsZero() || i >= len(stamped) {
			p.Unmatched++
			continue
		}
		reaped = append(reaped, exitAt.Sub(t0))
		running = append(running, runAt.Sub(t0))
		stamps = append(stamps, stamped[i])
	}
	p.Matched = len(reaped)
	p.Reaped, p.Running, p.Stamped = stats.Summarize(reaped), stats.Summarize(running), stats.Summarize(stamps)
	return p
}

func (r *Report) find(name string) *Result {
	for i := range r.Results {
		if r.Results[i].Name == name {
			return &r.Results[i]
		}
	}
	return nil
}

// Print writes the table, corral's phases and the goal.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\nRestart after SIGKILL: from the bench's kill(2) to the new service process's own start time\n")
	fmt.Fprintf(w, "(the service is `sh -c '%s'`; date's time, written to a file: through a rw bind mount for corral)\n", stampScript("FILE", serviceCommand))
	fmt.Fprintf(w, "%-26s %5s %8s %8s %8s %8s %9s  %s\n", "supervisor", "runs", "p50 ms", "p95 ms", "min ms", "max ms", "x corral", "notes")
	for _, v := range r.Results {
		fmt.Fprintf(w, "%-26s %5d %8.2f %8.2f %8.2f %8.2f %9.2f  %s\n", v.Name, v.Runs, v.MedianMS, v.P95MS, v.MinMS, v.MaxMS, v.VsCorral, v.Note)
	}
	if p := r.Phases; p != nil && p.Matched > 0 {
		fmt.Fprintf(w, "\ncorral restart phases, from the kill (p50 / p95 ms; times from the daemon's events, %d of %d kills matched):\n", p.Matched, p.Matched+p.Unmatched)
		fmt.Fprintf(w, "  old sandbox reaped and destroyed (exit recorded)  %7.2f / %7.2f\n", p.Reaped.MedianMS, p.Reaped.P95MS)
		fmt.Fprintf(w, "  new sandbox created and started (\"running\")      %7.2f / %7.2f\n", p.Running.MedianMS, p.Running.P95MS)
		fmt.Fprintf(w, "  new command's stamp                               %7.2f / %7.2f\n", p.Stamped.MedianMS, p.Stamped.P95MS)
	}
	if corral, cold := r.find("corral daemon"), r.find("corral run /bin/true"); corral != nil && cold != nil {
		verdict := "met"
		if r.OverColdMS > r.GoalMS {
			verdict = "NOT met"
		}
		fmt.Fprintf(w, "\ncorral restart p50 %.2f ms - cold `corral run /bin/true` median %.2f ms = %+.2f ms (goal <= %+.0f ms: %s)\n",
			corral.MedianMS, cold.MedianMS, r.OverColdMS, r.GoalMS, verdict)
	}
}
