// Package scale is the bench's scale part: a corral daemon with N
// services, and s6-svscan with the same services (no sandbox), each
// started, measured and stopped a few times, alternating: the time until
// every service's command has exec'd, memory (PSS), idle wake-ups and CPU,
// what the daemon's metrics endpoint costs it, and the time to stop them
// all.
package scale

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/child"
	"github.com/corral-dev/corral/integration/bench/procfs"
	"github.com/corral-dev/corral/integration/bench/scratch"
	"github.com/corral-dev/corral/integration/bench/supervise"
)

const (
	// reps is how many times each supervisor starts, idles and stops all
	// the services.
	reps = 3
	// settle is the pause between all running and the memory reading,
	// and idle the window over which wake-ups are counted.
	settle = time.Second
	idle   = 10 * time.Second
	// gap separates one supervisor's run from the next, so that the
	// kernel has finished tearing the previous one's down.
	gap = time.Second
	// timeout is the longest the bench waits for all to run.
	timeout = 60 * time.Second
	// cgroupParent holds the scale daemon's sandboxes.
	cgroupParent = cgroupfs.Parent + "/scale"
	// The services' limits, for corral's daemon and runc's bundles.
	scaleMemory = 32 << 20
	scalePids   = 16
	command     = "/bin/sleep 100000"
)

// The limits as the daemon's values, made from the numbers above so that
// corral and runc cannot be given different ones.
var (
	memoryFlag = strconv.Itoa(scaleMemory>>20) + "M"
	pidsFlag   = strconv.Itoa(scalePids)
)

// Goals printed beside corral's figures.
const (
	upGoal   = 2 * time.Second
	downGoal = 3 * time.Second
)

// Config is what the scale part is told.
type Config struct {
	Corral   string // the corral binary, an absolute path
	Runc     string // the runc binary; "" leaves runc out
	Services int    // the number of services
}

type bench struct {
	cfg  Config
	sc   *scratch.Dir
	g    *child.Group
	dir  string
	pids string // the pids hierarchy's mount point
	// notes say how the measurement went where that differs from the
	// table's description; each once.
	notes []string
	scans []scanNote
}

func (b *bench) note(n string) {
	if n != "" && !slices.Contains(b.notes, n) {
		b.notes = append(b.notes, n)
	}
}

// scanNote is a scale run's tool, with how many services a scan saw.
type scanNote struct {
	tool              string
	lost, scanned, of int
}

// noteScans keeps, for the report, the services of a run whose exec
// events the kernel dropped.
func (b *bench) noteScans(tool string, u *upWatch) {
	if u.events != nil && u.lost > 0 {
		b.scans = append(b.scans, scanNote{tool: tool, lost: u.lost, scanned: u.scanned(), of: len(u.found)})
	}
}

// scanNotes are the notes on the runs that lost exec events.
func (b *bench) scanNotes() []string {
	var out []string
	for _, s := range b.scans {
		out = append(out, fmt.Sprintf("%s: the kernel dropped exec events %d times in a run; %d of its %d services have the time of the scan that followed, later than their exec",
			s.tool, s.lost, s.scanned, s.of))
	}
	return out
}

func (b *bench) path(elem ...string) string {
	return filepath.Join(append([]string{b.dir}, elem...)...)
}

// name is the i-th service's name.
func name(i int) string { return fmt.Sprintf("s%03d", i) }

