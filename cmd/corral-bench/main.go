// Command corral-bench measures corral beside the tools users would pick
// instead, in the same run: absolute times drift on shared machines, so
// rounds are interleaved and the results that count are ratios and
// differences of medians. It has five parts, run in this order, each a
// package under integration/bench:
//
//   - cold (coldstart): start-to-exit of /bin/true in a corral sandbox
//     beside runc (and, where they work, crun and unshare) given the same
//     isolation.
//   - restart: a supervised service is SIGKILLed; the time until its
//     replacement runs, for the corral daemon (a new sandbox), supervisord
//     and s6 (no sandbox), kills interleaved, beside a cold `corral run`.
//   - scale: a daemon with N services (default 200): time until every
//     service's command has exec'd, memory (PSS), idle wake-ups and CPU,
//     the CPU its metrics endpoint costs (idle and per scrape), time to
//     stop them all; beside s6-svscan with the same services.
//   - images (imports): import of a 100 MB image beside umoci unpack and
//     skopeo copy; then the disk used by 100 services from one image
//     under one daemon, beside a copy of its root per service.
//   - bridge: issue 15's network, in a network namespace the bench makes:
//     `corral run` with --network bridge beside none; a daemon of N
//     bridge services beside N with network none; TCP throughput and
//     round trips through a published port (DNAT and the loopback
//     proxy) beside loopback without a sandbox.
//   - oci: corral as an OCI runtime (corral-runc): `run` of /bin/true
//     (create, start, wait, delete) beside runc's and crun's, from one
//     bundle; then the runtime-tools validation suite's pass counts with
//     corral and with runc.
//
// Usage:
//
//	corral-bench --corral bin/corral [--only cold,restart,scale,images,bridge,oci]
//	             [--rounds 200] [--warmup 5] [--kills 40] [--scale 200]
//	             [--image-rounds 5] [--image-services 100]
//	             [--bridge-services 200] [--traffic-rounds 10]
//	             [--json FILE] [--runc runc] [--crun crun|""] [--scratch-base /var/tmp] [--scratch-tmpfs=true]
//	             [--oci-suite integration/ocicompliance|""] [--go go]
//
// With CORRAL_BENCH_SERVE=ADDR in its environment, it is instead the
// bridge part's TCP server on ADDR (see bridge.ServeEnv).
//
// It must run as root. It makes everything it uses in a scratch dir and
// under the cgroup /corral-bench, starts the daemons and supervisors it
// measures itself and stops them by their PID, and removes all of it
// before it exits.
package main

import (
	"context"
	"encoding/json"
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

	"github.com/corral-dev/corral/integration/bench/bridge"
	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/child"
	"github.com/corral-dev/corral/integration/bench/coldstart"
	"github.com/corral-dev/corral/integration/bench/imports"
	"github.com/corral-dev/corral/integration/bench/machine"
	"github.com/corral-dev/corral/integration/bench/oci"
	"github.com/corral-dev/corral/integration/bench/restart"
	"github.com/corral-dev/corral/integration/bench/scale"
	"github.com/corral-dev/corral/integration/bench/scratch"
)

type options struct {
	corral       string
	runc         string
	crun         string
	rounds       int
	warmup       int
	kills        int
	scale        int
	imageRounds  int
	imageSvcs    int
	bridgeSvcs   int
	traffic      int
	only         string
	jsonPath     string
	scratchBase  string
	scratchTmpfs bool
	ociSuite     string
	ctrRounds    int
	goBin        string
}

// The parts of the bench, in the order they run.
var parts = []string{"cold", "restart", "scale", "images", "bridge", "oci"}

func (o *options) runs(part string) bool {
	return o.only == "" || slices.Contains(strings.Split(o.only, ","), part)
}

