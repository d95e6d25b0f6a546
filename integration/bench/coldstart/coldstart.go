// Package coldstart is the bench's cold part: start-to-exit of /bin/true
// in a corral sandbox beside runc (and, where they work, crun and
// unshare) given the same isolation and limits, in interleaved rounds.
// Absolute times drift on shared machines: what counts are the ratios of
// medians taken in the same rounds.
package coldstart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/corral-dev/corral/integration/bench/scratch"
)

// Config is what the cold part is told.
type Config struct {
	Corral string // the corral binary, an absolute path
	Runc   string // the runc binary (a name on PATH or a path)
	Crun   string // the crun binary; "" leaves crun out
	Rounds int    // measured rounds; each runs every variant once
	Warmup int    // unmeasured rounds run first
}

// Run builds the busybox root and the bundles in sc, runs every variant
// once per round, and removes what the runtimes may have left in their
// own state however it ends. Progress lines go to w.
func Run(ctx context.Context, cfg Config, sc *scratch.Dir, w io.Writer) (rep *Report, err error) {
	if err := MakeBusyboxRoot(rootfsDir(sc)); err != nil {
		return nil, err
	}
	variants, notes, err := setupVariants(cfg, sc)
	defer func() { err = errors.Join(err, sweep(variants)) }()
	if err != nil {
		return nil, err
	}
	fmt.Fprintln(w)
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
	fmt.Fprintf(w, "cold: %d warm-up + %d measured rounds, each running every variant once in a rotating order\n", cfg.Warmup, cfg.Rounds)
	samples, err := measure(ctx, variants, cfg.Warmup, cfg.Rounds)
	if err != nil {
		return nil, err
	}
	return newReport(cfg, variants, samples), nil
}

// rootfsDir is the busybox root, the root of every busybox variant.
func rootfsDir(sc *scratch.Dir) string { return sc.Path("rootfs") }

// measure runs warmup unmeasured rounds, then rounds measured ones, and
// returns each variant's times in variant order. Every round runs each
// variant once, starting one further along the list each round, so that
// no variant always follows the same neighbour (whose cgroup removal or
// page-cache churn may still be settling) and slow drift of the machine
// hits all of them alike.
func measure(ctx context.Context, variants []*Variant, warmup, rounds int) ([][]time.Duration, error) {
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
			k := rotation(r, i, len(variants))
			d, err := variants[k].RunOnce(null)
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

// rotation is the variant that runs i-th in round r of n variants.
func rotation(r, i, n int) int { return (r + i) % n }

// sweep closes the variants' stderr files and removes what a failed or
// interrupted run may have left in each tool's own state.
func sweep(variants []*Variant) error {
	var errs []error
	for _, v := range variants {
		if v.Stderr != nil {
			v.Stderr.Close()
		}
		if err := v.sweep(); err != nil {
			errs = append(errs, fmt.Errorf("clean up %s: %w", v.name, err))
		}
	}
	return errors.Join(errs...)
}
