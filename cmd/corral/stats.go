package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/spec"
)

// minStatsInterval keeps a refresh from hammering the daemon.
const minStatsInterval = 100 * time.Millisecond

// clearScreen moves the cursor home and clears the terminal.
const clearScreen = "\x1b[H\x1b[2J"

const statsLong = `Show the services' resource use, as docker stats does:

  CPU %              CPU time the sandbox used over the interval, over the
                     interval's length (100% is one whole CPU)
  MEM USAGE / LIMIT  memory in use, and the memory limit
  MEM %              memory in use as a share of the limit
  PIDS               tasks (processes and threads), and the pids limit
  THROTTLED          CPU time the CPU quota has held back since the sandbox
                     started

A "-" is a figure that does not exist: no sandbox runs, there is no limit,
or the sandbox (re)started within the interval, so its CPU % is not known
yet. With NAMEs, only those services are shown, in that order.`

const statsExit = `

Exit codes: 3 if a NAME is not a service, 4 if the daemon cannot be reached.`

func newStatsCommand(g *globalOptions) *cobra.Command {
	o := statsOptions{interval: time.Second}
	cmd := &cobra.Command{
		Use:   "stats [NAME...] [--no-stream] [--json]",
		Short: "Show the services' CPU %, memory, pids and throttled CPU time, refreshed until Ctrl-C",
		Long: statsLong + `

The table is refreshed every interval until Ctrl-C: in place on a terminal,
one table after another otherwise. --no-stream prints one table, after one
interval. --json prints each table as a JSON array on one line, without
cpu_percent (or memory_percent) where that figure does not exist.` + statsExit,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.names = args
			return o.run(g)
		},
	}
	cmd.Flags().BoolVar(&o.noStream, "no-stream", false, "print one table, after one interval, and exit")
	cmd.Flags().BoolVar(&o.json, "json", false, "print each table as a JSON array on one line")
	cmd.Flags().DurationVar(&o.interval, "interval", o.interval, "time between two samples (at least 100ms)")
	return cmd
}

func newTopCommand(g *globalOptions) *cobra.Command {
	o := statsOptions{interval: time.Second, byCPU: true}
	cmd := &cobra.Command{
		Use:   "top [NAME...]",
		Short: "Show the services busiest first, by CPU %, refreshed until Ctrl-C",
		Long: statsLong + `

top is 'corral stats' with the busiest services first: the rows are sorted by
CPU %, highest first, and refreshed every interval until Ctrl-C (in place on a
terminal, one table after another otherwise).` + statsExit,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.names = args
			return o.run(g)
		},
	}
	cmd.Flags().DurationVar(&o.interval, "interval", o.interval, "time between two samples (at least 100ms)")
	return cmd
}

// statsOptions are the settings of stats and top.
type statsOptions struct {
	names    []string
	interval time.Duration
	noStream bool
	json     bool
	byCPU    bool // sort by CPU %, highest first (top)
	clear    bool // clear the screen before each table
}

func (o statsOptions) run(g *globalOptions) error {
	if o.interval < minStatsInterval {
		return &exitError{code: exitCorralError, err: fmt.Errorf("--interval %s: use at least %s", o.interval, minStatsInterval)}
	}
	o.clear = !o.json && isTerminal(os.Stdout)
	ctx, cancel := signalContext()
	defer cancel()
	if err := runStats(ctx, api.NewClient(g.socketPath()).List, o, os.Stdout); err != nil {
		return ctlError(err)
	}
	return nil
}

// runStats samples list every interval and prints a table of each pair of
// samples to w, until ctx ends (then it returns nil) or, with noStream,
// after the first table.
func runStats(ctx context.Context, list func(context.Context) ([]api.Service, error), o statsOptions, w io.Writer) error {
	take := func() (statsSample, error) {
		start := time.Now()
		l, err := list(ctx)
		// The daemon read the counters somewhere in the call: take its middle.
		return statsSample{at: start.Add(time.Since(start) / 2), list: l}, err
	}
	prev, err := take()
	if err != nil {
		return stopped(ctx, err)
	}
	if _, err := pick(prev.list, o.names); err != nil {
		return err
	}
	tick := time.NewTicker(o.interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		cur, err := take()
		if err != nil {
			return stopped(ctx, err)
		}
		rows, err := statsRows(prev, cur, o.names)
		if err != nil {
			return err
		}
		if o.byCPU {
			sortByCPU(rows)
		}
		if err := o.print(w, rows); err != nil {
			return err
		}
		if o.noStream {
			return nil
		}
		prev = cur
	}
}

