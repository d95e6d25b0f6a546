package main

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

// The scale part's s6 side: s6-svscan on a scan dir with one service dir
// per service, no sandbox.

func s6Available() error {
	for _, tool := range []string{"s6-svscan", "s6-supervise"} {
		if _, err := exec.LookPath(tool); err != nil {
			return err
		}
	}
	return nil
}

// s6Once runs s6-svscan on a fresh scan dir of services each running the
// command (through `exec` in a #!/bin/sh run script).
func (b *scaleBench) s6Once(ctx context.Context, rep int) (run scaleRun, err error) {
	scan := b.path(fmt.Sprintf("s6-%d", rep))
	for i := 0; i < b.o.scale; i++ {
		if err := writeS6Service(scan, b.name(i), "exec "+scaleCommand); err != nil {
			return run, err
		}
	}
	busy0, err := hostBusyTicks()
	if err != nil {
		return run, err
	}
	c, err := startS6(b.cs, scan, b.path(fmt.Sprintf("s6-%d.log", rep)))
	if err != nil {
		return run, err
	}
	sups, cmds, first, last, err := b.waitS6(ctx, c)
	if err != nil {
		return run, err
	}
	if run.HostCPUS, err = hostCPUSince(busy0); err != nil {
		return run, err
	}
	run.UpS, run.FirstUpS = last.Sub(c.started).Seconds(), first.Sub(c.started).Seconds()
	all := append([]int{c.pid()}, sups...)
	for _, p := range all {
		st, err := readStat(p)
		if err != nil {
			return run, err
		}
		run.StartCPUS += float64(st.ticks) / userHZ
		run.StartChildCPUS += float64(st.childTicks) / userHZ
	}
	time.Sleep(scaleSettle)
	if err := b.memory(&run, all, nil, cmds); err != nil {
		return run, err
	}
	if err := b.idle(&run, all, nil); err != nil {
		return run, err
	}
	t0 := time.Now()
	if _, err := c.stop(); err != nil {
		return run, err
	}
	if left := waitGone(append(sups, cmds...), stopTimeout); len(left) > 0 {
		return run, fmt.Errorf("s6-svscan exited but %d of its processes live on: %v", len(left), left)
	}
	run.DownS = time.Since(t0).Seconds()
	return run, nil
}

// s6Poll is how often the bench looks at s6's process tree while the
// services start; a service seen running is not looked at again.
const s6Poll = 10 * time.Millisecond

// waitS6 waits until every s6-supervise of svscan runs a sleep, and returns
// the s6-supervise and sleep PIDs and when the bench saw the first and the
// last sleep.
func (b *scaleBench) waitS6(ctx context.Context, c *child) (sups, cmds []int, first, last time.Time, err error) {
	found := map[int]int{} // s6-supervise → its sleep
	deadline := time.Now().Add(scaleTimeout)
	for len(found) < b.o.scale {
		if c.exited() {
			return nil, nil, first, last, fmt.Errorf("s6-svscan exited: %v%s", c.exitErr, logTail(c.logPath))
		}
		kids, err := childrenOf(c.pid())
		if err != nil {
			return nil, nil, first, last, err
		}
		now := time.Now()
		for _, s := range kids {
			if _, ok := found[s]; ok {
				continue
			}
			sub, _ := childrenOf(s)
			if len(sub) == 1 && comm(sub[0]) == "sleep" {
				found[s] = sub[0]
				if first.IsZero() {
					first = now
				}
				last = now
			}
		}
		if err := ctx.Err(); err != nil {
			return nil, nil, first, last, err
		}
		if time.Now().After(deadline) {
			return nil, nil, first, last, fmt.Errorf("%d of %d s6 services running after %s", len(found), b.o.scale, scaleTimeout)
		}
		if len(found) < b.o.scale {
			time.Sleep(s6Poll)
		}
	}
	for s, cmd := range found {
		sups, cmds = append(sups, s), append(cmds, cmd)
	}
	return sups, cmds, first, last, nil
}
