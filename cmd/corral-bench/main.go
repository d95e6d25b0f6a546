// Command corral-bench measures corral beside the tools users would pick
// instead, in the same run: absolute times drift on shared machines, so
// rounds are interleaved and the results that count are ratios and
// differences of medians. It has three parts, run in this order:
//
//   - cold: start-to-exit of /bin/true in a corral sandbox beside runc
//     (and, where they work, crun and unshare) given the same isolation.
//   - restart: a supervised service is SIGKILLed; the time until its
//     replacement runs, for the corral daemon (a new sandbox), supervisord
//     and s6 (no sandbox), kills interleaved, beside a cold `corral run`.
//   - scale: a daemon with N services (default 200): time until all run,
//     memory (PSS), idle wake-ups and CPU, the CPU its metrics endpoint
//     costs (idle and per scrape), time to stop them all; beside
//     s6-svscan with the same services.
//
// Usage:
//
//	corral-bench --corral bin/corral [--only cold|restart|scale]
//	             [--rounds 200] [--warmup 5] [--kills 40] [--scale 200]
//	             [--json FILE] [--runc runc] [--crun crun|""] [--scratch-base /var/tmp]
//
// It must run as root. It makes everything it uses in a scratch dir and
// under the cgroup /corral-bench, starts the daemons and supervisors it
// measures itself and stops them by their PID, and removes all of it
// before it exits.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type options struct {
	corral      string
	runc        string
	crun        string
	rounds      int
	warmup      int
	kills       int
	scale       int
	only        string
	jsonPath    string
	scratchBase string
}

// The parts of the bench, in the order they run.
var parts = []string{"cold", "restart", "scale"}

func (o *options) runs(part string) bool { return o.only == "" || o.only == part }

func main() {
	o := parseFlags()
	ctx, stop := signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fmt.Fprintln(os.Stderr, "corral-bench:", err)
		os.Exit(1)
	}
}

func parseFlags() *options {
	o := &options{}
	flag.StringVar(&o.corral, "corral", "bin/corral", "the corral binary to measure")
	flag.StringVar(&o.runc, "runc", "runc", "the runc binary to compare with")
	flag.StringVar(&o.crun, "crun", "crun", "the crun binary to compare with (empty: skip crun)")
	flag.IntVar(&o.rounds, "rounds", 200, "measured rounds; each runs every variant once")
	flag.IntVar(&o.warmup, "warmup", 5, "unmeasured cold-start rounds run first")
	flag.IntVar(&o.kills, "kills", 40, "restart: measured kills of each supervisor's service")
	flag.IntVar(&o.scale, "scale", 200, "scale: the number of services")
	flag.StringVar(&o.only, "only", "", "run one part only: "+strings.Join(parts, ", ")+" (default: all)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.scratchBase, "scratch-base", "/var/tmp", "directory under which the scratch dir is made")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "corral-bench: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	return o
}

func run(ctx context.Context, o *options) (err error) {
	if o.rounds < 1 || o.warmup < 0 || o.kills < 1 || o.scale < 1 {
		return fmt.Errorf("--rounds, --kills and --scale must be at least 1 and --warmup at least 0")
	}
	if o.only != "" && !slices.Contains(parts, o.only) {
		return fmt.Errorf("--only %q: use one of %s", o.only, strings.Join(parts, ", "))
	}
	if os.Geteuid() != 0 {
		return errors.New("must run as root: every variant makes namespaces and cgroups")
	}
	corral, err := filepath.Abs(o.corral)
	if err != nil {
		return fmt.Errorf("--corral %s: %w", o.corral, err)
	}
	if _, err := os.Stat(corral); err != nil {
		return fmt.Errorf("--corral: %w (build it with: make build)", err)
	}
	o.corral = corral

	sc, err := newScratch(o.scratchBase, filepath.Dir(corral))
	if err != nil {
		return err
	}
	var variants []*variant
	cs := &children{}
	// Clean-up runs however the benchmark ends, and its failure is reported
	// even after a successful measurement: a leftover is a bug to fix.
	defer func() { err = errors.Join(err, cleanup(sc, variants, cs)) }()

	if err := sc.populate(); err != nil {
		return err
	}
	if err := makeCgroupParent(cgroupParent); err != nil {
		return err
	}
	res := &results{Machine: describeMachine(o, sc), OthersCPU: map[string]float64{}}
	printMachine(os.Stdout, res.Machine)
	// What other jobs on the machine did meanwhile is shown after each
	// part: on a shared machine, a part that ran beside a busy job is to
	// be run again.
	others := snapshotOthers()
	if o.runs("cold") {
		variants, res.Cold, err = runCold(ctx, o, sc)
		if err != nil {
			return err
		}
		res.Cold.print(os.Stdout)
		res.OthersCPU["cold"] = printLoad("cold", &others)
	}
	if o.runs("restart") {
		if res.Restart, err = runRestart(ctx, o, sc, cs); err != nil {
			return err
		}
		res.Restart.print(os.Stdout)
		res.OthersCPU["restart"] = printLoad("restart", &others)
	}
	if o.runs("scale") {
		if res.Scale, err = runScale(ctx, o, sc, cs); err != nil {
			return err
		}
		res.Scale.print(os.Stdout)
		res.OthersCPU["scale"] = printLoad("scale", &others)
	}
	if o.jsonPath != "" {
		res.Time = time.Now().UTC()
		if err := res.writeJSON(o.jsonPath); err != nil {
			return err
		}
	}
	return nil
}

// runCold is the cold start-to-exit part: every variant once per round.
func runCold(ctx context.Context, o *options, sc *scratch) ([]*variant, *report, error) {
	if err := makeBusyboxRoot(sc.rootfs()); err != nil {
		return nil, nil, err
	}
	variants, notes, err := setupVariants(o, sc)
	if err != nil {
		return variants, nil, err
	}
	fmt.Println()
	for _, n := range notes {
		fmt.Println(n)
	}
	fmt.Printf("cold: %d warm-up + %d measured rounds, each running every variant once in a rotating order\n", o.warmup, o.rounds)
	samples, err := measure(ctx, variants, o.warmup, o.rounds)
	if err != nil {
		return variants, nil, err
	}
	return variants, newReport(o, variants, samples), nil
}
