package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"

	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/scratch"
	"github.com/corral-dev/corral/integration/bench/stats"
)

// Config is what the oci part is told.
type Config struct {
	Corral string // the corral binary, an absolute path
	Runc   string // the runc binary
	Crun   string // the crun binary; "" leaves crun out
	Rounds int
	Warmup int
	// SuiteModule is the runtime-tools module (integration/ocicompliance);
	// "" leaves the compliance counts out. GoBin builds it.
	SuiteModule string
	GoBin       string
	// CtrRounds is how many rounds of `ctr run --rm` through containerd
	// (0: none).
	CtrRounds int
}

// Report is the oci part's result.
type Report struct {
	Rounds  int                      `json:"rounds"`
	Medians map[string]time.Duration `json:"medians_ns"`
	// Ratios are each runtime's time over runc's in the same round, the
	// median over the rounds (a round runs every runtime once, close in
	// time, so the ratio leaves out most of what the machine's other
	// load adds to both), with its 95% confidence interval in RatioCIs.
	Ratios   map[string]float64    `json:"ratios_to_runc"`
	RatioCIs map[string][2]float64 `json:"ratio_cis_to_runc"`
	Order    []string              `json:"order"`
	// Compliance is the runtime-tools counts per runtime.
	Compliance map[string]Counts `json:"compliance,omitempty"`
	// CtrMedians are `ctr run --rm` of /bin/true through containerd's
	// runc shim with each runtime, CtrRatios over runc's.
	CtrRounds  int                      `json:"ctr_rounds,omitempty"`
	CtrMedians map[string]time.Duration `json:"ctr_medians_ns,omitempty"`
	CtrRatios  map[string]float64       `json:"ctr_ratios_to_runc,omitempty"`
	CtrCIs     map[string][2]float64    `json:"ctr_ratio_cis_to_runc,omitempty"`
	Notes      []string                 `json:"notes,omitempty"`
}

type runner struct {
	name, bin, root, bundle string
	n                       int
}

// Run times `run` of /bin/true (create, start, wait, delete) with
// corral-runc, runc and crun from one bundle, interleaved, then runs the
// validation suite with corral and runc. Progress goes to w.
func Run(ctx context.Context, cfg Config, sc *scratch.Dir, w io.Writer) (*Report, error) {
	rep := &Report{Rounds: cfg.Rounds, Medians: map[string]time.Duration{}}
	corralRunc := sc.Path("corral-runc")
	if err := os.Symlink(cfg.Corral, corralRunc); err != nil {
		return nil, err
	}
	runc, err := exec.LookPath(cfg.Runc)
	if err != nil {
		return nil, fmt.Errorf("runc: %w", err)
	}
	runners := []*runner{{name: "corral-runc", bin: corralRunc}, {name: "runc", bin: runc}}
	if cfg.Crun != "" {
		if crun, err := exec.LookPath(cfg.Crun); err == nil {
			runners = append(runners, &runner{name: "crun", bin: crun})
		} else {
			rep.Notes = append(rep.Notes, "crun: not installed")
		}
	}
	rootfs := sc.Path("oci-rootfs")
	if err := busyboxRoot(rootfs); err != nil {
		return nil, err
	}
	for _, r := range runners {
		r.root = sc.Path("oci-state-" + r.name)
		if r.bundle, err = writeBundle(sc.Path("oci-bundle-"+r.name), rootfs, cgroupfs.Parent+"/oci-"+r.name); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, r := range runners {
			r.sweep()
		}
	}()
	// crun is a reference: one that cannot run here (crun 1.8 refuses a
	// hybrid cgroup hierarchy) is left out with a note, not an error.
	if len(runners) == 3 {
		if _, err := runners[2].once(); err != nil {
			rep.Notes = append(rep.Notes, "crun: unavailable here: "+err.Error())
			runners[2].sweep()
			runners = runners[:2]
		}
	}
	fmt.Fprintf(w, "\noci: run of /bin/true (create, start, wait, delete) with %d warm-up + %d measured rounds, runtimes in a rotating order\n", cfg.Warmup, cfg.Rounds)
	samples := make([][]time.Duration, len(runners))
	for round := 0; round < cfg.Warmup+cfg.Rounds; round++ {
		for i := range runners {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			k := (round + i) % len(runners)
			d, err := runners[k].once()
			if err != nil {
				return nil, err
			}
			if round >= cfg.Warmup {
				samples[k] = append(samples[k], d)
			}
		}
	}
	byName := map[string][]time.Duration{}
	for i, r := range runners {
		rep.Order = append(rep.Order, r.name)
		rep.Medians[r.name] = median(samples[i])
		byName[r.name] = samples[i]
	}
	rep.Ratios, rep.RatioCIs = pairedRatios(byName, "runc")
	if cfg.CtrRounds > 0 {
		bins := map[string]string{}
		for _, r := range runners {
			bins[r.name] = r.bin
		}
		ctrSamples, note, err := ctrRun(ctx, sc, bins, rep.Order, cfg.CtrRounds, min(cfg.Warmup, 3), w)
		if err != nil {
			return nil, err
		}
		if note != "" {
			rep.Notes = append(rep.Notes, note)
		} else {
			rep.CtrRounds, rep.CtrMedians = cfg.CtrRounds, map[string]time.Duration{}
			for name, s := range ctrSamples {
				rep.CtrMedians[name] = median(s)
			}
			rep.CtrRatios, rep.CtrCIs = pairedRatios(ctrSamples, "runc")
		}
	}
	if cfg.SuiteModule != "" {
		if rep.Compliance, err = compliance(ctx, cfg, sc, corralRunc, runc, w); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// once runs the runtime's run with a new container id and times it, from
// before the fork to after the wait.
func (r *runner) once() (time.Duration, error) {
	r.n++
	id := "bench-" + strconv.Itoa(r.n)
	cmd := exec.Command(r.bin, "--root", r.root, "run", "--bundle", r.bundle, id)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	start := time.Now()
	err := cmd.Run()
	d := time.Since(start)
	if err != nil {
		return 0, fmt.Errorf("%s run %s: %w: %s", r.name, id, err, strings.TrimSpace(stderr.String()))
	}
	return d, nil
}

// sweep deletes what an interrupted run left in the runtime's state.
func (r *runner) sweep() {
	ents, _ := os.ReadDir(r.root)
	for _, e := range ents {
		_ = exec.Command(r.bin, "--root", r.root, "delete", "--force", e.Name()).Run()
	}
}

// pairedRatios is each runtime's stats.PairedRatio over base: samples
// hold one time per round, in round order, for every runtime.
func pairedRatios(samples map[string][]time.Duration, base string) (map[string]float64, map[string][2]float64) {
	ratios, cis := map[string]float64{}, map[string][2]float64{}
	b := seconds(samples[base])
	for name, s := range samples {
		m, lo, hi := stats.PairedRatio(seconds(s), b)
		ratios[name], cis[name] = m, [2]float64{lo, hi}
	}
	return ratios, cis
}

func seconds(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = d.Seconds()
	}
	return out
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// busyboxRoot is a root holding the host's static busybox as /bin/true.
func busyboxRoot(dir string) error {
	bb, err := exec.LookPath("busybox")
	if err != nil {
		return fmt.Errorf("busybox: %w (apt-get install busybox-static)", err)
	}
	data, err := os.ReadFile(bb)
	if err != nil {
		return err
	}
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "bin", "busybox"), data, 0o755); err != nil {
		return err
	}
	return os.Symlink("busybox", filepath.Join(dir, "bin", "true"))
}

