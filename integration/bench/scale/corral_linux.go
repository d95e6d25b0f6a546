package scale

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/daemon"
	"github.com/corral-dev/corral/integration/bench/procfs"
	"github.com/corral-dev/corral/internal/procstat"
)

// initComm is the name of a corral sandbox's init: the execute-only copy
// of corral bound at /dev/.corral-init.
const initComm = ".corral-init"

// corralConfig is the daemon's service file: every service runs the
// command on the built-in root, with the limits of daemon.defaults; the
// daemon serves its metrics on metricsListen.
func (b *bench) corralConfig(metricsListen string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "daemon:\n  cgroup_parent: %s\n  log_dir: %s\n  metrics: {listen: %s}\n  defaults:\n    resources: {memory: %s, pids: %s}\nservices:\n",
		cgroupParent, daemon.YAMLString(b.path("logs")), daemon.YAMLString(metricsListen), memoryFlag, pidsFlag)
	for i := 0; i < b.cfg.Services; i++ {
		fmt.Fprintf(&s, "  %s: {command: %s}\n", name(i), daemon.YAMLList(strings.Fields(command)...))
	}
	return s.String()
}

// cgroup is the service's sandbox's cgroup, below cgroupParent.
func cgroup(service string) string { return cgroupParent + "/" + service }

func (b *bench) corralOnce(ctx context.Context, rep int) (run Repetition, err error) {
	// A port of its own for each run, taken just before the daemon
	// starts: little time for another process to take it meanwhile.
	metricsListen, err := freeMetricsListen()
	if err != nil {
		return run, err
	}
	cfg := b.path("corral.yaml")
	if err := os.WriteFile(cfg, []byte(b.corralConfig(metricsListen)), 0o644); err != nil {
		return run, fmt.Errorf("write scale service file: %w", err)
	}
	state, err := b.sc.StateDir("scale", fmt.Sprintf("state-%d", rep))
	if err != nil {
		return run, err
	}
	busy0, err := procfs.HostBusy()
	if err != nil {
		return run, err
	}
	d, err := daemon.Start(b.g, b.cfg.Corral, state, cfg, b.path(fmt.Sprintf("daemon-%d.log", rep)))
	if err != nil {
		return run, err
	}
	if err := d.WaitReady(ctx, timeout); err != nil {
		return run, err
	}
	stream, err := d.Subscribe(ctx)
	if err != nil {
		return run, err
	}
	up, failures, err := b.waitAllRunning(ctx, d, stream)
	stream.Close()
	if err != nil {
		return run, err
	}
	if run.HostCPUS, err = hostCPUSince(busy0); err != nil {
		return run, err
	}
	run.FirstUpS, run.UpS = up.since(d.Started)
	run.StartFailures = failures
	st, err := procstat.Read(d.PID())
	if err != nil {
		return run, err
	}
	run.StartCPUS, run.StartChildCPUS = st.CPU().Seconds(), st.ChildrenCPU().Seconds()
	inits, cmds, err := b.corralProcs(ctx, d)
	if err != nil {
		return run, err
	}
	for _, p := range inits {
		st, err := procstat.Read(p)
		if err != nil {
			return run, err
		}
		run.InitsCPUS += st.CPU().Seconds()
	}
	time.Sleep(settle)
	if err := memory(&run, []int{d.PID()}, inits, cmds); err != nil {
		return run, err
	}
	if run.CgroupMem, run.CgroupKernelMem, err = cgroupfs.Memory(cgroupParent); err != nil {
		return run, fmt.Errorf("memory of the sandboxes' cgroups: %w", err)
	}
	if err := idleActivity(&run, []int{d.PID()}, inits); err != nil {
		return run, err
	}
	if run.MetricsCost, err = b.metricsCost(ctx, d, metricsListen); err != nil {
		return run, fmt.Errorf("metrics endpoint: %w", err)
	}
	down, err := d.StopAndCheck(cgroupParent)
	if err != nil {
		return run, err
	}
	if left := procfs.WaitGone(append(inits, cmds...), 0); len(left) > 0 {
		return run, fmt.Errorf("corral daemon exited but processes %v of its sandboxes live on", left)
	}
	run.DownS = down.Seconds()
	return run, nil
}

// waitAllRunning follows the daemon's events until every service has
// been seen running. The state of all of them is read once after
// subscribing, and again whenever the stream stays quiet for a while, in
// case the daemon dropped events for the bench. A service that fails for
// good ends the wait; failed starts that are retried are counted.
func (b *bench) waitAllRunning(ctx context.Context, d *daemon.Daemon, stream *daemon.Stream) (up upTimes, failures int, err error) {
	running := map[string]bool{}
	saw := func(name string, at time.Time) {
		if running[name] {
			return
		}
		running[name] = true
		up.saw(at)
	}
	refresh := func() error {
		list, err := d.Client.List(ctx)
		if err != nil {
			return err
		}
		now := time.Now()
		for _, s := range list {
			if s.State == "running" {
				saw(s.Name, now)
			}
		}
		return nil
	}
	if err := refresh(); err != nil {
		return up, 0, err
	}
	const quiet = 500 * time.Millisecond
	deadline := time.After(timeout)
	for len(running) < b.cfg.Services {
		select {
		case ev, ok := <-stream.C:
			if !ok {
				return up, failures, fmt.Errorf("event stream ended with %d of %d running%s", len(running), b.cfg.Services, d.LogTail())
			}
			switch ev.To {
			case "running":
				saw(ev.Service, ev.At)
			case "backoff", "crashloop":
				failures++
			case "failed", "stopped":
				return up, failures, fmt.Errorf("service %s %s: %s%s", ev.Service, ev.To, ev.Reason, d.LogTail())
			}
		case <-time.After(quiet):
			if err := refresh(); err != nil {
				return up, failures, err
			}
		case <-deadline:
			return up, failures, fmt.Errorf("%d of %d services running after %s%s", len(running), b.cfg.Services, timeout, d.LogTail())
		case <-ctx.Done():
			return up, failures, ctx.Err()
		}
	}
	return up, failures, nil
}

// corralProcs lists the inits of the daemon's sandboxes (the PIDs it
// reports) and the commands (the other processes of each sandbox's
// cgroup), checking that each sandbox is an init running one sleep.
func (b *bench) corralProcs(ctx context.Context, d *daemon.Daemon) (inits, cmds []int, err error) {
	list, err := d.Client.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(list) != b.cfg.Services {
		return nil, nil, fmt.Errorf("daemon lists %d services, not %d", len(list), b.cfg.Services)
	}
	for _, s := range list {
		procs, err := cgroupfs.Procs(b.pids, cgroup(s.Name))
		if err != nil {
			return nil, nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		var others []int
		for _, p := range procs {
			if p != s.PID {
				others = append(others, p)
			}
		}
		if s.State != "running" || procfs.Comm(s.PID) != initComm || len(others) != 1 || procfs.Comm(others[0]) != commandName {
			return nil, nil, fmt.Errorf("service %s: state %s, init %d (%q), cgroup procs %v: not an init and one sleep", s.Name, s.State, s.PID, procfs.Comm(s.PID), procs)
		}
		inits = append(inits, s.PID)
		cmds = append(cmds, others[0])
	}
	return inits, cmds, nil
}
