package imports

import (
	"fmt"
	"io"
)

// DiskGoalRatio bounds the disk used with the services running against
// the image's own in the store: N services from one image should cost
// about one copy of it.
const DiskGoalRatio = 1.1

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
	// RunningBytes is the data, state and log dirs with the services
	// running: the store, every sandbox's writable layer, records and
	// logs, the overlays' mounts not entered.
	RunningBytes int64 `json:"running_bytes"`
	// NaiveBytes is a copy of the root per service (umoci unpack per
	// service, say): Services × UnpackedBytes.
	NaiveBytes int64 `json:"naive_bytes"`
	// Ratio is RunningBytes / StoreBytes, against DiskGoalRatio.
	Ratio float64 `json:"ratio"`
	// SkippedMounts counts the mount points met in the walk and not
	// entered (each sandbox's overlay).
	SkippedMounts int `json:"skipped_mounts"`
}

func newDisk(services int, readOnly bool, store, unpacked, running int64, skipped int) *Disk {
	d := &Disk{Services: services, ReadOnly: readOnly, StoreBytes: store, UnpackedBytes: unpacked,
		RunningBytes: running, NaiveBytes: int64(services) * unpacked, SkippedMounts: skipped}
	if store > 0 {
		d.Ratio = float64(running) / float64(store)
	}
	return d
}

// perService is what each running service added, on average.
func (d *Disk) perService() int64 {
	if d.Services == 0 {
		return 0
	}
	return (d.RunningBytes - d.StoreBytes) / int64(d.Services)
}

// Met reports whether the ratio meets DiskGoalRatio.
func (d *Disk) Met() bool { return d.Ratio > 0 && d.Ratio <= DiskGoalRatio }

// Print writes the three figures side by side and the ratio against the
// goal.
func (d *Disk) Print(w io.Writer) {
	fmt.Fprintf(w, "\nDisk: %d services from one image under one daemon (read_only: %t); allocated blocks, each inode once, no symlink followed, no mount entered\n",
		d.Services, d.ReadOnly)
	fmt.Fprintf(w, "%-46s %10s  %s\n", "what", "MB", "notes")
	fmt.Fprintf(w, "%-46s %10.1f  %s\n", "the image in the store", mb(d.StoreBytes),
		fmt.Sprintf("data dir after the import: blobs, and the layers unpacked (%.1f MB)", mb(d.UnpackedBytes)))
	fmt.Fprintf(w, "%-46s %10.1f  %s\n", fmt.Sprintf("%d services running", d.Services), mb(d.RunningBytes),
		fmt.Sprintf("data + state + log dirs: %+.1f kB per service; %d overlay mounts not entered", float64(d.perService())/1e3, d.SkippedMounts))
	naive := fmt.Sprintf("%d × the unpacked layers (umoci unpack per service)", d.Services)
	if d.RunningBytes > 0 {
		naive += fmt.Sprintf(": %.0f× what corral used", float64(d.NaiveBytes)/float64(d.RunningBytes))
	}
	fmt.Fprintf(w, "%-46s %10.1f  %s\n", "naive: a copy of the root per service", mb(d.NaiveBytes), naive)
	verdict := "met"
	if !d.Met() {
		verdict = "NOT met"
	}
	fmt.Fprintf(w, "used with %d services / the image in the store: %.3f (goal <= %.2f: %s)\n", d.Services, d.Ratio, DiskGoalRatio, verdict)
}

func mb(n int64) float64 { return float64(n) / 1e6 }
