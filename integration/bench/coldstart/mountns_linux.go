package coldstart

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/integration/bench/cgroupfs"
)

// privateMountNS runs commands from one OS thread that has a mount
// namespace of its own, in which the cgroup2 tree is unmounted. Children
// inherit the namespace of the thread that forks them, so crun sees a
// plain cgroup v1 host while the bench, the other tools and the host keep
// seeing the real one. Doing it in-process, rather than through
// `unshare -m sh -c 'umount ...; exec crun'`, keeps two extra execs out of
// crun's time.
type privateMountNS struct {
	jobs      chan nsJob
	closeOnce sync.Once
}

type nsJob struct {
	argv    []string
	streams stdio
	done    chan nsResult
}

type nsResult struct {
	d   time.Duration
	err error
}

func newPrivateMountNS() (*privateMountNS, error) {
	ns := &privateMountNS{jobs: make(chan nsJob)}
	ready := make(chan error)
	go ns.serve(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return ns, nil
}

// serve owns the namespaced thread. It never unlocks it: when serve
// returns, the Go runtime then ends the thread instead of reusing it, with
// the wrong mount namespace, for other goroutines.
func (ns *privateMountNS) serve(ready chan<- error) {
	runtime.LockOSThread()
	if err := hideUnified(); err != nil {
		ready <- err
		return
	}
	ready <- nil
	for j := range ns.jobs {
		d, err := timeCommand(j.argv, j.streams)
		j.done <- nsResult{d, err}
	}
}

// hideUnified moves the calling thread to a new mount namespace, private
// so nothing propagates back to the host, and unmounts the cgroup2 tree in
// it. A host without that mount needs nothing hidden.
func hideUnified() error {
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		return fmt.Errorf("new mount namespace: %w", err)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make mounts private: %w", err)
	}
	err := unix.Unmount(cgroupfs.UnifiedMount, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount %s: %w", cgroupfs.UnifiedMount, err)
	}
	return nil
}

func (ns *privateMountNS) run(argv []string, streams stdio) (time.Duration, error) {
	done := make(chan nsResult)
	ns.jobs <- nsJob{argv: argv, streams: streams, done: done}
	r := <-done
	return r.d, r.err
}

// close ends the namespaced thread; safe to call more than once.
func (ns *privateMountNS) close() { ns.closeOnce.Do(func() { close(ns.jobs) }) }
