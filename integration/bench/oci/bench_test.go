package oci

import (
	"strings"
	"testing"
	"time"
)

func TestPairedRatiosAreRoundByRound(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	// runc's times swing with the machine's load; corral-runc is 10%
	// slower in every round. The ratio of medians (110/40 = 2.75 here)
	// would mislead; the round-by-round ratio does not.
	samples := map[string][]time.Duration{
		"runc":        ms(10, 200, 20, 40, 100, 30, 300),
		"corral-runc": ms(11, 220, 22, 44, 110, 33, 330),
	}
	ratios, cis := pairedRatios(samples, "runc")
	if r := ratios["corral-runc"]; r < 1.099 || r > 1.101 {
		t.Errorf("corral-runc ratio %.3f, want 1.10", r)
	}
	if ci := cis["corral-runc"]; ci[0] < 1.099 || ci[1] > 1.101 {
		t.Errorf("corral-runc CI %v, want [1.10 1.10]", ci)
	}
	if ratios["runc"] != 1 {
		t.Errorf("runc over itself: %v", ratios["runc"])
	}
}

func TestPrintSaysWhenNoiseDecides(t *testing.T) {
	rep := &Report{Rounds: 3, Order: []string{"corral-runc", "runc"},
		Medians:    map[string]time.Duration{"corral-runc": 33 * time.Millisecond, "runc": 30 * time.Millisecond},
		Ratios:     map[string]float64{"corral-runc": 1.1, "runc": 1},
		RatioCIs:   map[string][2]float64{"corral-runc": {1.05, 1.2}, "runc": {1, 1}},
		CtrRounds:  3,
		CtrMedians: map[string]time.Duration{"corral-runc": 120 * time.Millisecond, "runc": 121 * time.Millisecond},
		CtrRatios:  map[string]float64{"corral-runc": 0.99, "runc": 1},
		CtrCIs:     map[string][2]float64{"corral-runc": {0.97, 1.02}, "runc": {1, 1}},
	}
	var out strings.Builder
	rep.Print(&out)
	for _, want := range []string{
		"corral-runc      33.0 ms  1.10x runc (1.05-1.20)",
		"corral-runc through containerd: 0.99x runc, 95% CI 0.97-1.02 (goal <= 1.0x: met at the median, within noise)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
