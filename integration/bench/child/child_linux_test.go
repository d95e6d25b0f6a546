package child

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestStartStop(t *testing.T) {
	dir := t.TempDir()
	var g Group
	p, err := g.Start("sleeper", []string{"/bin/sh", "-c", "echo up; exec sleep 100"}, filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	if p.Exited() || p.ExitedErr() != nil {
		t.Fatal("exited at once")
	}
	waitLog(t, p, "up")
	// sleep dies of SIGTERM: a signal is not a clean exit.
	if _, err := p.Stop(); err == nil || !strings.Contains(err.Error(), "signal: terminated") {
		t.Errorf("stop: got %v, want the signal named", err)
	}
	if !p.Exited() || p.ExitedErr() == nil {
		t.Error("not reported exited after Stop")
	}
	if err := g.StopAll(); err != nil {
		t.Errorf("StopAll after Stop: %v", err)
	}
}

func TestStopAllStopsTheRunning(t *testing.T) {
	dir := t.TempDir()
	var g Group
	// A shell that exits 0 on SIGTERM.
	p, err := g.Start("trapper", []string{"/bin/sh", "-c", "trap 'exit 0' TERM; echo trapped; while :; do sleep 0.05; done"}, filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	waitLog(t, p, "trapped")
	if err := g.StopAll(); err != nil {
		t.Fatal(err)
	}
	if !p.Exited() {
		t.Error("still running after StopAll")
	}
	if _, err := os.Stat(p.LogPath); err != nil {
		t.Error(err)
	}
}

// waitLog waits until the process has written text to its log.
func waitLog(t *testing.T, p *Proc, text string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(p.LogTail(), text); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the log; its tail: %q", text, p.LogTail())
		}
	}
}
