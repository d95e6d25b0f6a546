package coldstart

import (
	"strconv"
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
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
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

func TestPairedMedian(t *testing.T) {
	for _, tc := range []struct {
		a, b           []float64
		median, lo, hi float64
	}{
		{[]float64{10, 20, 30}, []float64{9, 18, 31}, 1, -1, 2},
		{[]float64{10, 20, 30, 40}, []float64{9, 18, 27, 36}, 2.5, 1, 4},
		{nil, nil, 0, 0, 0},
	} {
		if m, lo, hi := pairedMedian(tc.a, tc.b); m != tc.median || lo != tc.lo || hi != tc.hi {
			t.Errorf("pairedMedian(%v, %v) = %v [%v, %v], want %v [%v, %v]", tc.a, tc.b, m, lo, hi, tc.median, tc.lo, tc.hi)
		}
	}
	// 100 rounds whose differences are 1..100: the median 50.5; 95% of
	// such medians lie between the 40th and 61st differences (n/2 ±
	// 1.96·√n/2 = 50 ± 9.8, the textbook interval for n = 100).
	a, b := make([]float64, 100), make([]float64, 100)
	for i := range a {
		a[i] = float64(100 - i) // in no order of its own
	}
	if m, lo, hi := pairedMedian(a, b); m != 50.5 || lo != 40 || hi != 61 {
		t.Errorf("100 rounds: %v [%v, %v], want 50.5 [40, 61]", m, lo, hi)
	}
}
