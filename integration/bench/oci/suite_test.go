package oci

import "testing"

func TestParseTAP(t *testing.T) {
	out := `TAP version 13
ok 1 - create MUST work
  ---
  {
    "error": "x"
  }
  ...
not ok 2 - kill MUST send
ok 3 # SKIP linux.devices is not set
not ok 4 - kill MUST send
ok 5 - has # in it
1..5
`
	pts, plan := ParseTAP("p", out)
	if !plan || len(pts) != 5 {
		t.Fatalf("plan %v, %d points; want a plan and 5", plan, len(pts))
	}
	want := []Point{
		{Key: "p: create MUST work (#1)", OK: true},
		{Key: "p: kill MUST send (#1)"},
		{Key: "p: linux.devices is not set (#1)", OK: true, Skip: true},
		{Key: "p: kill MUST send (#2)"},
		{Key: "p: has (#1)", OK: true},
	}
	for i, w := range want {
		if g := pts[i]; g.Key != w.Key || g.OK != w.OK || g.Skip != w.Skip {
			t.Errorf("point %d: %+v, want %+v", i+1, g, w)
		}
	}
	if pts[0].Detail == "" {
		t.Error("the YAML block was not kept")
	}
}

func TestRegressions(t *testing.T) {
	ref := []*Program{{Name: "a", Plan: true, Points: []Point{{Key: "a: x (#1)", OK: true}, {Key: "a: y (#1)"}, {Key: "a: z (#1)", OK: true, Skip: true}}}}
	got := []*Program{{Name: "a", Plan: true, ExitCode: 1, Points: []Point{{Key: "a: x (#1)"}, {Key: "a: y (#1)", OK: true}}}}
	regs := Regressions(ref, got)
	if len(regs) != 2 || regs[0] != "a: did not complete (exit 1)" || regs[1] != "a: x (#1)" {
		t.Fatalf("regressions %q", regs)
	}
}
