package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

const (
	// scaleReps is how many times each supervisor starts, idles and
	// stops all the services.
	scaleReps = 3
	// scaleSettle is the pause between all running and the memory
	// reading, and scaleIdle the window over which wake-ups are counted.
	scaleSettle = time.Second
	scaleIdle   = 10 * time.Second
	// scaleGap separates one supervisor's run from the next, so that the
	// kernel has finished tearing the previous one's down.
	scaleGap = time.Second
	// scaleTimeout is the longest the bench waits for all to run.
	scaleTimeout = 60 * time.Second
	// scaleCgroupParent holds the scale daemon's sandboxes.
	scaleCgroupParent = cgroupParent + "/scale"
	scaleMemoryFlag   = "32M"
	scalePidsFlag     = "16"
	scaleCommand      = "/bin/sleep 100000"
)

// Goals printed beside corral's figures.
const (
	scaleUpGoal   = 2 * time.Second
	scaleDownGoal = 3 * time.Second
)

// scaleRun is one supervisor's run: start all the services, read memory,
// count wake-ups while idle, stop them all.
type scaleRun struct {
	// UpS is from the supervisor's fork to the bench knowing every
	// service running; FirstUpS to the first one.
	UpS      float64 `json:"up_s"`
	FirstUpS float64 `json:"first_up_s"`
	// StartFailures are starts that failed and were retried.
	StartFailures int `json:"start_failures"`
	// StartCPUS is the CPU time the supervisor used up to all running,
	// StartChildCPUS that of its children that ended meanwhile (for
	// corral, libcontainer's nsexec stages);
	// HostCPUS the time all CPUs were busy meanwhile, whoever used it
	// (sandbox set-up in the kernel and in the inits included).
	StartCPUS      float64 `json:"start_cpu_s"`
	StartChildCPUS float64 `json:"start_child_cpu_s"`
	HostCPUS       float64 `json:"host_cpu_s"`
	// InitsCPUS is the CPU time of corral's sandbox inits so far: an
	// init keeps its PID from the fork by libcontainer through its
	// set-up of the sandbox (runc's Go init) to corral's own init, so
	// this is what setting up the sandboxes cost inside them.
	InitsCPUS float64 `json:"inits_cpu_s"`
	// SupervisorPSS is the corral daemon's, or s6-svscan's and every
	// s6-supervise's; InitsPSS the corral sandboxes' inits';
	// CommandsPSS the services' own. Bytes.
	SupervisorPSS int64 `json:"supervisor_pss"`
	InitsPSS      int64 `json:"inits_pss"`
	CommandsPSS   int64 `json:"commands_pss"`
	// CgroupMem is the memory charged to the sandboxes' cgroups, and
	// CgroupKernelMem the kernel's part of it (corral only). Bytes.
	CgroupMem       int64 `json:"cgroup_mem"`
	CgroupKernelMem int64 `json:"cgroup_kernel_mem"`
	// IdleWakeups are the supervisor's context switches over the idle
	// window; IdleInitWakeups the corral inits'.
	IdleWakeups     int64   `json:"idle_wakeups"`
	IdleInitWakeups int64   `json:"idle_init_wakeups"`
	IdleCPUMS       float64 `json:"idle_cpu_ms"`
	// DownS is from SIGTERM to the supervisor's exit with every service
	// gone.
	DownS float64 `json:"down_s"`
	// What corral's metrics endpoint costs its daemon.
	metricsCost
}

type scaleBench struct {
	o    *options
	sc   *scratch
	cs   *children
	dir  string
	cfg  string // the corral daemon's service file, written for each run
	pids string // the pids hierarchy's mount point
}

func (b *scaleBench) path(elem ...string) string {
	return filepath.Join(append([]string{b.dir}, elem...)...)
}

func (b *scaleBench) name(i int) string { return fmt.Sprintf("s%03d", i) }

