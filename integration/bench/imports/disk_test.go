package imports

import (
	"bytes"
	"strings"
	"testing"
)

// disk is a measurement of 100 services from a 105 MB image (210 MB in
// the store) that added used bytes, 24 MB of them the init copy.
func disk(used int64) *Disk {
	d := &Disk{Services: 100, StoreBytes: 210e6, UnpackedBytes: 105e6, DataBytes: 210.1e6,
		StateEntries: map[string]int64{initEntry: 24e6, "uppers": used - 210.1e6 - 24e6 - 0.1e6 - 4096, "corral.sock": 0, ".": 4096},
		LogBytes:     0.1e6, SkippedMounts: 100}
	for _, v := range d.StateEntries {
		d.StateBytes += v
	}
	d.derive()
	return d
}

// The ratio is the used over the image in the store, with and without the
// daemon's copy of corral; the naive cost a copy of the unpacked layers per
// service.
func TestDiskDerive(t *testing.T) {
	for _, tc := range []struct {
		used            int64
		ratio, withInit float64
		perService      int64
		met             bool
	}{
		{262e6, 238.0 / 210, 262.0 / 210, 280e3, false},
		{255e6, 1.1, 255.0 / 210, 210e3, true},
	} {
		d := disk(tc.used)
		near := func(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }
		if d.RunningBytes != tc.used || d.NaiveBytes != 10.5e9 || !near(d.Ratio, tc.ratio) || !near(d.RatioWithInit, tc.withInit) ||
			d.perService() != tc.perService || d.Met() != tc.met {
			t.Errorf("used %d: running %d, naive %d, ratio %g, with init %g, per service %d, met %t; want %d, %d, %g, %g, %d, %t",
				tc.used, d.RunningBytes, d.NaiveBytes, d.Ratio, d.RatioWithInit, d.perService(), d.Met(),
				tc.used, int64(10.5e9), tc.ratio, tc.withInit, tc.perService, tc.met)
		}
	}
	d := &Disk{Services: 100}
	d.derive()
	if d.Met() || d.perService() != 0 {
		t.Errorf("nothing measured: met %t, per service %d", d.Met(), d.perService())
	}
}

// The three figures side by side, the state dir's entries largest first,
// then the ratio and whether it meets the goal.
func TestDiskPrint(t *testing.T) {
	for _, tc := range []struct {
		used int64
		want []string
	}{
		{238.5e6, []string{
			"the image in the store                      210.0  data dir after the import: blobs, and the layers unpacked (105.0 MB)",
			"100 services running                        238.5  data dir 210.1 + state dir 28.3 + logs 0.1; +45.0 kB per service, corral's copy of itself aside",
			"naive: a copy of the root per service     10500.0  100 × the unpacked layers (umoci unpack per service): 44× what corral used",
			"state dir by entry: init 24.0 MB, uppers 4.3 MB, the dir itself 4 kB; 100 overlay mounts not entered",
			"used with 100 services / the image in the store: 1.021 (goal <= 1.10: met)",
			"  that leaves out the state dir's init/ (24.0 MB: the daemon's execute-only copy of corral, one per state dir whatever it runs, on tmpfs by default); with it: 1.136",
		}},
		{262e6, []string{"used with 100 services / the image in the store: 1.133 (goal <= 1.10: NOT met)"}},
	} {
		var b bytes.Buffer
		disk(tc.used).Print(&b)
		for _, want := range tc.want {
			if !strings.Contains(b.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, b.String())
			}
		}
	}
}

// The part's report ends with the disk figures when they were measured.
func TestReportPrintsDisk(t *testing.T) {
	r := &Report{Rounds: 1, ImageBytes: 100e6, Results: []Result{{Name: "corral image import", VsCorral: 1}}, Disk: disk(238.5e6)}
	var b bytes.Buffer
	r.Print(&b)
	if !strings.Contains(b.String(), "Disk: 100 services from one image under one daemon (read_only: false)") {
		t.Errorf("report lacks the disk table:\n%s", b.String())
	}
}
