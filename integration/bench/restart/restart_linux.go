// Package restart is the bench's restart part: a supervised service is
// SIGKILLed, and the time until its replacement runs is measured for the
// corral daemon (a new sandbox), supervisord and s6 (no sandbox), kills
// interleaved, beside a cold `corral run /bin/true`.
package restart

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/child"
	"github.com/corral-dev/corral/integration/bench/coldstart"
	"github.com/corral-dev/corral/integration/bench/daemon"
	"github.com/corral-dev/corral/integration/bench/procfs"
	"github.com/corral-dev/corral/integration/bench/scratch"
	"github.com/corral-dev/corral/integration/bench/supervise"
)

const (
	// gap is the pause after each restart (and each reference run)
	// before the next kill, so that one tool's restart never overlaps
	// another's.
	gap = 300 * time.Millisecond
	// warmup rounds run first and are not counted.
	warmup = 2
	// timeout is the longest a restart may take before the bench gives
	// up on it.
	timeout = 10 * time.Second
	// service is the name of the service every supervisor keeps up.
	service = "stamp"
	// cgroupParent holds the restart daemon's sandboxes.
	cgroupParent = cgroupfs.Parent + "/restart"
	// goalMS is the most corral's restart median may exceed the median
	// cold start of `corral run /bin/true` in the same rounds.
	goalMS = 2.0
	// serviceCommand is what the stamp script becomes.
	serviceCommand = "sleep 100000"
)

// Config is what the restart part is told.
type Config struct {
	Corral string // the corral binary, an absolute path
	Kills  int    // measured kills of each supervisor's service
}

// row is one thing measured in each round: a supervisor's restart after a
// kill, or a reference.
type row struct {
	name, note string
	measure    func() (time.Duration, error)
	samples    []time.Duration
}

// bench is the restart measurement's setup: three supervisors keeping
// the same stamp service up, and the references.
type bench struct {
	cfg    Config
	sc     *scratch.Dir
	g      *child.Group
	dir    string
	pids   string // the pids hierarchy's mount point
	daemon *daemon.Daemon
	events *daemon.Stream
	sup    *child.Proc
	s6     *child.Proc
	// corralKills are the times of the measured kills of corral's
	// sandbox, to match with the daemon's events.
	corralKills []time.Time
	// lastPIDs are the last victims of each tool, which must not be
	// found again: a supervisor that has not restarted yet.
	lastPIDs map[string]int
	counting bool // past the warm-up
	// cold is `corral run /bin/true`, the cold-start reference; null is
	// its stdin and stdout.
	cold *coldstart.Variant
	null *os.File
}

func (b *bench) path(elem ...string) string {
	return filepath.Join(append([]string{b.dir}, elem...)...)
}

// Run measures restart latency: a corral daemon, supervisord and
// s6-svscan each keep the same stamp service running (corral in a
// sandbox, the others without one). Each round SIGKILLs each one's
// service once and runs the references once (a cold `corral run
// /bin/true`, and the service's script started by the bench itself), one
// after the other in a rotating order, gap apart. A restart's time is
// from just before the kill to the time the new service process stamps;
// the bench then waits for that stamp, so restarts never overlap. The
// long-running processes are started in g; progress lines go to w.
func Run(ctx context.Context, cfg Config, sc *scratch.Dir, g *child.Group, w io.Writer) (*Report, error) {
	b := &bench{cfg: cfg, sc: sc, g: g, dir: sc.Path("restart"), lastPIDs: map[string]int{}}
	for _, d := range []string{"corral", "supervisord", "s6/scan", "direct", "logs"} {
		if err := os.MkdirAll(b.path(d), 0o755); err != nil {
			return nil, fmt.Errorf("make restart scratch dir: %w", err)
		}
	}
	var err error
	if b.pids, err = cgroupfs.PidsRoot(); err != nil {
		return nil, err
	}
	defer b.closeFiles()
	defer func() {
		if b.events != nil {
			b.events.Close()
		}
	}()
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	rows, err := b.rows()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "\nrestart: %d warm-up + %d measured rounds; each kills corral's, supervisord's and s6's service once and runs the references once, in a rotating order, %s apart\n",
		warmup, cfg.Kills, gap)
	for r := 0; r < warmup+cfg.Kills; r++ {
		b.counting = r >= warmup
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
			time.Sleep(gap)
		}
	}
	// Every kill must have been a restart: the daemon counts them.
	st, err := b.daemon.Client.Status(ctx, service)
	if err != nil {
		return nil, err
	}
	if want := warmup + cfg.Kills; st.Restarts != want {
		return nil, fmt.Errorf("corral daemon counts %d restarts of %s after %d kills", st.Restarts, service, want)
	}
	events := b.events.Drain()
	if err := b.stop(); err != nil {
		return nil, err
	}
	return newReport(cfg, rows, b.corralKills, events), nil
}

