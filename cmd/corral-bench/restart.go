package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// restartGap is the pause after each restart (and each reference
	// run) before the next kill, so that one tool's restart never
	// overlaps another's.
	restartGap = 300 * time.Millisecond
	// restartWarmup rounds run first and are not counted.
	restartWarmup = 2
	// restartTimeout is the longest a restart may take before the bench
	// gives up on it.
	restartTimeout = 10 * time.Second
	// restartService is the name of the service every supervisor keeps up.
	restartService = "stamp"
	// restartCgroupParent holds the restart daemon's sandboxes.
	restartCgroupParent = cgroupParent + "/restart"
	// restartGoalMS is the most corral's restart median may exceed the
	// median cold start of `corral run /bin/true` in the same rounds.
	restartGoalMS = 2.0
)

// restartRow is one thing measured in each round: a supervisor's restart
// after a kill, or a reference.
type restartRow struct {
	name, note string
	measure    func() (time.Duration, error)
	samples    []time.Duration
}

// restartBench is the restart measurement's setup: three supervisors
// keeping the same stamp service up, and the references.
type restartBench struct {
	o      *options
	sc     *scratch
	cs     *children
	dir    string
	pids   string // the pids hierarchy's mount point
	daemon *corralDaemon
	events *eventStream
	sup    *child
	s6     *child
	// corralKills are the times of the measured kills of corral's
	// sandbox, to match with the daemon's events.
	corralKills []time.Time
	// lastPIDs are the last victims of each tool, which must not be
	// found again: a supervisor that has not restarted yet.
	lastPIDs map[string]int
	counting bool // past the warm-up
	// cold is `corral run /bin/true`, the cold-start reference; null is
	// its stdin and stdout.
	cold *variant
	null *os.File
}

func (b *restartBench) path(elem ...string) string {
	return filepath.Join(append([]string{b.dir}, elem...)...)
}

// runRestart measures restart latency: a corral daemon, supervisord and
// s6-svscan each keep the same stamp service running (corral in a
// sandbox, the others without one). Each round SIGKILLs each one's
// service once and runs the references once (a cold `corral run
// /bin/true`, and the service's script started by the bench itself), one
// after the other in a rotating order, restartGap apart. A restart's time
// is from just before the kill to the time the new service process
// stamps; the bench then waits for that stamp, so restarts never overlap.
func runRestart(ctx context.Context, o *options, sc *scratch, cs *children) (*restartReport, error) {
	b := &restartBench{o: o, sc: sc, cs: cs, dir: sc.path("restart"), lastPIDs: map[string]int{}}
	for _, d := range []string{"corral", "supervisord", "s6/scan", "direct", "logs"} {
		if err := os.MkdirAll(b.path(d), 0o755); err != nil {
			return nil, fmt.Errorf("make restart scratch dir: %w", err)
		}
	}
	var err error
	if b.pids, err = pidsRoot(); err != nil {
		return nil, err
	}
	defer func() {
		if b.events != nil {
			b.events.close()
		}
	}()
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	rows, err := b.rows()
	if err != nil {
		return nil, err
	}
	fmt.Printf("\nrestart: %d warm-up + %d measured rounds; each kills corral's, supervisord's and s6's service once and runs the references once, in a rotating order, %s apart\n",
		restartWarmup, o.kills, restartGap)
	for r := 0; r < restartWarmup+o.kills; r++ {
		b.counting = r >= restartWarmup
		for i := range rows {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("interrupted in restart round %d: %w", r+1, err)
			}
			row := rows[(r+i)%len(rows)]
			d, err := row.measure()
			if err != nil {
				return nil, fmt.Errorf("restart round %d: %s: %w", r+1, row.name, err)
			}
			if b.counting {
				row.samples = append(row.samples, d)
			}
			time.Sleep(restartGap)
		}
	}
	// Every kill must have been a restart: the daemon counts them.
	st, err := b.daemon.client.Status(ctx, restartService)
	if err != nil {
		return nil, err
	}
	if want := restartWarmup + o.kills; st.Restarts != want {
		return nil, fmt.Errorf("corral daemon counts %d restarts of %s after %d kills", st.Restarts, restartService, want)
	}
	events := b.drainEvents()
	if err := b.stop(); err != nil {
		return nil, err
	}
	return newRestartReport(o, rows, b.corralKills, events), nil
}

