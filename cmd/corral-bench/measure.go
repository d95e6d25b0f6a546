package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"sort"
	"time"
)

// measure runs warmup unmeasured rounds, then rounds measured ones, and
// returns each variant's times in variant order. Every round runs each
// variant once, starting one further along the list each round, so that
// no variant always follows the same neighbour (whose cgroup removal or
// page-cache churn may still be settling) and slow drift of the machine
// hits all of them alike.
func measure(ctx context.Context, variants []*variant, warmup, rounds int) ([][]time.Duration, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	samples := make([][]time.Duration, len(variants))
	for r := 0; r < warmup+rounds; r++ {
		for i := range variants {
			// Stop between runs, never during one: killing a runtime
			// mid-start is what leaves sandboxes behind.
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("interrupted in round %d: %w", r+1, err)
			}
			k := (r + i) % len(variants)
			d, err := variants[k].runOnce(null)
			if err != nil {
				return nil, err
			}
			if r >= warmup {
				samples[k] = append(samples[k], d)
			}
		}
	}
	return samples, nil
}

// stats summarizes one variant's times.
type stats struct {
	Runs     int     `json:"runs"`
	MedianMS float64 `json:"median_ms"`
	P95MS    float64 `json:"p95_ms"`
	MinMS    float64 `json:"min_ms"`
	MeanMS   float64 `json:"mean_ms"`
	MaxMS    float64 `json:"max_ms"`
}

func summarize(samples []time.Duration) stats {
	ms := make([]float64, len(samples))
	sum := 0.0
	for i, d := range samples {
		ms[i] = float64(d) / float64(time.Millisecond)
		sum += ms[i]
	}
	sort.Float64s(ms)
	n := len(ms)
	if n == 0 {
		return stats{}
	}
	return stats{
		Runs:     n,
		MedianMS: median(ms),
		P95MS:    percentile(ms, 0.95),
		MinMS:    ms[0],
		MeanMS:   sum / float64(n),
		MaxMS:    ms[n-1],
	}
}

// median of sorted values; the mean of the middle two for an even count.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// percentile of sorted values by the nearest-rank method: a value that was
// actually measured, never an interpolation.
func percentile(sorted []float64, p float64) float64 {
	rank := int(math.Ceil(p * float64(len(sorted))))
	if rank < 1 {
		rank = 1
	}
	return sorted[rank-1]
}
