package bridge

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

// Each path is compared with the loopback baseline round by round.
func TestTrafficCompare(t *testing.T) {
	tr := &Traffic{Rounds: 3, GoalRatio: ThroughputGoal, GoalRTTUS: RTTGoalUS, Paths: []Path{
		{Name: "loopback", MBps: []float64{1000, 2000, 3000}, RTTUS: []float64{10, 20, 30}},
		{Name: "dnat", MBps: []float64{900, 1800, 2400}, RTTUS: []float64{20, 30, 40}},
		{Name: "proxy", MBps: []float64{500, 1000, 1500}, RTTUS: []float64{70, 90, 100}},
	}}
	tr.compare()
	for _, tc := range []struct {
		i            int
		ratio, added float64
	}{{0, 1, 0}, {1, 0.9, 10}, {2, 0.5, 70}} {
		if p := tr.Paths[tc.i]; p.Ratio != tc.ratio || p.AddedUS != tc.added {
			t.Errorf("%s: ratio %v, added %v us; want %v, %v", p.Name, p.Ratio, p.AddedUS, tc.ratio, tc.added)
		}
	}
	var out bytes.Buffer
	(&Report{Traffic: tr}).Print(&out)
	for _, want := range []string{
		"dnat: throughput vs loopback 0.90 (goal >= 0.8: met); RTT added +10.0 us (goal <= 50 us: met)",
		"proxy: throughput vs loopback 0.50 (goal >= 0.8: NOT met); RTT added +70.0 us (goal <= 50 us: NOT met)",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %q in:\n%s", want, out.String())
		}
	}
	if strings.Contains(out.String(), "loopback: throughput") {
		t.Errorf("the baseline judged against itself:\n%s", out.String())
	}
}

// The start cost is the median of the rounds' differences, judged
// against the goal.
func TestStart(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		var out []time.Duration
		for _, x := range v {
			out = append(out, time.Duration(x)*time.Millisecond)
		}
		return out
	}
	s := newStart(1, ms(40, 50, 60), ms(43, 54, 69), ms(80, 90, 100), ms(120, 130, 140))
	if s.Rounds != 3 || s.Up.AddedMS != 4 || s.Up.AddedLoMS != 3 || s.Up.AddedHiMS != 9 || s.Up.None.MedianMS != 50 || s.Exit.AddedMS != 40 {
		t.Errorf("got %+v", s)
	}
	var out bytes.Buffer
	(&Report{Start: s}).Print(&out)
	if !strings.Contains(out.String(), "to the command running: +4.00 ms the median of the rounds' differences (95% CI +3.00..+9.00; goal <= 5 ms: met)") ||
		!strings.Contains(out.String(), "to the run's exit (teardown of the veth, rules and conntrack included; no goal): +40.00 ms") {
		t.Errorf("got:\n%s", out.String())
	}
	s = newStart(0, ms(40), ms(46), ms(80), ms(80))
	out.Reset()
	(&Report{Start: s}).Print(&out)
	if !strings.Contains(out.String(), "goal <= 5 ms: NOT met") {
		t.Errorf("6 ms added, got:\n%s", out.String())
	}
}

// The scale table gives each network's median and range, and their ratio.
func TestScalePrint(t *testing.T) {
	s := &Scale{Services: 200, Reps: 3,
		None:   []ScaleRun{{UpS: 1}, {UpS: 2}, {UpS: 3}},
		Bridge: []ScaleRun{{UpS: 3}, {UpS: 5}, {UpS: 4}}}
	var out bytes.Buffer
	(&Report{Scale: s}).Print(&out)
	if !strings.Contains(out.String(), "2.00 (1.00-3.00)") || !strings.Contains(out.String(), "4.00 (3.00-5.00)") || !strings.Contains(out.String(), " 2.00\n") {
		t.Errorf("got:\n%s", out.String())
	}
}