// start starts the three supervisors and waits until each has started the
// service once.
func (b *restartBench) start(ctx context.Context) error {
	cfg := b.path("corral.yaml")
	if err := os.WriteFile(cfg, []byte(b.corralConfig()), 0o644); err != nil {
		return fmt.Errorf("write restart service file: %w", err)
	}
	d, err := startDaemon(b.cs, b.o.corral, b.path("state"), cfg, b.path("daemon.log"))
	if err != nil {
		return err
	}
	b.daemon = d
	b.sc.stateDirs = append(b.sc.stateDirs, d.stateDir)
	if err := d.waitReady(ctx, 10*time.Second); err != nil {
		return err
	}
	if b.events, err = d.subscribe(ctx); err != nil {
		return err
	}
	if b.sup, err = startSupervisord(b.cs, b.path("supervisord"), restartService,
		stampScript(b.path("supervisord", "started"), "sleep 100000")); err != nil {
		return err
	}
	if err := writeS6Service(b.path("s6", "scan"), restartService,
		stampScript(b.path("s6", "started"), "sleep 100000")); err != nil {
		return err
	}
	if b.s6, err = startS6(b.cs, b.path("s6", "scan"), b.path("s6", "svscan.log")); err != nil {
		return err
	}
	for _, w := range []struct {
		c     *child
		stamp string
	}{{d.child, b.path("corral", "started")}, {b.sup, b.path("supervisord", "started")}, {b.s6, b.path("s6", "started")}} {
		if _, _, err := waitStamp(w.stamp, restartTimeout, exitedErr(w.c)); err != nil {
			return fmt.Errorf("%s: first start: %w%s", w.c.name, err, logTail(w.c.logPath))
		}
	}
	return nil
}

// corralConfig is the daemon's service file: the stamp service in a
// sandbox with the cold-start variant's limits, writing its stamp through
// a bind mount, restarted at once. crash_loop is raised out of reach: by
// default 5 failures within 60 s, which the kills reach in 20 s, hold a
// service at backoff.max (30 s) between starts.
func (b *restartBench) corralConfig() string {
	return fmt.Sprintf(`daemon:
  cgroup_parent: %s
  log_dir: %s
services:
  %s:
    command: %s
    mounts: [%s]
    resources: {memory: %s, cpus: %s, pids: %s}
    restart:
      policy: always
      backoff: {initial: 0s}
      crash_loop: {failures: 1000000, window: 1s}
`, restartCgroupParent, yamlString(b.path("logs")), restartService,
		yamlList("/bin/sh", "-c", stampScript("/shared/started", "sleep 100000")),
		yamlString(b.path("corral")+":/shared:rw"),
		limitMemoryFlag, limitCPUsFlag, limitPidsFlag)
}

func exitedErr(c *child) func() error {
	return func() error {
		if c.exited() {
			return fmt.Errorf("%s exited: %v", c.name, c.exitErr)
		}
		return nil
	}
}

// rows are the supervisors and the references, in the order of the first
// round.
func (b *restartBench) rows() ([]*restartRow, error) {
	cold := corralVariant(b.o.corral, b.sc, false)
	var err error
	if cold.stderr, err = os.Create(b.path("cold-stderr")); err != nil {
		return nil, err
	}
	if b.null, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
		return nil, err
	}
	b.cold = cold
	supPID, s6PID := b.sup.pid(), b.s6.pid()
	return []*restartRow{
		{name: "corral daemon", note: "sandboxed: SIGKILL to the sandbox's init; default hardening, 64M/0.5 CPU/64 pids, backoff 0s",
			measure: b.killCorral},
		{name: "supervisord", note: "NO sandbox: SIGKILL to the service; autorestart, startsecs=0",
			measure: func() (time.Duration, error) {
				return b.killPlain(b.sup, b.path("supervisord", "started"), func(pid int) bool { return descendsFrom(pid, supPID, 1) })
			}},
		{name: "s6-supervise", note: "NO sandbox: SIGKILL to the service; s6-svscan + s6-supervise",
			measure: func() (time.Duration, error) {
				return b.killPlain(b.s6, b.path("s6", "started"), func(pid int) bool { return descendsFrom(pid, s6PID, 2) })
			}},
		{name: "corral run /bin/true", note: "reference: cold start-to-exit of a sandbox (same limits), no kill",
			measure: func() (time.Duration, error) { return cold.runOnce(b.null) }},
		{name: "sh script, no supervisor", note: "reference: fork+exec of the service's script by the bench, up to its stamp",
			measure: b.direct},
	}, nil
}