// start starts the three supervisors and waits until each has started the
// service once.
func (b *bench) start(ctx context.Context) error {
	cfg := b.path("corral.yaml")
	if err := os.WriteFile(cfg, []byte(b.corralConfig()), 0o644); err != nil {
		return fmt.Errorf("write restart service file: %w", err)
	}
	state, err := b.sc.StateDir("restart", "state")
	if err != nil {
		return err
	}
	d, err := daemon.Start(b.g, b.cfg.Corral, state, cfg, b.path("daemon.log"))
	if err != nil {
		return err
	}
	b.daemon = d
	if err := d.WaitReady(ctx, 10*time.Second); err != nil {
		return err
	}
	if b.events, err = d.Subscribe(ctx); err != nil {
		return err
	}
	if b.sup, err = supervise.Supervisord(b.g, b.path("supervisord"), service,
		stampScript(b.path("supervisord", "started"), serviceCommand)); err != nil {
		return err
	}
	if err := supervise.WriteS6Service(b.path("s6", "scan"), service,
		stampScript(b.path("s6", "started"), serviceCommand)); err != nil {
		return err
	}
	if b.s6, err = supervise.S6(b.g, b.path("s6", "scan"), b.path("s6", "svscan.log")); err != nil {
		return err
	}
	for _, s := range []struct {
		p     *child.Proc
		stamp string
	}{{d.Proc, b.path("corral", "started")}, {b.sup, b.path("supervisord", "started")}, {b.s6, b.path("s6", "started")}} {
		if _, _, err := waitStamp(s.stamp, timeout, s.p.ExitedErr); err != nil {
			return fmt.Errorf("%s: first start: %w%s", s.p.Name, err, s.p.LogTail())
		}
	}
	return nil
}

