package scale

import (
	"context"
	"errors"
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
	events, why := watchExecs()
	b.note(why)
	if events != nil {
		defer events.Close()
	}
	busy0, err := procfs.HostBusy()
	if err != nil {
		return run, err
	}
	c, err := supervise.S6(b.g, scan, b.path(fmt.Sprintf("s6-%d.log", rep)))
	if err != nil {
		return run, err
	}
	u := newUpWatch(events, "s6-supervise")
	u.supervisor = c.PID()
	if err := b.waitS6(ctx, c, u); err != nil {
		return run, err
	}
	b.noteScans("s6", u)
	var sups, cmds []int
	for s, svc := range u.found {
		sups, cmds = append(sups, s), append(cmds, svc.cmd)
	}
	if run.HostCPUS, err = hostCPUSince(busy0); err != nil {
		return run, err
	}
	run.FirstUpS, run.UpS = u.times().since(c.Started)
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
// (see upWatch).
func (b *bench) waitS6(ctx context.Context, svscan *child.Proc, u *upWatch) error {
	scans, stop := u.scans()
	defer stop()
	check := time.NewTicker(checkEvery)
	defer check.Stop()
	deadline := time.After(timeout)
	for len(u.found) < b.cfg.Services {
		select {
		case ev, ok := <-u.execs():
			if !ok {
				return errors.New("exec events ended")
			}
			u.exec(ev)
		case now := <-scans:
			u.scan(now)
		case <-check.C:
			if err := svscan.ExitedErr(); err != nil {
				return fmt.Errorf("%w%s", err, svscan.LogTail())
			}
		case <-deadline:
			return fmt.Errorf("%d of %d s6 services running after %s", len(u.found), b.cfg.Services, timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	u.drain()
	return nil
}