func main() {
	if addr, ok := os.LookupEnv(bridge.ServeEnv); ok {
		os.Exit(bridge.ServeMain(addr))
	}
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
	flag.IntVar(&o.imageRounds, "image-rounds", 5, "images: rounds of importing the 100 MB image with each tool")
	flag.IntVar(&o.imageSvcs, "image-services", 100, "images: services run from the image to measure the disk they use")
	flag.IntVar(&o.bridgeSvcs, "bridge-services", 200, fmt.Sprintf("bridge: the services of its daemons (at most %d)", bridge.MaxServices))
	flag.IntVar(&o.traffic, "traffic-rounds", 10, "bridge: rounds of TCP throughput and round trips through each path")
	flag.StringVar(&o.only, "only", "", "run only these parts, comma-separated: "+strings.Join(parts, ", ")+" (default: all)")
	flag.StringVar(&o.jsonPath, "json", "", "also write the results as JSON to this file")
	flag.StringVar(&o.scratchBase, "scratch-base", "/var/tmp", "directory under which the scratch dir is made")
	flag.BoolVar(&o.scratchTmpfs, "scratch-tmpfs", true, "mount a tmpfs on the scratch dir: every tool's state dir on a tmpfs, as /run is on a typical host (false: the base's filesystem)")
	flag.StringVar(&o.goBin, "go", "go", "oci: the go command that builds the validation suite")
	flag.IntVar(&o.ctrRounds, "ctr-rounds", 20, "oci: rounds of `ctr run --rm` through containerd (0: none)")
	flag.StringVar(&o.ociSuite, "oci-suite", "integration/ocicompliance", "oci: the runtime-tools module whose validation suite is run (empty: skip it)")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "corral-bench: unexpected arguments %q\n", flag.Args())
		flag.Usage()
		os.Exit(2)
	}
	return o
}

// results are everything the bench measured, for --json.
type results struct {
	Time    time.Time         `json:"time"`
	Machine machine.Machine   `json:"machine"`
	Cold    *coldstart.Report `json:"cold,omitempty"`
	Restart *restart.Report   `json:"restart,omitempty"`
	Scale   *scale.Report     `json:"scale,omitempty"`
	Images  *imports.Report   `json:"images,omitempty"`
	Bridge  *bridge.Report    `json:"bridge,omitempty"`
	OCI     *oci.Report       `json:"oci,omitempty"`
	// OthersCPU is, for each part, the share of the machine's CPU that
	// processes other than the bench's used while it ran.
	OthersCPU map[string]float64 `json:"others_cpu_share"`
}

