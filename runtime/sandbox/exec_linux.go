package sandbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/procstat"
	"github.com/corral-dev/corral/isolation"
	"github.com/corral-dev/corral/runtime/pid1"
	"github.com/corral-dev/corral/spec"
)

// ExecOutputMax is how much of an exec'd command's output (stdout and
// stderr together) Exec keeps; the rest is read and discarded.
const ExecOutputMax = 4 << 10

// ErrNotRunning: the sandbox has no running init to exec in.
var ErrNotRunning = errors.New("sandbox not running")

// execDrain bounds how long Exec reads output after the command ended:
// a background process the command left may hold the pipe open forever.
const execDrain = 100 * time.Millisecond

// Exec runs argv in the running sandbox, as the service's command runs:
// in all its namespaces and its cgroup (so under its limits, and counted
// in them), as its user, with its capabilities, no_new_privs and seccomp
// filter, its environment and working directory. Like the command, it
// runs under corral's init (a second one, not PID 1), which loads the
// filter and reports how argv ended.
//
// exitCode is argv's exit code, or 128+N if signal N killed it. output is
// the first ExecOutputMax bytes of its stdout and stderr, interleaved. err
// is set when argv could not be run (ErrCommandNotFound,
// ErrCommandNotExecutable, ErrNotRunning, ...) or when ctx ended first:
// then every process argv started is killed and err wraps ctx.Err().
// Background processes that argv leaves behind when it exits on its own
// keep running in the sandbox, as with `docker exec`.
func (sb *Sandbox) Exec(ctx context.Context, argv []string) (exitCode int, output []byte, err error) {
	if len(argv) == 0 || argv[0] == "" {
		return -1, nil, fmt.Errorf("sandbox %s: exec: no command", sb.Name)
	}
	fail := func(err error) (int, []byte, error) {
		return -1, nil, fmt.Errorf("sandbox %s: exec %q: %w", sb.Name, argv[0], err)
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if sb.container == nil {
		return fail(ErrNotRunning)
	}
	if status, err := sb.container.Status(); err != nil {
		return fail(err)
	} else if status != libcontainer.Running {
		return fail(fmt.Errorf("%w: it is %s", ErrNotRunning, status))
	}
	proc, profile, err := sb.execSpec()
	if err != nil {
		return fail(err)
	}

	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	// The init's status record, in memory: nothing to clean up, nothing
	// left behind if corral dies meanwhile.
	statusFd, err := unix.MemfdCreate("corral-exec-status", unix.MFD_CLOEXEC)
	if err != nil {
		return fail(fmt.Errorf("status file: %w", err))
	}
	cfg := pid1.Config{Status: os.NewFile(uintptr(statusFd), "exec-status")}
	files = append(files, cfg.Status)
	if profile != nil {
		if cfg.Seccomp, err = sb.m.filters.Open(profile); err != nil {
			return fail(fmt.Errorf("seccomp: %w", err))
		}
		files = append(files, cfg.Seccomp)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return fail(fmt.Errorf("output pipe: %w", err))
	}
	defer outR.Close()

	wrapped, env, extra := cfg.Wrap(argv)
	p := &libcontainer.Process{
		Args:            wrapped,
		Env:             append(append([]string(nil), proc.Env...), env),
		Cwd:             proc.Cwd,
		UID:             int(proc.User.UID),
		GID:             int(proc.User.GID),
		NoNewPrivileges: &proc.NoNewPrivileges,
		Capabilities:    execCapabilities(proc.Capabilities),
		Stdout:          outW,
		Stderr:          outW,
		ExtraFiles:      extra,
		Init:            false,
	}
	began := time.Now()
	err = sb.container.Run(p)
	// Only the init and argv hold the pipe now: EOF once they are gone.
	outW.Close()
	if err != nil {
		return fail(err)
	}
	out := make(chan []byte, 1)
	go func() { out <- readBounded(outR, ExecOutputMax) }()

	waited := make(chan error, 1)
	go func() {
		_, err := p.Wait()
		waited <- err
	}()
	var waitErr, ctxErr error
	select {
	case waitErr = <-waited:
	case <-ctx.Done():
		ctxErr = ctx.Err()
		sb.killExec(p)
		waitErr = <-waited
	}
	_ = outR.SetReadDeadline(time.Now().Add(execDrain))
	output = <-out

	if ctxErr != nil {
		what := "canceled"
		if errors.Is(ctxErr, context.DeadlineExceeded) {
			what = "timed out"
		}
		return -1, output, fmt.Errorf("sandbox %s: exec %q: %s after %s, killed: %w",
			sb.Name, argv[0], what, time.Since(began).Round(time.Millisecond), ctxErr)
	}
	st, err := readStatusFd(statusFd)
	if err != nil {
		// The init ended without saying how argv did: it was killed.
		return -1, output, fmt.Errorf("sandbox %s: exec %q: init ended without a status (%v): %w", sb.Name, argv[0], waitErr, err)
	}
	switch st.State {
	case pid1.StateExited:
		return st.Code, output, nil
	case pid1.StateSignaled:
		return 128 + st.Signal, output, nil
	case pid1.StateExecFailed:
		return -1, output, fmt.Errorf("sandbox %s: exec: %w", sb.Name, execError(argv[0], st))
	}
	return -1, output, fmt.Errorf("sandbox %s: exec %q: init ended while the command was %s (%v)", sb.Name, argv[0], st.State, waitErr)
}

// execSpec is the process and seccomp profile that the sandbox's command
// was started with. For an adopted sandbox they are rebuilt, as Create
// built them, from the service in its record.
func (sb *Sandbox) execSpec() (*rspec.Process, *rspec.LinuxSeccomp, error) {
	if sb.spec != nil {
		return sb.spec.Process, sb.seccomp, nil
	}
	if sb.rec == nil || sb.rec.Service == nil {
		return nil, nil, errors.New("the sandbox's service is unknown (its record was lost): cannot run a command as it would")
	}
	return serviceProcess(sb.rec.Service)
}

// serviceProcess builds the process and seccomp profile of svc's command
// the way Create does (the root does not change either).
func serviceProcess(svc *spec.Service) (*rspec.Process, *rspec.LinuxSeccomp, error) {
	s := spec.RuntimeSpec(svc)
	s.Root = &rspec.Root{}
	if err := isolation.Harden(s, svc.Security); err != nil {
		return nil, nil, err
	}
	return s.Process, s.Linux.Seccomp, nil
}

func execCapabilities(c *rspec.LinuxCapabilities) *configs.Capabilities {
	if c == nil {
		return &configs.Capabilities{}
	}
	return &configs.Capabilities{Bounding: c.Bounding, Effective: c.Effective, Permitted: c.Permitted}
}

// readBounded reads r to its end (EOF, error or deadline) and returns the
// first max bytes.
func readBounded(r io.Reader, max int) []byte {
	var buf bytes.Buffer
	_, _ = io.Copy(&buf, io.LimitReader(r, int64(max)))
	_, _ = io.Copy(io.Discard, r)
	return buf.Bytes()
}

// readStatusFd reads the init's status record from fd (a memfd).
func readStatusFd(fd int) (pid1.Status, error) {
	buf := make([]byte, 512)
	n, err := unix.Pread(fd, buf, 0)
	if err != nil {
		return pid1.Status{}, fmt.Errorf("read status: %w", err)
	}
	return pid1.ParseStatus(buf[:n])
}

// killExec SIGKILLs an exec'd init and every process below it. The init
// is a subreaper, so what argv started stays below it while it lives:
// kill those first (a few rounds catch what was forked meanwhile), then
// the init. They all sit in the sandbox's cgroup, which bounds the search.
func (sb *Sandbox) killExec(p *libcontainer.Process) {
	root, err := p.Pid()
	if err == nil {
		killed := map[int]bool{}
		for round := 0; round < 5; round++ {
			fresh := 0
			for _, pid := range sb.descendants(root) {
				if !killed[pid] {
					killed[pid], fresh = true, fresh+1
				}
				_ = unix.Kill(pid, unix.SIGKILL)
			}
			if fresh == 0 {
				break
			}
		}
	}
	// Through os.Process, which holds a pidfd: never a reused PID.
	_ = p.Signal(unix.SIGKILL)
}

// descendants lists the processes of the sandbox's cgroup below root.
func (sb *Sandbox) descendants(root int) []int {
	pids, err := sb.m.cgroups.Procs(sb.rec.CgroupPath)
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, pid := range pids {
		if ppid, err := parentPid(pid); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// parentPid is a process's parent.
func parentPid(pid int) (int, error) {
	st, err := procstat.Read(pid)
	return st.PPID, err
}
