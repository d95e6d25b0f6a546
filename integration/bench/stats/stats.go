// Package stats summarizes the bench's samples: medians, nearest-rank
// percentiles, in milliseconds as the reports print them.
package stats

import (
	"math"
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
