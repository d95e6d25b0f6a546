// Package stats summarizes the bench's samples: medians, nearest-rank
// percentiles, in milliseconds as the reports print them, and medians of
// paired rounds with their confidence intervals.
package stats

import (
	"math"
	"slices"
	"sort"
	"time"
)

// Summary is one series of times; its JSON fields are those of every
// table in the bench's --json output.
type Summary struct {
	Runs     int     `json:"runs"`
	MedianMS float64 `json:"median_ms"`
	P95MS    float64 `json:"p95_ms"`
	MinMS    float64 `json:"min_ms"`
	MeanMS   float64 `json:"mean_ms"`
	MaxMS    float64 `json:"max_ms"`
}

// Summarize summarizes samples; no samples give the zero Summary.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	ms := MSList(samples)
	sum := 0.0
	for _, v := range ms {
		sum += v
	}
	sort.Float64s(ms)
	n := len(ms)
	return Summary{
		Runs:     n,
		MedianMS: Median(ms),
		P95MS:    Percentile(ms, 0.95),
		MinMS:    ms[0],
		MeanMS:   sum / float64(n),
		MaxMS:    ms[n-1],
	}
}

// Median of sorted values; the mean of the middle two for an even count.
func Median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// Percentile of sorted values by the nearest-rank method: a value that
// was actually measured, never an interpolation.
func Percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}

// MS is d in milliseconds.
func MS(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// MSList is each of samples in milliseconds, in the same order.
func MSList(samples []time.Duration) []float64 {
	out := make([]float64, len(samples))
	for i, d := range samples {
		out[i] = MS(d)
	}
	return out
}

// MedianCI is the median of values (in any order) and a 95% confidence
// interval for it, distribution-free: the order statistics that the
// binomial distribution of the count of values below the true median
// puts around it (normal approximation; the whole range for fewer than 6
// values).
func MedianCI(values []float64) (median, lo, hi float64) {
	n := len(values)
	if n == 0 {
		return 0, 0, 0
	}
	v := slices.Clone(values)
	slices.Sort(v)
	median = Median(v)
	if n < 6 {
		return median, v[0], v[n-1]
	}
	k := int(math.Floor(float64(n)/2 - 1.96*math.Sqrt(float64(n))/2))
	return median, v[max(k-1, 0)], v[min(n-k, n-1)]
}

// PairedMedian is the median of a[i]-b[i], with its MedianCI: when each
// round measures a and b once, close in time, a round's difference leaves
// out most of what the machine's other load adds to both (a difference of
// medians does not).
func PairedMedian(a, b []float64) (median, lo, hi float64) {
	n := min(len(a), len(b))
	d := make([]float64, n)
	for i := range n {
		d[i] = a[i] - b[i]
	}
	return MedianCI(d)
}

// PairedRatio is the median of a[i]/b[i], with its MedianCI, for the
// same reason as PairedMedian; rounds where b[i] is 0 are left out.
func PairedRatio(a, b []float64) (median, lo, hi float64) {
	var r []float64
	for i := range min(len(a), len(b)) {
		if b[i] != 0 {
			r = append(r, a[i]/b[i])
		}
	}
	return MedianCI(r)
}

// RatioVerdict judges a ratio goal (at most goal) on a paired ratio's
// median and its 95% interval lo..hi: met or NOT met at the median, and
// "within noise" when the interval reaches across the goal.
func RatioVerdict(ratio, lo, hi, goal float64) string {
	switch {
	case ratio <= goal && hi > goal:
		return "met at the median, within noise"
	case ratio <= goal:
		return "met"
	case lo <= goal:
		return "NOT met at the median, within noise"
	}
	return "NOT met"
}
