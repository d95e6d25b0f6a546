package cgroup

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"

	"github.com/corral-dev/corral/internal/hold"
)

// WarmAttach readies the kernel's cgroup attach lock for the move of a
// sandbox's init into its cgroup, a few milliseconds later, and returns
// once it is ready (call it beside the sandbox's other set-up).
//
// Every move of a process into a cgroup (a write to cgroup.procs) takes
// one lock of the whole machine, cgroup_threadgroup_rwsem, for writing.
// Taken from its idle state, it first waits for an RCU grace period:
// 7.5-17 ms on this kind of machine, while the sandbox's init waits for
// its parent, which waits for the lock. Taken again within a grace
// period after the last writer, it is taken at once (0.02 ms). So
// WarmAttach moves a placeholder child of its own into the cgroup at path
// (one that nothing else uses: made here, in one hierarchy, if missing,
// and removed after), and the runtime's move that follows finds the lock
// warm. Its parent must exist, unless makeParents: then the caller owns
// the parents WarmAttach makes, and removes them.
func (h *Host) WarmAttach(path string, makeParents bool) error {
	dir := filepath.Join(h.Mounts["pids"], path)
	if makeParents {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return fmt.Errorf("warm the cgroup attach lock: %w", err)
		}
	}
	if err := os.Mkdir(dir, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
		return fmt.Errorf("warm the cgroup attach lock: %w", err)
	}
	child, err := hold.Start(0)
	if err == nil {
		err = writeProcs(dir, child.Pid())
		if err == nil && afterMove != nil {
			afterMove(child.Pid())
		}
		child.Release()
		<-child.Reaped()
	}
	// Empty once its only process is reaped.
	if rerr := syscall.Rmdir(dir); rerr != nil && !errors.Is(rerr, syscall.ENOENT) {
		err = errors.Join(err, fmt.Errorf("remove cgroup %s: %w", dir, rerr))
	}
	if err != nil {
		return fmt.Errorf("warm the cgroup attach lock: %w", err)
	}
	return nil
}

// afterMove, in tests, sees the placeholder child in the warm-up's cgroup.
var afterMove func(pid int)

func writeProcs(dir string, pid int) error {
	f, err := os.OpenFile(filepath.Join(dir, "cgroup.procs"), os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	return errors.Join(err, f.Close())
}