func run(ctx context.Context, o *options) (err error) {
	if o.rounds < 1 || o.warmup < 0 || o.kills < 1 || o.scale < 1 || o.imageRounds < 1 || o.imageSvcs < 1 || o.bridgeSvcs < 1 || o.traffic < 1 {
		return fmt.Errorf("--rounds, --kills, --scale, --image-rounds, --image-services, --bridge-services and --traffic-rounds must be at least 1 and --warmup at least 0")
	}
	if o.only != "" {
		for _, p := range strings.Split(o.only, ",") {
			if !slices.Contains(parts, p) {
				return fmt.Errorf("--only %q: %q is no part; use some of %s, comma-separated", o.only, p, strings.Join(parts, ", "))
			}
		}
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

	sc, err := scratch.New(o.scratchBase, filepath.Dir(corral), o.scratchTmpfs)
	if err != nil {
		return err
	}
	g := &child.Group{}
	// Clean-up runs however the benchmark ends, and its failure is reported
	// even after a successful measurement: a leftover is a bug to fix.
	defer func() { err = errors.Join(err, cleanup(sc, g)) }()
	if err := cgroupfs.MakeParent(); err != nil {
		return err
	}
	res := &results{OthersCPU: map[string]float64{}}
	res.Machine = machine.Describe(machine.Tools{Corral: corral, Runc: o.runc, Crun: o.crun}, sc.String()+" ("+sc.FSType()+")")
	res.Machine.Print(os.Stdout)
	// What other jobs on the machine did meanwhile is shown after each
	// part: on a shared machine, a part that ran beside a busy job is to
	// be run again.
	others := machine.WatchOthers()
	if o.runs("cold") {
		cfg := coldstart.Config{Corral: corral, Runc: o.runc, Crun: o.crun, Rounds: o.rounds, Warmup: o.warmup}
		if res.Cold, err = coldstart.Run(ctx, cfg, sc, os.Stdout); err != nil {
			return err
		}
		res.Cold.Print(os.Stdout)
		res.OthersCPU["cold"] = others.PrintPart(os.Stdout, "cold")
	}
	if o.runs("restart") {
		if res.Restart, err = restart.Run(ctx, restart.Config{Corral: corral, Kills: o.kills}, sc, g, os.Stdout); err != nil {
			return err
		}
		res.Restart.Print(os.Stdout)
		res.OthersCPU["restart"] = others.PrintPart(os.Stdout, "restart")
	}
	if o.runs("scale") {
		if res.Scale, err = scale.Run(ctx, scale.Config{Corral: corral, Runc: o.runc, Services: o.scale}, sc, g, os.Stdout); err != nil {
			return err
		}
		res.Scale.Print(os.Stdout)
		res.OthersCPU["scale"] = others.PrintPart(os.Stdout, "scale")
	}
	if o.runs("images") {
		cfg := imports.Config{Corral: corral, Rounds: o.imageRounds, Layers: 4, LayerBytes: 25 << 20, Services: o.imageSvcs}
		if res.Images, err = imports.Run(ctx, cfg, sc, g, os.Stdout); err != nil {
			return err
		}
		res.Images.Print(os.Stdout)
		res.OthersCPU["images"] = others.PrintPart(os.Stdout, "images")
	}
	if o.runs("bridge") {
		cfg := bridge.Config{Corral: corral, Rounds: o.rounds, Warmup: o.warmup, Services: o.bridgeSvcs, TrafficRounds: o.traffic}
		if res.Bridge, err = bridge.Run(ctx, cfg, sc, g, os.Stdout); err != nil {
			return err
		}
		res.Bridge.Print(os.Stdout)
		// The performance issue's goals for 200 services hold on the
		// bridge too: against the scale part's runc and s6, if it ran.
		if res.Scale != nil && res.Bridge.Scale != nil && res.Bridge.Scale.BridgeUp() > 0 {
			fmt.Println()
			res.Scale.PrintUpGoals(os.Stdout, fmt.Sprintf(" on the bridge network (the bridge part's %d services)", res.Bridge.Scale.Services), res.Bridge.Scale.BridgeUp())
		}
		res.OthersCPU["bridge"] = others.PrintPart(os.Stdout, "bridge")
	}
	if o.runs("oci") {
		cfg := oci.Config{Corral: corral, Runc: o.runc, Crun: o.crun, Rounds: o.rounds, Warmup: o.warmup, SuiteModule: o.ociSuite, GoBin: o.goBin, CtrRounds: o.ctrRounds}
		if res.OCI, err = oci.Run(ctx, cfg, sc, os.Stdout); err != nil {
			return err
		}
		res.OCI.Print(os.Stdout)
		res.OthersCPU["oci"] = others.PrintPart(os.Stdout, "oci")
	}
	if o.jsonPath != "" {
		res.Time = time.Now().UTC()
		if err := writeJSON(o.jsonPath, res); err != nil {
			return err
		}
	}
	return nil
}

func writeJSON(path string, r *results) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}

// cleanup removes everything the bench made that its parts did not:
// daemons and supervisors still running, the cgroups under
// cgroupfs.Parent, and the scratch dir. (The cold part removes what the
// runtimes it runs may leave in their own state itself.) It goes on after
// a failure, so that one leftover does not hide or cause others, and
// returns them all.
func cleanup(sc *scratch.Dir, g *child.Group) error {
	var errs []error
	if err := g.StopAll(); err != nil {
		errs = append(errs, err)
	}
	if err := cgroupfs.Remove(cgroupfs.Parent); err != nil {
		errs = append(errs, err)
	}
	if left, _ := filepath.Glob("/sys/fs/cgroup/*" + cgroupfs.Parent + "*"); len(left) > 0 {
		errs = append(errs, fmt.Errorf("cgroups left behind: %s", strings.Join(left, ", ")))
	}
	// corral removes its sandboxes itself; a record left in its state dir
	// means it did not, and the state is kept for `corral --state-dir` to
	// sweep and for someone to look at.
	if left := sc.Leftovers(); len(left) > 0 {
		errs = append(errs, fmt.Errorf("corral left sandbox records %s; scratch dir %s kept", strings.Join(left, ", "), sc))
	} else if err := sc.Remove(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
