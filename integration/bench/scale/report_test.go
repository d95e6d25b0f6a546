package scale

import (
	"bytes"
	"strings"
	"testing"
)

func TestTrimFloat(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 3: "3", 3.14159: "3.14", -2.5: "-2.50", 47.53: "47.5", 1234.56: "1234.6"} {
		if got := trimFloat(v); got != want {
			t.Errorf("trimFloat(%g) = %q, want %q", v, got, want)
		}
	}
}

func TestFormatMedian(t *testing.T) {
	up := func(r Repetition) float64 { return r.UpS }
	for _, tc := range []struct {
		runs []Repetition
		want string
	}{
		{nil, "-"},
		{[]Repetition{{UpS: 3.5}}, "3.50"},
		{[]Repetition{{UpS: 2}, {UpS: 2}}, "2"},
		{[]Repetition{{UpS: 4}, {UpS: 1.5}, {UpS: 3}}, "3 (1.50-4)"},
	} {
		if got := formatMedian(tc.runs, up); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.runs, got, tc.want)
		}
	}
}

// The table says whether corral's median meets each goal, and shows s6's
// figures only where s6 has such a thing.
func TestPrint(t *testing.T) {
	r := &Report{Services: 20, Reps: 3,
		Corral: []Repetition{{UpS: 1.5, DownS: 4, IdleWakeups: 0, InitsPSS: 2 * mb}, {UpS: 2.5, DownS: 5}, {UpS: 1.9, DownS: 3.5}},
		S6:     []Repetition{{UpS: 0.5}, {UpS: 0.6}, {UpS: 0.4}},
	}
	var out bytes.Buffer
	r.Print(&out)
	lines := map[string]string{}
	for _, l := range strings.Split(out.String(), "\n") {
		for _, label := range []string{"all running, from the fork (s)", "stop all: SIGTERM to all gone (s)", "supervisor wake-ups in", "20 sandbox inits PSS (MB)"} {
			if strings.HasPrefix(l, label) {
				lines[label] = l
			}
		}
	}
	for label, want := range map[string][]string{
		"all running, from the fork (s)":    {"1.90 (1.50-2.50)", "0.50 (0.40-0.60)", "< 2 s: met"},
		"stop all: SIGTERM to all gone (s)": {"4 (3.50-5)", "< 3 s: NOT met"},
		"supervisor wake-ups in":            {"0: met"},
		"20 sandbox inits PSS (MB)":         {" - "},
	} {
		for _, w := range want {
			if !strings.Contains(lines[label], w) {
				t.Errorf("line %q: no %q", lines[label], w)
			}
		}
	}
	if !strings.Contains(out.String(), "command has exec'd") {
		t.Errorf("the table does not say when a service counts as running:\n%s", out.String())
	}
}

// The ratio goals are computed from the medians and judged.
func TestPrintRatioGoals(t *testing.T) {
	r := &Report{Services: 200, Reps: 3,
		Corral: []Repetition{{UpS: 8, SupervisorPSS: 40 * mb, InitsPSS: 60 * mb}, {UpS: 10, SupervisorPSS: 41 * mb, InitsPSS: 60 * mb}, {UpS: 9, SupervisorPSS: 42 * mb, InitsPSS: 60 * mb}},
		S6:     []Repetition{{UpS: 2}, {UpS: 3}, {UpS: 4}},
		Runc:   []Repetition{{UpS: 20}, {UpS: 22}, {UpS: 24}},
	}
	var out bytes.Buffer
	r.Print(&out)
	for _, want := range []string{
		"all running, corral / runc run -d one by one: 0.41 (goal <= 0.4: NOT met)",
		"all running, corral / s6-svscan: 3.00 (goal <= 3: met)",
		"daemon + inits PSS: 101.0 MB (goal <= 30 MB + 0.5 MB x 200 = 130 MB: met)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	// runc's column shows its start and stop times, and nothing else.
	for _, l := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(l, "all running, from the fork (s)") && !strings.Contains(l, "22 (20-24)") {
			t.Errorf("runc's all-running median missing: %q", l)
		}
		if strings.HasPrefix(l, "supervisor PSS (MB)") && strings.Count(l, " - ") != 1 {
			t.Errorf("runc has no supervisor, but its column shows one: %q", l)
		}
	}
}

// The image runs get their own line and goals; PrintUpGoals judges any
// other corral's time (the bridge part's) against this part's runc and s6.
func TestImageAndBridgeUpGoals(t *testing.T) {
	r := &Report{Services: 200, Reps: 3,
		Corral: []Repetition{{UpS: 8}, {UpS: 9}, {UpS: 10}},
		Image:  []Repetition{{UpS: 6, DownS: 1}, {UpS: 7, DownS: 2}, {UpS: 12, DownS: 3}},
		S6:     []Repetition{{UpS: 2}, {UpS: 3}, {UpS: 4}},
		Runc:   []Repetition{{UpS: 20}, {UpS: 20}, {UpS: 20}},
	}
	var out bytes.Buffer
	r.Print(&out)
	r.PrintUpGoals(&out, " on the bridge network", 12)
	for _, want := range []string{
		"corral, every service from one image (busybox, imported once): all running 7 s (6-12), stop all 2 s",
		"all running from one image, corral / runc run -d one by one: 0.35 (goal <= 0.4: met)",
		"all running from one image, corral / s6-svscan: 2.33 (goal <= 3: met)",
		"all running on the bridge network, corral / runc run -d one by one: 0.60 (goal <= 0.4: NOT met)",
		"all running on the bridge network, corral / s6-svscan: 4.00 (goal <= 3: NOT met)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	// Without runc or s6 runs, no goal line (and no panic).
	var none bytes.Buffer
	(&Report{}).PrintUpGoals(&none, " x", 5)
	if none.Len() != 0 {
		t.Errorf("goal lines with nothing to compare with: %q", none.String())
	}
}