// killCorral kills the init of corral's sandbox, whose PID `corral status
// --json` reports, and times the start of the new one. The PID must be a
// corral init in the service's own cgroup: nothing else is ever killed.
func (b *restartBench) killCorral() (time.Duration, error) {
	st, err := b.daemon.client.Status(context.Background(), restartService)
	if err != nil {
		return 0, err
	}
	if st.State != "running" || st.PID == 0 || st.PID == b.lastPIDs["corral"] {
		return 0, fmt.Errorf("service %s is %s with pid %d (last killed: %d): not restarted", restartService, st.State, st.PID, b.lastPIDs["corral"])
	}
	procs, err := cgroupProcs(b.pids, st.Cgroup)
	if err != nil {
		return 0, fmt.Errorf("sandbox cgroup: %w", err)
	}
	if !slices.Contains(procs, st.PID) || comm(st.PID) != ".corral-init" {
		return 0, fmt.Errorf("pid %d is not a corral init in %s (procs %v, comm %q)", st.PID, st.Cgroup, procs, comm(st.PID))
	}
	stamp := b.path("corral", "started")
	if err := os.Remove(stamp); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := unix.Kill(st.PID, unix.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill %d: %w", st.PID, err)
	}
	b.lastPIDs["corral"] = st.PID
	if b.counting {
		b.corralKills = append(b.corralKills, t0)
	}
	_, at, err := waitStamp(stamp, restartTimeout, b.daemon.errIfExited)
	if err != nil {
		return 0, err
	}
	return at.Sub(t0), nil
}

// killPlain kills the service process of supervisord or s6, whose PID is
// in its last stamp, and times the start of the new one. The PID must be
// a sleep that is the supervisor's: nothing else is ever killed.
func (b *restartBench) killPlain(c *child, stamp string, ours func(int) bool) (time.Duration, error) {
	pid, _, err := readStamp(stamp)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", stamp, err)
	}
	if pid == b.lastPIDs[c.name] || comm(pid) != "sleep" || !ours(pid) {
		return 0, fmt.Errorf("pid %d (%q) is not %s's running service", pid, comm(pid), c.name)
	}
	if err := os.Remove(stamp); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill %d: %w", pid, err)
	}
	b.lastPIDs[c.name] = pid
	_, at, err := waitStamp(stamp, restartTimeout, exitedErr(c))
	if err != nil {
		return 0, fmt.Errorf("%w%s", err, logTail(c.logPath))
	}
	return at.Sub(t0), nil
}

// direct runs the service's script as a child of the bench, ending in
// true rather than sleep: what the stamp costs without any supervisor.
func (b *restartBench) direct() (time.Duration, error) {
	stamp := b.path("direct", "started")
	if err := os.Remove(stamp); err != nil && !os.IsNotExist(err) {
		return 0, err
	}
	cmd := exec.Command("/bin/sh", "-c", stampScript(stamp, "true"))
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("%s: %w", cmd, err)
	}
	_, at, err := readStamp(stamp)
	if err != nil {
		return 0, err
	}
	return at.Sub(t0), nil
}

// drainEvents ends the event subscription and returns what it received.
func (b *restartBench) drainEvents() []receivedEvent {
	b.events.close()
	var out []receivedEvent
	for ev := range b.events.C {
		out = append(out, ev)
	}
	return out
}

// stop stops the three supervisors, each by its PID, and checks that
// each took its service down with it.
func (b *restartBench) stop() error {
	var errs []error
	if b.cold != nil {
		b.cold.stderr.Close()
		b.null.Close()
	}
	if _, err := b.daemon.stopAndCheck(restartCgroupParent); err != nil {
		errs = append(errs, err)
	}
	for _, s := range []struct {
		c     *child
		stamp string
	}{{b.sup, b.path("supervisord", "started")}, {b.s6, b.path("s6", "started")}} {
		// The service, and s6-svscan's s6-supervise.
		var procs []int
		if pid, _, err := readStamp(s.stamp); err == nil {
			procs = append(procs, pid)
		}
		if s.c == b.s6 {
			kids, _ := childrenOf(s.c.pid())
			procs = append(procs, kids...)
		}
		if _, err := s.c.stop(); err != nil {
			errs = append(errs, err)
		}
		if left := waitGone(procs, 5*time.Second); len(left) > 0 {
			errs = append(errs, fmt.Errorf("%s exited but left processes %v running", s.c.name, left))
		}
	}
	return errors.Join(errs...)
}