// stopped is err, or nil if it came from the user's Ctrl-C.
func stopped(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// print writes one table (or JSON line) in one write, so a terminal never
// shows half of one.
func (o statsOptions) print(w io.Writer, rows []statsRow) error {
	var b bytes.Buffer
	if o.json {
		if err := json.NewEncoder(&b).Encode(rows); err != nil {
			return err
		}
	} else {
		if o.clear {
			b.WriteString(clearScreen)
		}
		printStats(&b, rows)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// statsSample is one answer of the daemon, and when it was given.
type statsSample struct {
	at   time.Time
	list []api.Service
}

// statsRow is one service's line of `corral stats`.
type statsRow struct {
	Name    string `json:"name"`
	State   string `json:"state"`
	Running bool   `json:"running"`
	// CPUPercent is nil when not known: no sandbox runs, or it was not
	// the same sandbox at both samples.
	CPUPercent  *float64 `json:"cpu_percent,omitempty"`
	MemoryUsage uint64   `json:"memory_usage"`
	MemoryLimit uint64   `json:"memory_limit"`
	// MemoryPercent is nil without a limit or a sandbox.
	MemoryPercent *float64      `json:"memory_percent,omitempty"`
	PidsCurrent   uint64        `json:"pids_current"`
	PidsLimit     uint64        `json:"pids_limit"`
	CPUThrottled  time.Duration `json:"cpu_throttled"`
}

// statsRows compares two samples: one row per service of cur (or per
// name, in the order given).
func statsRows(prev, cur statsSample, names []string) ([]statsRow, error) {
	list, err := pick(cur.list, names)
	if err != nil {
		return nil, err
	}
	before := make(map[string]api.Service, len(prev.list))
	for _, s := range prev.list {
		before[s.Name] = s
	}
	rows := make([]statsRow, 0, len(list))
	for _, s := range list {
		r := statsRow{Name: s.Name, State: s.State, Running: s.PID != 0}
		if r.Running {
			r.MemoryUsage, r.MemoryLimit = s.MemoryUsage, s.MemoryLimit
			r.PidsCurrent, r.PidsLimit = s.PidsCurrent, s.PidsLimit
			r.CPUThrottled = s.CPUThrottled
			if p, ok := before[s.Name]; ok {
				if pct, ok := cpuPercent(p, s, cur.at.Sub(prev.at)); ok {
					r.CPUPercent = &pct
				}
			}
			if s.MemoryLimit > 0 {
				pct := float64(s.MemoryUsage) / float64(s.MemoryLimit) * 100
				r.MemoryPercent = &pct
			}
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// pick returns the services named, in that order and each once, or all of
// list without names. A name not in list is an api.ErrNotFound.
func pick(list []api.Service, names []string) ([]api.Service, error) {
	if len(names) == 0 {
		return list, nil
	}
	var out []api.Service
	var seen []string
	for _, n := range names {
		if slices.Contains(seen, n) {
			continue
		}
		seen = append(seen, n)
		i := slices.IndexFunc(list, func(s api.Service) bool { return s.Name == n })
		if i < 0 {
			return nil, fmt.Errorf("service %q %w", n, api.ErrNotFound)
		}
		out = append(out, list[i])
	}
	return out, nil
}

// cpuPercent is the CPU the service used between two samples elapsed
// apart, in percent of one CPU. It is not known (false) unless the same
// sandbox ran at both.
func cpuPercent(prev, cur api.Service, elapsed time.Duration) (float64, bool) {
	same := prev.PID != 0 && prev.PID == cur.PID && prev.StartedAt.Equal(cur.StartedAt)
	if !same || elapsed <= 0 || cur.CPUUsage < prev.CPUUsage {
		return 0, false
	}
	return float64(cur.CPUUsage-prev.CPUUsage) / float64(elapsed) * 100, true
}

// sortByCPU puts the busiest first, those of unknown CPU % last, and
// otherwise keeps the order by name.
func sortByCPU(rows []statsRow) {
	slices.SortStableFunc(rows, func(a, b statsRow) int {
		switch {
		case a.CPUPercent == nil && b.CPUPercent == nil:
		case a.CPUPercent == nil:
			return 1
		case b.CPUPercent == nil:
			return -1
		case *a.CPUPercent > *b.CPUPercent:
			return -1
		case *a.CPUPercent < *b.CPUPercent:
			return 1
		}
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
}

func printStats(w io.Writer, rows []statsRow) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSTATE\tCPU %\tMEM USAGE / LIMIT\tMEM %\tPIDS\tTHROTTLED")
	for _, r := range rows {
		mem, pids, throttled := "-", "-", "-"
		if r.Running {
			mem = spec.FormatBytes(int64(r.MemoryUsage)) + " / " + formatLimit(r.MemoryLimit, func(n uint64) string { return spec.FormatBytes(int64(n)) })
			pids = fmt.Sprint(r.PidsCurrent) + " / " + formatLimit(r.PidsLimit, func(n uint64) string { return fmt.Sprint(n) })
			throttled = r.CPUThrottled.Round(time.Millisecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.State, formatPercent(r.CPUPercent), mem, formatPercent(r.MemoryPercent), pids, throttled)
	}
	tw.Flush()
}

// formatPercent is "12.34%", or "-" when not known.
func formatPercent(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f%%", *p)
}

// formatLimit is the limit n, or "-" for none (0).
func formatLimit(n uint64, format func(uint64) string) string {
	if n == 0 {
		return "-"
	}
	return format(n)
}

// isTerminal reports whether f is a terminal.
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