// runScale measures a supervisor of many services: a corral daemon on a
// service file of o.scale services, and s6-svscan on a scan dir of as
// many, each started, measured and stopped scaleReps times, the two
// alternating. Each run: time from the fork to all running, memory, idle
// wake-ups and CPU over scaleIdle, (corral) the cost of its metrics
// endpoint, time from SIGTERM to all gone.
func runScale(ctx context.Context, o *options, sc *scratch, cs *children) (*scaleReport, error) {
	b := &scaleBench{o: o, sc: sc, cs: cs, dir: sc.path("scale")}
	if err := os.MkdirAll(b.path("logs"), 0o755); err != nil {
		return nil, fmt.Errorf("make scale scratch dir: %w", err)
	}
	var err error
	if b.pids, err = pidsRoot(); err != nil {
		return nil, err
	}
	b.cfg = b.path("corral.yaml")
	rep := &scaleReport{Services: o.scale, Reps: scaleReps, IdleS: scaleIdle.Seconds()}
	withS6 := true
	if err := s6Available(); err != nil {
		withS6 = false
		rep.Notes = append(rep.Notes, "s6-svscan: unavailable: "+err.Error())
	}
	fmt.Printf("\nscale: %d services, %d repetitions (corral and s6 in alternating order), %s idle window; corral's metrics: %s idle, %d scrapes\n",
		o.scale, scaleReps, scaleIdle, metricsInterval, metricsScrapes)
	for r := 0; r < scaleReps; r++ {
		order := []string{"corral", "s6"}
		if r%2 == 1 {
			order = []string{"s6", "corral"}
		}
		for _, tool := range order {
			if tool == "s6" && !withS6 {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("interrupted in scale repetition %d: %w", r+1, err)
			}
			var run scaleRun
			var err error
			if tool == "corral" {
				run, err = b.corralOnce(ctx, r)
				rep.Corral = append(rep.Corral, run)
			} else {
				run, err = b.s6Once(ctx, r)
				rep.S6 = append(rep.S6, run)
			}
			if err != nil {
				return nil, fmt.Errorf("scale repetition %d, %s: %w", r+1, tool, err)
			}
			time.Sleep(scaleGap)
		}
	}
	return rep, nil
}

// corralConfig is the daemon's service file: every service runs the
// command on the built-in root, with the limits of daemon.defaults; the
// daemon serves its metrics on metricsListen.
func (b *scaleBench) corralConfig(metricsListen string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "daemon:\n  cgroup_parent: %s\n  log_dir: %s\n  metrics: {listen: %s}\n  defaults:\n    resources: {memory: %s, pids: %s}\nservices:\n",
		scaleCgroupParent, yamlString(b.path("logs")), yamlString(metricsListen), scaleMemoryFlag, scalePidsFlag)
	for i := 0; i < b.o.scale; i++ {
		fmt.Fprintf(&s, "  %s: {command: %s}\n", b.name(i), yamlList(strings.Fields(scaleCommand)...))
	}
	return s.String()
}

