package scale

import (
	"context"
	"fmt"
	"time"

	"github.com/corral-dev/corral/integration/bench/child"
	"github.com/corral-dev/corral/integration/bench/procfs"
	"github.com/corral-dev/corral/integration/bench/supervise"
	"github.com/corral-dev/corral/internal/procstat"
)

// The scale part's s6 side: s6-svscan on a scan dir with one service dir
// per service, no sandbox.

// s6Once runs s6-svscan on a fresh scan dir of services each running the
// command (through `exec` in a #!/bin/sh run script).
func (b *bench) s6Once(ctx context.Context, rep int) (run Repetition, err error) {
	scan := b.path(fmt.Sprintf("s6-%d", rep))
	for i := 0; i < b.cfg.Services; i++ {
		if err := supervise.WriteS6Service(scan, name(i), "exec "+command); err != nil {
			return run, err
		}
	}
	busy0, err := procfs.HostBusy()
	if err != nil {
		return run, err
	}
	c, err := supervise.S6(b.g, scan, b.path(fmt.Sprintf("s6-%d.log", rep)))
	if err != nil {
		return run, err
	}
	sups, cmds, up, err := b.waitS6(ctx, c)
	if err != nil {
		return run, err
	}
	if run.HostCPUS, err = hostCPUSince(busy0); err != nil {
		return run, err
	}
	run.FirstUpS, run.UpS = up.since(c.Started)
	all := append([]int{c.PID()}, sups...)
	for _, p := range all {
		st, err := procstat.Read(p)
		if err != nil {
			return run, err
		}
		run.StartCPUS += st.CPU().Seconds()
		run.StartChildCPUS += st.ChildrenCPU().Seconds()
	}
	time.Sleep(settle)
	if err := memory(&run, all, nil, cmds); err != nil {
		return run, err
	}
	if err := idleActivity(&run, all, nil); err != nil {
		return run, err
	}
	t0 := time.Now()
	if _, err := c.Stop(); err != nil {
		return run, err
	}
	if left := procfs.WaitGone(append(sups, cmds...), child.StopTimeout); len(left) > 0 {
		return run, fmt.Errorf("s6-svscan exited but %d of its processes live on: %v", len(left), left)
	}
	run.DownS = time.Since(t0).Seconds()
	return run, nil
}

// waitS6 waits until every s6-supervise of svscan has exec'd its command
// (see execd), and returns the s6-supervise and command PIDs and when the
// bench saw the first and the last.
func (b *bench) waitS6(ctx context.Context, svscan *child.Proc) (sups, cmds []int, up upTimes, err error) {
	found := map[int]int{} // s6-supervise → its command
	poll := time.NewTicker(execPoll)
	defer poll.Stop()
	deadline := time.Now().Add(timeout)
	for len(found) < b.cfg.Services {
		select {
		case <-poll.C:
		case <-ctx.Done():
			return nil, nil, up, ctx.Err()
		}
		if err := svscan.ExitedErr(); err != nil {
			return nil, nil, up, fmt.Errorf("%w%s", err, svscan.LogTail())
		}
		kids, err := procfs.Children(svscan.PID())
		if err != nil {
			return nil, nil, up, err
		}
		now := time.Now()
		for _, s := range kids {
			if _, ok := found[s]; ok {
				continue
			}
			if cmd, ok := execd(s); ok {
				found[s] = cmd
				up.saw(now)
			}
		}
		if time.Now().After(deadline) {
			return nil, nil, up, fmt.Errorf("%d of %d s6 services running after %s", len(found), b.cfg.Services, timeout)
		}
	}
	for s, cmd := range found {
		sups, cmds = append(sups, s), append(cmds, cmd)
	}
	return sups, cmds, up, nil
}
