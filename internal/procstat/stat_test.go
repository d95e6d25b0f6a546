package procstat

import (
	"errors"
	"testing"
	"time"
)

// A line of a sleeping process, fields 3 to 52, with the given name.
func line(comm string) string {
	return "4242 (" + comm + ") S 17 4242 4242 0 -1 4194560 120 0 0 0 7 3 11 5 20 0 1 0 987654 2277376 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"
}

func TestParse(t *testing.T) {
	for _, comm := range []string{
		"sleep",
		"",
		"a b",
		"a) (b",       // a name that looks like the end of the name and more
		") S 1 2 3 (", // one that looks like fields
		"((()))",
		".corral-init",
	} {
		s, err := Parse([]byte(line(comm)))
		if err != nil {
			t.Errorf("name %q: %v", comm, err)
			continue
		}
		want := Stat{PID: 4242, Comm: comm, State: 'S', PPID: 17, UTime: 7, STime: 3, CUTime: 11, CSTime: 5, StartTime: 987654}
		if s != want {
			t.Errorf("name %q:\n got %+v\nwant %+v", comm, s, want)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for name, data := range map[string]string{
		"empty":          "",
		"no name":        "1 S 0 1 1",
		"unclosed name":  "1 (sleep S 0 1 1",
		"bad pid":        "x (sleep) S 0",
		"too few fields": "1 (sleep) S 0 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0",
		"long state":     "1 (sleep) SS 0 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 0",
		"bad ppid":       "1 (sleep) S p 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 5 0",
		"bad utime":      "1 (sleep) S 0 1 1 0 -1 0 0 0 0 0 u 1 0 0 20 0 1 0 5 0",
		"bad start time": "1 (sleep) S 0 1 1 0 -1 0 0 0 0 0 1 1 0 0 20 0 1 0 -5 0",
	} {
		if s, err := Parse([]byte(data)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: got %+v, %v; want ErrMalformed", name, s, err)
		}
	}
}

func TestEndedAndCPU(t *testing.T) {
	for state, ended := range map[byte]bool{'R': false, 'S': false, 'D': false, 'T': false, 'Z': true, 'X': true} {
		if got := (Stat{State: state}).Ended(); got != ended {
			t.Errorf("state %c: Ended %v, want %v", state, got, ended)
		}
	}
	s := Stat{UTime: 7, STime: 3, CUTime: 11, CSTime: 5}
	if s.CPU() != 100*time.Millisecond || s.ChildrenCPU() != 160*time.Millisecond {
		t.Errorf("CPU %s, children %s; want 100ms, 160ms", s.CPU(), s.ChildrenCPU())
	}
}
