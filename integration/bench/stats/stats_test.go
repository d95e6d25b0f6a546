package stats

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var samples []time.Duration
	// 20 samples, 1 to 20 ms, out of order.
	for i := 20; i >= 1; i-- {
		samples = append(samples, time.Duration(i)*time.Millisecond)
	}
	got := Summarize(samples)
	want := Summary{Runs: 20, MedianMS: 10.5, P95MS: 19, MinMS: 1, MeanMS: 10.5, MaxMS: 20}
	if got != want {
		t.Errorf("got %+v, want %+v", got, want)
	}
	if (Summarize(nil) != Summary{}) {
		t.Errorf("no samples: got %+v", Summarize(nil))
	}
}

func TestMedianPercentile(t *testing.T) {
	for _, tc := range []struct {
		sorted      []float64
		median, p95 float64
	}{
		{[]float64{3}, 3, 3},
		{[]float64{1, 5}, 3, 5},
		{[]float64{1, 2, 9}, 2, 9},
	} {
		if m, p := Median(tc.sorted), Percentile(tc.sorted, 0.95); m != tc.median || p != tc.p95 {
			t.Errorf("%v: median %g, p95 %g; want %g, %g", tc.sorted, m, p, tc.median, tc.p95)
		}
	}
	if p := Percentile([]float64{4, 5}, 0); p != 4 {
		t.Errorf("p0 of [4 5] = %g, want the smallest", p)
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
		if m, lo, hi := PairedMedian(tc.a, tc.b); m != tc.median || lo != tc.lo || hi != tc.hi {
			t.Errorf("PairedMedian(%v, %v) = %v [%v, %v], want %v [%v, %v]", tc.a, tc.b, m, lo, hi, tc.median, tc.lo, tc.hi)
		}
	}
	// 100 rounds whose differences are 1..100: the median 50.5; 95% of
	// such medians lie between the 40th and 61st differences (n/2 ±
	// 1.96·√n/2 = 50 ± 9.8, the textbook interval for n = 100).
	a, b := make([]float64, 100), make([]float64, 100)
	for i := range a {
		a[i] = float64(100 - i) // in no order of its own
	}
	if m, lo, hi := PairedMedian(a, b); m != 50.5 || lo != 40 || hi != 61 {
		t.Errorf("100 rounds: %v [%v, %v], want 50.5 [40, 61]", m, lo, hi)
	}
}

func TestPairedRatio(t *testing.T) {
	// Rounds of 2x, 3x and 4x, one with a zero denominator left out.
	if m, lo, hi := PairedRatio([]float64{20, 30, 40, 5}, []float64{10, 10, 10, 0}); m != 3 || lo != 2 || hi != 4 {
		t.Errorf("got %v [%v, %v], want 3 [2, 4]", m, lo, hi)
	}
	if m, lo, hi := PairedRatio(nil, nil); m != 0 || lo != 0 || hi != 0 {
		t.Errorf("no rounds: %v [%v, %v]", m, lo, hi)
	}
}

func TestMedianCIKeepsItsInput(t *testing.T) {
	v := []float64{3, 1, 2}
	if m, _, _ := MedianCI(v); m != 2 || v[0] != 3 || v[1] != 1 {
		t.Errorf("median %v of %v: want 2, input unsorted", m, v)
	}
}

func TestRatioVerdictSaysWhenNoiseDecides(t *testing.T) {
	for _, c := range []struct {
		ratio, lo, hi, goal float64
		want                string
	}{
		{0.95, 0.9, 0.99, 1, "met"},
		{0.99, 0.95, 1.03, 1, "met at the median, within noise"},
		{1.01, 0.98, 1.05, 1, "NOT met at the median, within noise"},
		{1.08, 1.05, 1.1, 1, "NOT met"},
		{0.45, 0.40, 0.49, 0.5, "met"},
		{0.65, 0.60, 0.70, 0.5, "NOT met"},
	} {
		if got := RatioVerdict(c.ratio, c.lo, c.hi, c.goal); got != c.want {
			t.Errorf("RatioVerdict(%v, %v, %v, %v) = %q, want %q", c.ratio, c.lo, c.hi, c.goal, got, c.want)
		}
	}
}
