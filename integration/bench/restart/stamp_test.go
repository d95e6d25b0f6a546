package restart

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

func TestParseStamp(t *testing.T) {
	pid, at, err := parseStamp("f", []byte("42 1700000000123456789\n"))
	if err != nil || pid != 42 || at.UnixNano() != 1700000000123456789 {
		t.Errorf("got %d, %d, %v", pid, at.UnixNano(), err)
	}
	for _, partial := range []string{"", "42", "42 1700000000123"} {
		if _, _, err := parseStamp("f", []byte(partial)); !errors.Is(err, errNoStamp) {
			t.Errorf("%q (no newline yet): got %v, want errNoStamp", partial, err)
		}
	}
	for _, bad := range []string{"\n", "42\n", "a 17\n", "42 b\n", "1 2 3\n"} {
		if _, _, err := parseStamp("f", []byte(bad)); err == nil || errors.Is(err, errNoStamp) {
			t.Errorf("%q: got %v, want a malformed stamp", bad, err)
		}
	}
}

// The script the services run writes a stamp the bench reads: the PID of
// the process that then becomes the command, and a time after its start.
func TestStampScript(t *testing.T) {
	file := filepath.Join(t.TempDir(), "started")
	cmd := exec.Command("/bin/sh", "-c", stampScript(file, "true"))
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid, at, err := waitStamp(file, time.Second, nil)
	if err != nil {
		t.Fatal(err)
	}
	if pid != cmd.Process.Pid || at.Before(t0.Add(-time.Second)) || at.After(time.Now()) {
		t.Errorf("stamp: pid %d at %s; the shell was %d, run at %s", pid, at, cmd.Process.Pid, t0)
	}
	if err := os.Remove(file); err != nil {
		t.Fatal(err)
	}
	gone := errors.New("writer gone")
	if _, _, err := waitStamp(file, time.Second, func() error { return gone }); !errors.Is(err, gone) {
		t.Errorf("got %v, want the writer's end reported", err)
	}
}
