package supervise

import (
	"strings"
	"testing"
)

func TestSupervisordConfig(t *testing.T) {
	conf, err := supervisordConfig("/s", "stamp", `echo "$$ $(date +%s%N)" > /s/started; exec sleep 100000`)
	if err != nil {
		t.Fatal(err)
	}
	// % doubled: supervisord would expand %(...)s, or fail on a lone %.
	want := `command=/bin/sh -c 'echo "$$ $(date +%%s%%N)" > /s/started; exec sleep 100000'`
	if !strings.Contains(conf, want+"\n") {
		t.Errorf("no line %q in\n%s", want, conf)
	}
	if _, err := supervisordConfig("/s", "q", "echo 'x'"); err == nil {
		t.Error("a script with a single quote was accepted")
	}
}