// corralConfig is the daemon's service file: the stamp service in a
// sandbox with the cold-start variant's limits, writing its stamp through
// a bind mount (id-mapped: the sandbox's root, in its own user namespace,
// writes as the host's root there, which owns the dir), restarted at once. crash_loop is raised out of reach: by
// default 5 failures within 60 s, which the kills reach in 20 s, hold a
// service at backoff.max (30 s) between starts.
func (b *bench) corralConfig() string {
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
`, cgroupParent, daemon.YAMLString(b.path("logs")), service,
		daemon.YAMLList("/bin/sh", "-c", stampScript("/shared/started", serviceCommand)),
		daemon.YAMLString(b.path("corral")+":/shared:rw,idmap"),
		coldstart.MemoryFlag, coldstart.CPUsFlag, coldstart.PidsFlag)
}

// rows are the supervisors and the references, in the order of the first
// round.
func (b *bench) rows() ([]*row, error) {
	cold, err := coldstart.CorralVariant(b.cfg.Corral, b.sc, false)
	if err != nil {
		return nil, err
	}
	if cold.Stderr, err = os.Create(b.path("cold-stderr")); err != nil {
		return nil, err
	}
	b.cold = cold
	if b.null, err = os.OpenFile(os.DevNull, os.O_RDWR, 0); err != nil {
		return nil, err
	}
	supPID, s6PID := b.sup.PID(), b.s6.PID()
	return []*row{
		{name: "corral daemon", note: "sandboxed: SIGKILL to the sandbox's init; default hardening, 64M/0.5 CPU/64 pids, backoff 0s",
			measure: b.killCorral},
		{name: "supervisord", note: "NO sandbox: SIGKILL to the service; autorestart, startsecs=0",
			measure: func() (time.Duration, error) {
				return b.killPlain(b.sup, b.path("supervisord", "started"), func(pid int) bool { return procfs.DescendsFrom(pid, supPID, 1) })
			}},
		{name: "s6-supervise", note: "NO sandbox: SIGKILL to the service; s6-svscan + s6-supervise",
			measure: func() (time.Duration, error) {
				return b.killPlain(b.s6, b.path("s6", "started"), func(pid int) bool { return procfs.DescendsFrom(pid, s6PID, 2) })
			}},
		{name: "corral run /bin/true", note: "reference: cold start-to-exit of a sandbox (same limits), no kill",
			measure: func() (time.Duration, error) { return cold.RunOnce(b.null) }},
		{name: "sh script, no supervisor", note: "reference: fork+exec of the service's script by the bench, up to its stamp",
			measure: b.direct},
	}, nil
}

// closeFiles closes the cold reference's files.
func (b *bench) closeFiles() {
	if b.cold != nil && b.cold.Stderr != nil {
		b.cold.Stderr.Close()
	}
	if b.null != nil {
		b.null.Close()
	}
}

// killCorral kills the init of corral's sandbox, whose PID `corral status
// --json` reports, and times the start of the new one. The PID must be a
// corral init in the service's own cgroup: nothing else is ever killed.
func (b *bench) killCorral() (time.Duration, error) {
	st, err := b.daemon.Client.Status(context.Background(), service)
	if err != nil {
		return 0, err
	}
	if st.State != "running" || st.PID == 0 || st.PID == b.lastPIDs["corral"] {
		return 0, fmt.Errorf("service %s is %s with pid %d (last killed: %d): not restarted", service, st.State, st.PID, b.lastPIDs["corral"])
	}
	procs, err := cgroupfs.Procs(b.pids, st.Cgroup)
	if err != nil {
		return 0, fmt.Errorf("sandbox cgroup: %w", err)
	}
	if !slices.Contains(procs, st.PID) || procfs.Comm(st.PID) != ".corral-init" {
		return 0, fmt.Errorf("pid %d is not a corral init in %s (procs %v, comm %q)", st.PID, st.Cgroup, procs, procfs.Comm(st.PID))
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
	_, at, err := waitStamp(stamp, timeout, b.daemon.ErrIfExited)
	if err != nil {
		return 0, err
	}
	return at.Sub(t0), nil
}

// killPlain kills the service process of supervisord or s6, whose PID is
// in its last stamp, and times the start of the new one. The PID must be
// a sleep that is the supervisor's: nothing else is ever killed.
func (b *bench) killPlain(p *child.Proc, stamp string, ours func(int) bool) (time.Duration, error) {
	pid, _, err := readStamp(stamp)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", stamp, err)
	}
	if pid == b.lastPIDs[p.Name] || procfs.Comm(pid) != "sleep" || !ours(pid) {
		return 0, fmt.Errorf("pid %d (%q) is not %s's running service", pid, procfs.Comm(pid), p.Name)
	}
	if err := os.Remove(stamp); err != nil {
		return 0, err
	}
	t0 := time.Now()
	if err := unix.Kill(pid, unix.SIGKILL); err != nil {
		return 0, fmt.Errorf("kill %d: %w", pid, err)
	}
	b.lastPIDs[p.Name] = pid
	_, at, err := waitStamp(stamp, timeout, p.ExitedErr)
	if err != nil {
		return 0, fmt.Errorf("%w%s", err, p.LogTail())
	}
	return at.Sub(t0), nil
}

// direct runs the service's script as a child of the bench, ending in
// true rather than sleep: what the stamp costs without any supervisor.
func (b *bench) direct() (time.Duration, error) {
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

// stop stops the three supervisors, each by its PID, and checks that
// each took its service down with it.
func (b *bench) stop() error {
	var errs []error
	if _, err := b.daemon.StopAndCheck(cgroupParent); err != nil {
		errs = append(errs, err)
	}
	for _, s := range []struct {
		p     *child.Proc
		stamp string
	}{{b.sup, b.path("supervisord", "started")}, {b.s6, b.path("s6", "started")}} {
		// The service, and s6-svscan's s6-supervise.
		var procs []int
		if pid, _, err := readStamp(s.stamp); err == nil {
			procs = append(procs, pid)
		}
		if s.p == b.s6 {
			kids, _ := procfs.Children(s.p.PID())
			procs = append(procs, kids...)
		}
		if _, err := s.p.Stop(); err != nil {
			errs = append(errs, err)
		}
		if left := procfs.WaitGone(procs, 5*time.Second); len(left) > 0 {
			errs = append(errs, fmt.Errorf("%s exited but left processes %v running", s.p.Name, left))
		}
	}
	return errors.Join(errs...)
}
