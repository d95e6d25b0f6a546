package imports

import (
	"bytes"
	"strings"
	"testing"
)

// The ratio is the used over the image in the store, the naive cost a
// copy of the unpacked layers per service, each against the goal.
func TestNewDisk(t *testing.T) {
	for _, tc := range []struct {
		name                  string
		store, unpacked, used int64
		wantRatio             float64
		wantNaive, wantPerSvc int64
		wantMet               bool
	}{
		{"one copy and a little", 200e6, 100e6, 204e6, 1.02, 10e9, 40e3, true},
		{"at the goal", 100e6, 50e6, 110e6, 1.1, 5e9, 100e3, true},
		{"past the goal", 100e6, 50e6, 150e6, 1.5, 5e9, 500e3, false},
		{"nothing measured", 0, 0, 0, 0, 0, 0, false},
	} {
		d := newDisk(100, false, tc.store, tc.unpacked, tc.used, 100)
		if d.Ratio < tc.wantRatio-1e-9 || d.Ratio > tc.wantRatio+1e-9 || d.NaiveBytes != tc.wantNaive ||
			d.perService() != tc.wantPerSvc || d.Met() != tc.wantMet {
			t.Errorf("%s: ratio %g, naive %d, per service %d, met %t; want %g, %d, %d, %t",
				tc.name, d.Ratio, d.NaiveBytes, d.perService(), d.Met(), tc.wantRatio, tc.wantNaive, tc.wantPerSvc, tc.wantMet)
		}
	}
}

// The three figures side by side, then the ratio and whether it meets
// the goal.
func TestDiskPrint(t *testing.T) {
	for _, tc := range []struct {
		used int64
		want []string
	}{
		{212.5e6, []string{
			"the image in the store                              210.0  data dir after the import: blobs, and the layers unpacked (105.0 MB)",
			"100 services running                                212.5  data + state + log dirs: +25.0 kB per service; 100 overlay mounts not entered",
			"naive: a copy of the root per service             10500.0  100 × the unpacked layers (umoci unpack per service): 49× what corral used",
			"used with 100 services / the image in the store: 1.012 (goal <= 1.10: met)",
		}},
		{420e6, []string{"used with 100 services / the image in the store: 2.000 (goal <= 1.10: NOT met)"}},
	} {
		var b bytes.Buffer
		newDisk(100, false, 210e6, 105e6, tc.used, 100).Print(&b)
		for _, want := range tc.want {
			if !strings.Contains(b.String(), want) {
				t.Errorf("report lacks %q:\n%s", want, b.String())
			}
		}
	}
}

// The part's report ends with the disk figures when they were measured.
func TestReportPrintsDisk(t *testing.T) {
	r := &Report{Rounds: 1, ImageBytes: 100e6, Results: []Result{{Name: "corral image import", VsCorral: 1}},
		Disk: newDisk(100, false, 210e6, 105e6, 212.5e6, 100)}
	var b bytes.Buffer
	r.Print(&b)
	if !strings.Contains(b.String(), "Disk: 100 services from one image under one daemon (read_only: false)") {
		t.Errorf("report lacks the disk table:\n%s", b.String())
	}
}
