package coldstart

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/spec"
)

// corral's flags must say what the runc bundle's resources say.
func TestFlagsMatchBundle(t *testing.T) {
	mem, err := spec.ParseBytes(MemoryFlag)
	if err != nil || mem != limitMemory {
		t.Errorf("--memory %s parses to %d, %v; the bundle has %d", MemoryFlag, mem, err, limitMemory)
	}
	cpus, err := spec.ParseCPUs(CPUsFlag)
	if err != nil || cpus != limitCPUs {
		t.Errorf("--cpus %s parses to %g, %v; the bundle has %g", CPUsFlag, cpus, err, limitCPUs)
	}
	if pids, err := strconv.Atoi(PidsFlag); err != nil || pids != limitPids {
		t.Errorf("--pids %s; the bundle has %d", PidsFlag, limitPids)
	}
	args := corralArgs("/c", "/s", "")
	want := []string{"/c", "--state-dir", "/s", "run", "--memory", "64M", "--cpus", "0.5", "--pids", "64", "--cgroup-parent", "/corral-bench", "--", "/bin/true"}
	if len(args) != len(want) {
		t.Fatalf("got %q, want %q", args, want)
	}
	for i := range want {
		if args[i] != want[i] {
			t.Fatalf("got %q, want %q", args, want)
		}
	}
}

// Every round runs each variant once; each variant leads one round in n.
func TestRotation(t *testing.T) {
	const n = 5
	for r := 0; r < 2*n; r++ {
		seen := map[int]bool{}
		for i := 0; i < n; i++ {
			seen[rotation(r, i, n)] = true
		}
		if len(seen) != n {
			t.Errorf("round %d runs %d of %d variants", r, len(seen), n)
		}
		if first := rotation(r, 0, n); first != r%n {
			t.Errorf("round %d starts with %d, want %d", r, first, r%n)
		}
	}
}

func TestReportVsRunc(t *testing.T) {
	variants := []*Variant{
		{name: "corral --rootfs busybox", argv: func(int) []string { return []string{"corral"} }},
		{name: "runc", argv: func(int) []string { return []string{"runc"} }},
	}
	r := newReport(Config{Rounds: 3, Warmup: 1}, variants, [][]time.Duration{ms(10, 30, 20), ms(40, 40, 50)})
	if c := r.find("corral --rootfs busybox"); c == nil || c.MedianMS != 20 || c.VsRunc != 0.5 {
		t.Errorf("corral: %+v; want median 20, 0.5 of runc's", c)
	}
	if c := r.find("runc"); c == nil || c.VsRunc != 1 || len(c.SamplesMS) != 3 {
		t.Errorf("runc: %+v", c)
	}
}

// The goal lines judge the rounds' own ratios, against runc and crun.
func TestReportPrintsGoalVerdicts(t *testing.T) {
	variant := func(name string) *Variant {
		return &Variant{name: name, argv: func(int) []string { return []string{name} }}
	}
	variants := []*Variant{variant("corral --rootfs busybox"), variant("runc"), variant("crun")}
	r := newReport(Config{Rounds: 3, Warmup: 1}, variants, [][]time.Duration{ms(20, 30, 25), ms(50, 50, 50), ms(25, 25, 25)})
	var out strings.Builder
	r.Print(&out)
	for _, want := range []string{
		"corral --rootfs busybox / runc: 0.50x (95% CI 0.40-0.60; goal <= 0.50x: met at the median, within noise)",
		"corral --rootfs busybox / crun: 1.00x (95% CI 0.80-1.20; goal <= 1.00x: met at the median, within noise)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "corral (host root) / runc") {
		t.Errorf("a goal line for a variant that did not run:\n%s", out.String())
	}
}

// ms is the samples v, in milliseconds.
func ms(v ...int) []time.Duration {
	var out []time.Duration
	for _, x := range v {
		out = append(out, time.Duration(x)*time.Millisecond)
	}
	return out
}
