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
