package procstat

import (
	"errors"
	"io/fs"
	"os"
	"testing"
)

func TestReadSelf(t *testing.T) {
	s, err := Read(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if s.PID != os.Getpid() || s.PPID != os.Getppid() || s.Ended() || s.StartTime == 0 {
		t.Errorf("read %+v for pid %d, parent %d", s, os.Getpid(), os.Getppid())
	}
}

func TestReadGone(t *testing.T) {
	// Above the largest pid_max the kernel allows (2^22): never a process.
	if _, err := Read(1 << 23); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("got %v, want fs.ErrNotExist", err)
	}
}
