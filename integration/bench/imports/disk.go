package imports

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// DiskGoalRatio bounds the disk the image and N services from it use
// against the image's own in the store: N services from one image should
// cost about one copy of it. The daemon's copy of itself (initEntry) is
// no part of either: one per state dir whatever it runs, or none.
const DiskGoalRatio = 1.1

// initEntry is the state dir's directory of the daemon's execute-only
// copy of its own binary (runtime/sandbox's initDir): one per state dir,
// whatever and however many services it runs.
const initEntry = "init"

// Disk is what N services from one image cost on disk, beside what a copy
// of its root per service would.
type Disk struct {
	Services int  `json:"services"`
	ReadOnly bool `json:"read_only"`
	// StoreBytes is the data dir after the import: the image in the
	// store, its blobs and its unpacked layers.
	StoreBytes int64 `json:"store_bytes"`
	// UnpackedBytes is the store's unpacked layers alone: the image's
	// root, once.
	UnpackedBytes int64 `json:"unpacked_bytes"`
	// With the services running: the data dir (the store and its
	// leases), the state dir (records, each sandbox's writable layer,
	// the daemon's copy of corral), by top-level entry ("." the dir
	// itself), and the services' logs. No inode is counted twice and no
	// overlay entered.
	DataBytes    int64            `json:"data_bytes"`
	StateBytes   int64            `json:"state_bytes"`
	StateEntries map[string]int64 `json:"state_entries"`
	LogBytes     int64            `json:"log_bytes"`
	// SkippedMounts counts the mount points met in the walk and not
	// entered (each sandbox's overlay).
	SkippedMounts int `json:"skipped_mounts"`

	// Derived by derive.
	RunningBytes int64 `json:"running_bytes"`
	// NaiveBytes is a copy of the root per service (umoci unpack per
	// service, say): Services × UnpackedBytes.
	NaiveBytes int64 `json:"naive_bytes"`
	// Ratio is RunningBytes less the state dir's initEntry over
	// StoreBytes, against DiskGoalRatio.
	Ratio float64 `json:"ratio"`
	// RatioWithInit counts initEntry too.
	RatioWithInit float64 `json:"ratio_with_init"`
}

// derive computes the totals and ratios from the measured figures.
func (d *Disk) derive() {
	d.RunningBytes = d.DataBytes + d.StateBytes + d.LogBytes
	d.NaiveBytes = int64(d.Services) * d.UnpackedBytes
	d.Ratio, d.RatioWithInit = 0, 0
	if d.StoreBytes > 0 {
		d.Ratio = float64(d.RunningBytes-d.StateEntries[initEntry]) / float64(d.StoreBytes)
		d.RatioWithInit = float64(d.RunningBytes) / float64(d.StoreBytes)
	}
}

// perService is what each running service added, on average, the
// daemon's copy of corral aside.
func (d *Disk) perService() int64 {
	if d.Services == 0 {
		return 0
	}
	return (d.RunningBytes - d.StateEntries[initEntry] - d.StoreBytes) / int64(d.Services)
}

// Met reports whether the ratio meets DiskGoalRatio.
func (d *Disk) Met() bool { return d.Ratio > 0 && d.Ratio <= DiskGoalRatio }

// Print writes the three figures side by side and the ratio against the
// goal.
func (d *Disk) Print(w io.Writer) {
	fmt.Fprintf(w, "\nDisk: %d services from one image under one daemon (read_only: %t); allocated blocks, each inode once, no symlink followed, no mount entered\n",
		d.Services, d.ReadOnly)
	fmt.Fprintf(w, "%-38s %10s  %s\n", "what", "MB", "notes")
	fmt.Fprintf(w, "%-38s %10.1f  %s\n", "the image in the store", mb(d.StoreBytes),
		fmt.Sprintf("data dir after the import: blobs, and the layers unpacked (%.1f MB)", mb(d.UnpackedBytes)))
	fmt.Fprintf(w, "%-38s %10.1f  %s\n", fmt.Sprintf("%d services running", d.Services), mb(d.RunningBytes),
		fmt.Sprintf("data dir %.1f + state dir %.1f + logs %.1f; %+.1f kB per service, corral's copy of itself aside",
			mb(d.DataBytes), mb(d.StateBytes), mb(d.LogBytes), float64(d.perService())/1e3))
	naive := fmt.Sprintf("%d × the unpacked layers (umoci unpack per service)", d.Services)
	if d.RunningBytes > 0 {
		naive += fmt.Sprintf(": %.0f× what corral used", float64(d.NaiveBytes)/float64(d.RunningBytes))
	}
	fmt.Fprintf(w, "%-38s %10.1f  %s\n", "naive: a copy of the root per service", mb(d.NaiveBytes), naive)
	fmt.Fprintf(w, "state dir by entry: %s; %d overlay mounts not entered\n", d.stateEntries(), d.SkippedMounts)
	verdict := "met"
	if !d.Met() {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "used with %d services / the image in the store: %.3f (goal <= %.2f: %s)\n", d.Services, d.Ratio, DiskGoalRatio, verdict)
	fmt.Fprintf(w, "  that leaves out the state dir's %s/ (%.1f MB: the daemon's execute-only copy of corral, one per state dir whatever it runs, on tmpfs by default); with it: %.3f\n",
		initEntry, mb(d.StateEntries[initEntry]), d.RatioWithInit)
}

// stateEntries lists the state dir's entries that hold something, the
// largest first.
func (d *Disk) stateEntries() string {
	names := slices.SortedFunc(maps.Keys(d.StateEntries), func(a, b string) int {
		return cmp.Or(cmp.Compare(d.StateEntries[b], d.StateEntries[a]), cmp.Compare(a, b))
	})
	var parts []string
	for _, n := range names {
		v := d.StateEntries[n]
		if v == 0 {
			continue
		}
		if n == "." {
			n = "the dir itself"
		}
		if v >= 1e6 {
			parts = append(parts, fmt.Sprintf("%s %.1f MB", n, mb(v)))
		} else {
			parts = append(parts, fmt.Sprintf("%s %.0f kB", n, float64(v)/1e3))
		}
	}
	return strings.Join(parts, ", ")
}

func mb(n int64) float64 { return float64(n) / 1e6 }