// Run measures a supervisor of many services: a corral daemon on a
// service file of cfg.Services services, and s6-svscan on a scan dir of
// as many, each started, measured and stopped reps times, the two
// alternating. Each run: time from the fork to every command exec'd,
// memory, idle wake-ups and CPU over the idle window, (corral) the cost
// of its metrics endpoint, time from SIGTERM to all gone. The
// long-running processes are started in g; progress lines go to w.
func Run(ctx context.Context, cfg Config, sc *scratch.Dir, g *child.Group, w io.Writer) (*Report, error) {
	b := &bench{cfg: cfg, sc: sc, g: g, dir: sc.Path("scale")}
	if err := os.MkdirAll(b.path("logs"), 0o755); err != nil {
		return nil, fmt.Errorf("make scale scratch dir: %w", err)
	}
	var err error
	if b.pids, err = cgroupfs.PidsRoot(); err != nil {
		return nil, err
	}
	rep := &Report{Services: cfg.Services, Reps: reps, IdleS: idle.Seconds()}
	withS6 := true
	if err := supervise.S6Available(); err != nil {
		withS6 = false
		rep.Notes = append(rep.Notes, "s6-svscan: unavailable: "+err.Error())
	}
	withRunc := cfg.Runc != ""
	if withRunc {
		if b.cfg.Runc, err = exec.LookPath(cfg.Runc); err != nil {
			withRunc = false
			rep.Notes = append(rep.Notes, "runc: unavailable: "+err.Error())
		}
	}
	fmt.Fprintf(w, "\nscale: %d services, %d repetitions (corral, s6, runc and corral from one image in rotating order), %s idle window; corral's metrics: %s idle, %d scrapes\n",
		cfg.Services, reps, idle, metricsInterval, metricsScrapes)
	data, err := b.prepareImage()
	if err != nil {
		return nil, err
	}
	tools := []string{"corral", "s6", "runc", "corral-image"}
	for r := 0; r < reps; r++ {
		for i := range tools {
			tool := tools[(r+i)%len(tools)]
			if tool == "s6" && !withS6 || tool == "runc" && !withRunc {
				continue
			}
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("interrupted in scale repetition %d: %w", r+1, err)
			}
			var run Repetition
			var err error
			switch tool {
			case "corral":
				run, err = b.corralOnce(ctx, r)
				rep.Corral = append(rep.Corral, run)
			case "s6":
				run, err = b.s6Once(ctx, r)
				rep.S6 = append(rep.S6, run)
			case "corral-image":
				run, err = b.imageOnce(ctx, r, data)
				rep.Image = append(rep.Image, run)
			default:
				run, err = b.runcOnce(ctx, r)
				rep.Runc = append(rep.Runc, run)
			}
			if err != nil {
				return nil, fmt.Errorf("scale repetition %d, %s: %w", r+1, tool, err)
			}
			fmt.Fprintf(w, "scale: repetition %d, %s: all running in %.2f s, all stopped in %.2f s\n", r+1, tool, run.UpS, run.DownS)
			time.Sleep(gap)
		}
	}
	rep.Notes = append(append(rep.Notes, b.notes...), b.scanNotes()...)
	return rep, nil
}

// memory reads the PSS of the supervisor, the inits and the commands.
func memory(run *Repetition, supervisor, inits, cmds []int) error {
	var err error
	if run.SupervisorPSS, err = procfs.SumPSS(supervisor); err != nil {
		return err
	}
	if run.InitsPSS, err = procfs.SumPSS(inits); err != nil {
		return err
	}
	run.CommandsPSS, err = procfs.SumPSS(cmds)
	return err
}

// idleActivity counts the context switches and CPU time of the
// supervisor (and of the inits, when there are any) over the idle window,
// the bench doing nothing with them meanwhile.
func idleActivity(run *Repetition, supervisor, inits []int) error {
	s0, err := procfs.SampleActivity(supervisor)
	if err != nil {
		return err
	}
	i0, err := procfs.SampleActivity(inits)
	if err != nil {
		return err
	}
	time.Sleep(idle)
	s1, err := procfs.SampleActivity(supervisor)
	if err != nil {
		return err
	}
	i1, err := procfs.SampleActivity(inits)
	if err != nil {
		return err
	}
	run.IdleWakeups, _ = procfs.Wakeups(s0, s1)
	run.IdleInitWakeups, _ = procfs.Wakeups(i0, i1)
	run.IdleCPUMS = float64(s1.CPU-s0.CPU) / float64(time.Millisecond)
	return nil
}

// hostCPUSince is the CPU time, in seconds, all CPUs were busy since
// procfs.HostBusy returned busy0.
func hostCPUSince(busy0 time.Duration) (float64, error) {
	busy, err := procfs.HostBusy()
	if err != nil {
		return 0, err
	}
	return (busy - busy0).Seconds(), nil
}

// commandName is the name of the services' program once exec'd, as
// /proc/PID/comm shows it.
var commandName = filepath.Base(strings.Fields(command)[0])

// upTimes are when the first and the last service came up.
type upTimes struct {
	first, last time.Time
}

// since are the first and last times in seconds from t0.
func (u upTimes) since(t0 time.Time) (first, last float64) {
	return u.first.Sub(t0).Seconds(), u.last.Sub(t0).Seconds()
}
