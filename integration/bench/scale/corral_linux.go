package scale

import (
	"context"
	"errors"
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
	var busy0 time.Duration
	d, u, failures, why, err := startCorral(ctx, b.cfg.Services, func() (*daemon.Daemon, error) {
		var err error
		if busy0, err = procfs.HostBusy(); err != nil {
			return nil, err
		}
		return daemon.Start(b.g, b.cfg.Corral, state, cfg, b.path(fmt.Sprintf("daemon-%d.log", rep)))
	})
	b.note(why)
	if u != nil && u.events != nil {
		defer u.events.Close()
	}
	if err != nil {
		return run, err
	}
	b.noteScans("corral", u)
	if run.HostCPUS, err = hostCPUSince(busy0); err != nil {
		return run, err
	}
	run.FirstUpS, run.UpS = u.times().since(d.Started)
	run.StartFailures = failures
	st, err := procstat.Read(d.PID())
	if err != nil {
		return run, err
	}
	run.StartCPUS, run.StartChildCPUS = st.CPU().Seconds(), st.ChildrenCPU().Seconds()
	inits, cmds, err := b.checkCorral(ctx, d, u.found)
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

// Up is a corral daemon whose services' commands have all exec'd.
type Up struct {
	Daemon *daemon.Daemon
	// First and All are from the daemon's fork to the first and to the
	// last service's command exec'd.
	First, All time.Duration
	// Failures are the starts that failed and were retried.
	Failures int
	// Note says how the measurement went where the kernel sent no exec
	// events or dropped some ("" when it went as it should).
	Note string
}

// StartCorral starts a corral daemon of n services, each running
// Command, as the scale part does: start is called once the kernel's exec
// events are watched, and returns the daemon it started; StartCorral then
// waits until every service's command has exec'd in its sandbox and the
// daemon reports every service running. The daemon is left running, also
// on an error once started.
func StartCorral(ctx context.Context, n int, start func() (*daemon.Daemon, error)) (*Up, error) {
	d, u, failures, why, err := startCorral(ctx, n, start)
	if u != nil && u.events != nil {
		defer u.events.Close()
	}
	if err != nil {
		return nil, err
	}
	if u.events != nil && u.lost > 0 {
		why = fmt.Sprintf("the kernel dropped exec events %d times; %d of %d services have the time of the scan that followed", u.lost, u.scanned(), len(u.found))
	}
	t := u.times()
	return &Up{Daemon: d, First: t.first.Sub(d.Started), All: t.last.Sub(d.Started), Failures: failures, Note: why}, nil
}

// Command is what every service of the daemons StartCorral waits for
// runs.
const Command = command

// startCorral watches exec events, starts a daemon with start and waits
// for its n services (waitCorral). It returns the watch in u, for the
// caller to close when it is done with it (u.events is nil where the
// kernel sends no exec events), and why it has none.
func startCorral(ctx context.Context, n int, start func() (*daemon.Daemon, error)) (d *daemon.Daemon, u *upWatch, failures int, why string, err error) {
	events, why := watchExecs()
	d, err = start()
	if err != nil {
		if events != nil {
			events.Close()
		}
		return nil, nil, 0, why, err
	}
	u = newUpWatch(events, initComm)
	u.supervisor = d.PID()
	if err := d.WaitReady(ctx, timeout); err != nil {
		return d, u, 0, why, err
	}
	stream, err := d.Subscribe(ctx)
	if err != nil {
		return d, u, 0, why, err
	}
	failures, err = waitCorral(ctx, n, d, stream, u)
	stream.Close()
	return d, u, failures, why, err
}

// waitCorral waits until every service's command has exec'd in its
// sandbox (see upWatch), and until the daemon has reported every service
// running, which the check that follows relies on. Only the former is
// timed. The daemon's events also count the failed starts it retries, and
// a service that fails for good ends the wait. In case the daemon dropped
// events for the bench, its list is read whenever the stream stays quiet
// for a while.
func waitCorral(ctx context.Context, n int, d *daemon.Daemon, stream *daemon.Stream, u *upWatch) (failures int, err error) {
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
		return 0, err
	}
	const quiet = 500 * time.Millisecond
	lastNews := time.Now()
	scans, stop := u.scans()
	defer stop()
	check := time.NewTicker(checkEvery)
	defer check.Stop()
	deadline := time.After(timeout)
	for len(u.found) < n || len(reported) < n {
		select {
		case ev, ok := <-u.execs():
			if !ok {
				return failures, errors.New("exec events ended")
			}
			u.exec(ev)
		case ev, ok := <-stream.C:
			if !ok {
				return failures, fmt.Errorf("event stream ended with %d of %d commands exec'd%s", len(u.found), n, d.LogTail())
			}
			lastNews = ev.At
			switch ev.To {
			case "running":
				reported[ev.Service] = true
			case "backoff", "crashloop":
				failures++
			case "failed", "stopped":
				return failures, fmt.Errorf("service %s %s: %s%s", ev.Service, ev.To, ev.Reason, d.LogTail())
			}
		case now := <-scans:
			u.scan(now)
		case <-check.C:
			if err := d.ErrIfExited(); err != nil {
				return failures, err
			}
			if len(reported) < n && time.Since(lastNews) > quiet {
				if err := refresh(); err != nil {
					return failures, err
				}
				lastNews = time.Now()
			}
		case <-deadline:
			return failures, fmt.Errorf("after %s: %d of %d commands exec'd, %d of %d services reported running%s",
				timeout, len(u.found), n, len(reported), n, d.LogTail())
		case <-ctx.Done():
			return failures, ctx.Err()
		}
	}
	u.drain()
	return failures, nil
}

// checkCorral checks that the daemon and the sandboxes agree, once every
// command has exec'd and every service was reported running: the daemon
// lists each service running with one of the inits the bench found, and
// the service's cgroup holds that init and its command, still running the
// command's program, and nothing else. It returns the inits and the
// commands.
//
// Checked any earlier, this raced: the daemon reports "running" before
// the init has forked the command, let alone exec'd it, so the last
// services could show an init alone, or an init and its fork not yet
// exec'd ("not an init and one sleep").
func (b *bench) checkCorral(ctx context.Context, d *daemon.Daemon, sandboxes map[int]upService) (inits, cmds []int, err error) {
	list, err := d.Client.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(list) != b.cfg.Services {
		return nil, nil, fmt.Errorf("daemon lists %d services, not %d", len(list), b.cfg.Services)
	}
	for _, s := range list {
		sb, ok := sandboxes[s.PID]
		procs, err := cgroupfs.Procs(b.pids, cgroup(s.Name))
		if err != nil {
			return nil, nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		if !ok {
			return nil, nil, fmt.Errorf("service %s: daemon says %s with init %d, whose command the bench did not see exec; cgroup procs %v", s.Name, s.State, s.PID, procs)
		}
		cmd := sb.cmd
		slices.Sort(procs)
		want := []int{s.PID, cmd}
		slices.Sort(want)
		if s.State != "running" || !slices.Equal(procs, want) || procfs.Comm(s.PID) != initComm || procfs.Comm(cmd) != commandName {
			return nil, nil, fmt.Errorf("service %s: daemon says %s, init %d (%q) with command %d (%q); cgroup procs %v: not an init and one %s",
				s.Name, s.State, s.PID, procfs.Comm(s.PID), cmd, procfs.Comm(cmd), procs, commandName)
		}
		inits = append(inits, s.PID)
		cmds = append(cmds, cmd)
	}
	return inits, cmds, nil
}