func (b *scaleBench) corralOnce(ctx context.Context, rep int) (run scaleRun, err error) {
	// A port of its own for each run, taken just before the daemon
	// starts: little time for another process to take it meanwhile.
	metricsListen, err := freeMetricsListen()
	if err != nil {
		return run, err
	}
	if err := os.WriteFile(b.cfg, []byte(b.corralConfig(metricsListen)), 0o644); err != nil {
		return run, fmt.Errorf("write scale service file: %w", err)
	}
	busy0, err := hostBusyTicks()
	if err != nil {
		return run, err
	}
	d, err := startDaemon(b.cs, b.o.corral, b.path(fmt.Sprintf("state-%d", rep)), b.cfg, b.path(fmt.Sprintf("daemon-%d.log", rep)))
	if err != nil {
		return run, err
	}
	b.sc.stateDirs = append(b.sc.stateDirs, d.stateDir)
	if err := d.waitReady(ctx, scaleTimeout); err != nil {
		return run, err
	}
	stream, err := d.subscribe(ctx)
	if err != nil {
		return run, err
	}
	first, last, failures, err := b.waitAllRunning(ctx, d, stream)
	stream.close()
	if err != nil {
		return run, err
	}
	if run.HostCPUS, err = hostCPUSince(busy0); err != nil {
		return run, err
	}
	run.UpS, run.FirstUpS, run.StartFailures = last.Sub(d.started).Seconds(), first.Sub(d.started).Seconds(), failures
	st, err := readStat(d.pid())
	if err != nil {
		return run, err
	}
	run.StartCPUS, run.StartChildCPUS = float64(st.ticks)/userHZ, float64(st.childTicks)/userHZ
	inits, cmds, err := b.corralProcs(ctx, d)
	if err != nil {
		return run, err
	}
	for _, p := range inits {
		st, err := readStat(p)
		if err != nil {
			return run, err
		}
		run.InitsCPUS += float64(st.ticks) / userHZ
	}
	time.Sleep(scaleSettle)
	if err := b.memory(&run, []int{d.pid()}, inits, cmds); err != nil {
		return run, err
	}
	if run.CgroupMem, run.CgroupKernelMem, err = cgroupMemory(scaleCgroupParent); err != nil {
		return run, fmt.Errorf("memory of the sandboxes' cgroups: %w", err)
	}
	if err := b.idle(&run, []int{d.pid()}, inits); err != nil {
		return run, err
	}
	if run.metricsCost, err = b.metricsCost(ctx, d, metricsListen); err != nil {
		return run, fmt.Errorf("metrics endpoint: %w", err)
	}
	down, err := d.stopAndCheck(scaleCgroupParent)
	if err != nil {
		return run, err
	}
	if left := waitGone(append(inits, cmds...), 0); len(left) > 0 {
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
func (b *scaleBench) waitAllRunning(ctx context.Context, d *corralDaemon, stream *eventStream) (first, last time.Time, failures int, err error) {
	running := map[string]bool{}
	saw := func(name string, at time.Time) {
		if running[name] {
			return
		}
		running[name] = true
		if first.IsZero() {
			first = at
		}
		last = at
	}
	refresh := func() error {
		list, err := d.client.List(ctx)
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
		return first, last, 0, err
	}
	const quiet = 500 * time.Millisecond
	deadline := time.After(scaleTimeout)
	for len(running) < b.o.scale {
		select {
		case ev, ok := <-stream.C:
			if !ok {
				return first, last, failures, fmt.Errorf("event stream ended with %d of %d running%s", len(running), b.o.scale, logTail(d.logPath))
			}
			switch ev.To {
			case "running":
				saw(ev.Service, ev.at)
			case "backoff", "crashloop":
				failures++
			case "failed", "stopped":
				return first, last, failures, fmt.Errorf("service %s %s: %s%s", ev.Service, ev.To, ev.Reason, logTail(d.logPath))
			}
		case <-time.After(quiet):
			if err := refresh(); err != nil {
				return first, last, failures, err
			}
		case <-deadline:
			return first, last, failures, fmt.Errorf("%d of %d services running after %s%s", len(running), b.o.scale, scaleTimeout, logTail(d.logPath))
		case <-ctx.Done():
			return first, last, failures, ctx.Err()
		}
	}
	return first, last, failures, nil
}

// corralProcs lists the inits of the daemon's sandboxes (the PIDs it
// reports) and the commands (the other processes of each sandbox's
// cgroup), checking that each sandbox is an init running one sleep.
func (b *scaleBench) corralProcs(ctx context.Context, d *corralDaemon) (inits, cmds []int, err error) {
	list, err := d.client.List(ctx)
	if err != nil {
		return nil, nil, err
	}
	if len(list) != b.o.scale {
		return nil, nil, fmt.Errorf("daemon lists %d services, not %d", len(list), b.o.scale)
	}
	for _, s := range list {
		procs, err := cgroupProcs(b.pids, scaleCgroupParent+"/"+s.Name)
		if err != nil {
			return nil, nil, fmt.Errorf("service %s: %w", s.Name, err)
		}
		var others []int
		for _, p := range procs {
			if p != s.PID {
				others = append(others, p)
			}
		}
		if s.State != "running" || comm(s.PID) != ".corral-init" || len(others) != 1 || comm(others[0]) != "sleep" {
			return nil, nil, fmt.Errorf("service %s: state %s, init %d (%q), cgroup procs %v: not an init and one sleep", s.Name, s.State, s.PID, comm(s.PID), procs)
		}
		inits = append(inits, s.PID)
		cmds = append(cmds, others[0])
	}
	return inits, cmds, nil
}

// memory reads the PSS of the supervisor, the inits and the commands.
func (b *scaleBench) memory(run *scaleRun, supervisor, inits, cmds []int) error {
	var err error
	if run.SupervisorPSS, err = sumPSS(supervisor); err != nil {
		return err
	}
	if run.InitsPSS, err = sumPSS(inits); err != nil {
		return err
	}
	run.CommandsPSS, err = sumPSS(cmds)
	return err
}

// idle counts the context switches and CPU time of the supervisor (and of
// the inits, when there are any) over scaleIdle, the bench doing nothing
// with them meanwhile.
func (b *scaleBench) idle(run *scaleRun, supervisor, inits []int) error {
	s0, err := sampleActivity(supervisor)
	if err != nil {
		return err
	}
	i0, err := sampleActivity(inits)
	if err != nil {
		return err
	}
	time.Sleep(scaleIdle)
	s1, err := sampleActivity(supervisor)
	if err != nil {
		return err
	}
	i1, err := sampleActivity(inits)
	if err != nil {
		return err
	}
	run.IdleWakeups, _ = wakeups(s0, s1)
	run.IdleInitWakeups, _ = wakeups(i0, i1)
	run.IdleCPUMS = float64(s1.ticks-s0.ticks) * 1000 / userHZ
	return nil
}

// hostCPUSince is the CPU time, in seconds, all CPUs were busy since
// hostBusyTicks returned busy0.
func hostCPUSince(busy0 int64) (float64, error) {
	busy, err := hostBusyTicks()
	if err != nil {
		return 0, err
	}
	return float64(busy-busy0) / userHZ, nil
}
