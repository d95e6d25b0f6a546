package scale

import (
	"context"
	"fmt"
	"os"
	"slices"
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

// sandbox is the two processes of a running service's sandbox.
type sandbox struct {
	init, cmd int
}

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
	up, sandboxes, failures, err := b.waitCorral(ctx, d, stream)
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
	inits, cmds, err := b.checkCorral(ctx, d, sandboxes)
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

// waitCorral waits until every service's command has exec'd in its
// sandbox (see execd), and until the daemon has reported every service
// running, which the check that follows relies on. Only the former is
// timed. The daemon's events also count the failed starts it retries, and
// a service that fails for good ends the wait. In case the daemon dropped
// events for the bench, its list is read whenever the stream stays quiet
// for a while.
func (b *bench) waitCorral(ctx context.Context, d *daemon.Daemon, stream *daemon.Stream) (up upTimes, sandboxes map[string]sandbox, failures int, err error) {
	n := b.cfg.Services
	sandboxes = map[string]sandbox{}
	reported := map[string]bool{} // by the daemon, running
	refresh := func() error {
		list, err := d.Client.List(ctx)
		if err != nil {
			return err
		}
		for _, s := range list {
			if s.State == "running" {
				reported[s.Name] = true
			}
		}
		return nil
	}
	if err := refresh(); err != nil {
		return up, nil, 0, err
	}
	const quiet = 500 * time.Millisecond
	lastNews := time.Now()
	poll := time.NewTicker(execPoll)
	defer poll.Stop()
	deadline := time.After(timeout)
	for len(sandboxes) < n || len(reported) < n {
		select {
		case ev, ok := <-stream.C:
			if !ok {
				return up, nil, failures, fmt.Errorf("event stream ended with %d of %d commands exec'd%s", len(sandboxes), n, d.LogTail())
			}
			lastNews = ev.At
			switch ev.To {
			case "running":
				reported[ev.Service] = true
			case "backoff", "crashloop":
				failures++
			case "failed", "stopped":
				return up, nil, failures, fmt.Errorf("service %s %s: %s%s", ev.Service, ev.To, ev.Reason, d.LogTail())
			}
		case <-poll.C:
			now := time.Now()
			for i := 0; i < n; i++ {
				if _, ok := sandboxes[name(i)]; ok {
					continue
				}
				if sb, ok := b.corralExecd(name(i)); ok {
					sandboxes[name(i)] = sb
					up.saw(now)
				}
			}
			if len(reported) < n && time.Since(lastNews) > quiet {
				if err := refresh(); err != nil {
					return up, nil, failures, err
				}
				lastNews = time.Now()
			}
		case <-deadline:
			return up, nil, failures, fmt.Errorf("after %s: %d of %d commands exec'd, %d of %d services reported running%s",
				timeout, len(sandboxes), n, len(reported), n, d.LogTail())
		case <-ctx.Done():
			return up, nil, failures, ctx.Err()
		}
	}
	return up, sandboxes, failures, nil
}

// corralExecd finds a service's sandbox once its command has exec'd: the
// corral init in the service's cgroup, and the one child it runs.
func (b *bench) corralExecd(service string) (sandbox, bool) {
	procs, err := cgroupfs.Procs(b.pids, cgroup(service))
	if err != nil {
		return sandbox{}, false // not made yet
	}
	for _, p := range procs {
		if procfs.Comm(p) != initComm {
			continue
		}
		if cmd, ok := execd(p); ok {
			return sandbox{init: p, cmd: cmd}, true
		}
	}
	return sandbox{}, false
}

// checkCorral checks that the daemon and the sandboxes agree, once every
// command has exec'd and every service was reported running: the daemon
// lists each service running with the init the bench found in its cgroup,
// and the cgroup holds that init and its command, still running the
// command's program, and nothing else. It returns the inits and the
// commands.
//
// Checked any earlier, this raced: the daemon reports "running" before
// the init has forked the command, let alone exec'd it, so the last
// services could show an init alone, or an init and its fork not yet
// exec'd ("not an init and one sleep").
func (b *bench) checkCorral(ctx context.Context, d *daemon.Daemon, sandboxes map[string]sandbox) (inits, cmds []int, err error) {
	list, err := d.Client.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(list) != b.cfg.Services {
		return nil, nil, fmt.Errorf("daemon lists %d services, not %d", len(list), b.cfg.Services)
	}
	for _, s := range list {
		sb, ok := sandboxes[s.Name]
		procs, err := cgroupfs.Procs(b.pids, cgroup(s.Name))
		if err != nil {
			return nil, nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		slices.Sort(procs)
		want := []int{sb.init, sb.cmd}
		slices.Sort(want)
		if !ok || s.State != "running" || s.PID != sb.init || !slices.Equal(procs, want) ||
			procfs.Comm(sb.init) != initComm || procfs.Comm(sb.cmd) != commandName {
			return nil, nil, fmt.Errorf("service %s: daemon says %s, init %d; the bench saw init %d (%q) run %d (%q); cgroup procs %v: not an init and one %s",
				s.Name, s.State, s.PID, sb.init, procfs.Comm(sb.init), sb.cmd, procfs.Comm(sb.cmd), procs, commandName)
		}
		inits = append(inits, sb.init)
		cmds = append(cmds, sb.cmd)
	}
	return inits, cmds, nil
}