// writeBundle writes the one config.json every runtime gets: runc's
// example spec (namespaces, capabilities, masked paths; no seccomp) with
// /bin/true and no terminal, at spec version 1.0.2, which Debian's runc
// and crun accept.
func writeBundle(dir, rootfs, cgroupsPath string) (string, error) {
	s := specconv.Example()
	s.Version = "1.0.2"
	s.Root.Path = rootfs
	s.Process.Args = []string{"/bin/true"}
	s.Process.Terminal = false
	s.Linux.CgroupsPath = cgroupsPath
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
}

// compliance runs the validation suite with corral and runc.
func compliance(ctx context.Context, cfg Config, sc *scratch.Dir, corralRunc, runc string, w io.Writer) (map[string]Counts, error) {
	dir := sc.Path("oci-suite")
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, err
	}
	fmt.Fprintln(w, "oci: building the runtime-tools validation suite")
	suite, err := Build(ctx, cfg.GoBin, cfg.SuiteModule, dir)
	if err != nil {
		return nil, err
	}
	runtimes := []Runtime{
		{Name: "runc", Bin: runc, Root: sc.Path("oci-suite-runc"), CgroupParent: cgroupfs.Parent + "/oci-suite-runc"},
		{Name: "corral", Bin: corralRunc, Root: sc.Path("oci-suite-corral"), CgroupParent: cgroupfs.Parent + "/oci-suite-corral"},
	}
	out := map[string]Counts{}
	var errs []error
	for _, rt := range runtimes {
		var programs []*Program
		for _, name := range suite.Programs {
			p, err := suite.RunProgram(ctx, name, rt, 2*time.Minute)
			if err != nil {
				errs = append(errs, err)
				break
			}
			programs = append(programs, p)
		}
		out[rt.Name] = Count(programs)
		(&runner{bin: rt.Bin, root: rt.Root}).sweep()
	}
	return out, errors.Join(errs...)
}

// Print writes the report as a table.
func (r *Report) Print(w io.Writer) {
	fmt.Fprintf(w, "\noci: median of %d runs of /bin/true (create, start, wait, delete); ratio: median of each round's time over runc's, 95%% CI\n", r.Rounds)
	for _, name := range r.Order {
		fmt.Fprintf(w, "  %-12s %8.1f ms  %.2fx runc (%.2f-%.2f)\n", name, float64(r.Medians[name])/1e6, r.Ratios[name], r.RatioCIs[name][0], r.RatioCIs[name][1])
	}
	if len(r.CtrMedians) > 0 {
		fmt.Fprintf(w, "oci: median of %d `ctr run --rm` of /bin/true through containerd's runc shim (--runc-binary); ratio as above\n", r.CtrRounds)
		for _, name := range r.Order {
			if m, ok := r.CtrMedians[name]; ok {
				fmt.Fprintf(w, "  %-12s %8.1f ms  %.2fx runc (%.2f-%.2f)\n", name, float64(m)/1e6, r.CtrRatios[name], r.CtrCIs[name][0], r.CtrCIs[name][1])
			}
		}
		ratio, ci := r.CtrRatios["corral-runc"], r.CtrCIs["corral-runc"]
		fmt.Fprintf(w, "  corral-runc through containerd: %.2fx runc, 95%% CI %.2f-%.2f (goal <= 1.0x: %s)\n", ratio, ci[0], ci[1], stats.RatioVerdict(ratio, ci[0], ci[1], 1.0))
	}
	for _, name := range []string{"runc", "corral"} {
		if c, ok := r.Compliance[name]; ok {
			fmt.Fprintf(w, "  runtime-tools %-7s %d/%d passed (%d skipped), %d/%d programs completed\n",
				name, c.Passed, c.Total(), c.Skipped, c.ProgramsCompleted, c.Programs)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "  note:", n)
	}
}
