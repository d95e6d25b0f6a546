package ociruntime

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	"github.com/opencontainers/runc/libcontainer/utils"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"
)

// DefaultRoot is where containers' state is kept unless --root says
// otherwise (containerd's shim always says).
const DefaultRoot = "/run/corral-runc"

// Runtime runs the containers whose state is under Root.
type Runtime struct {
	Root string
	// SystemdCgroup: cgroupsPath is "slice:prefix:name", for systemd.
	SystemdCgroup bool
	// Policy tightens every container's spec (nil: none).
	Policy *Policy
}

// CreateOptions are create's: the bundle, and what runc's create takes.
type CreateOptions struct {
	Bundle string
	// PidFile receives the container's init's host PID once created.
	PidFile string
	// ConsoleSocket is a Unix socket that receives the terminal's master
	// (process.terminal containers only).
	ConsoleSocket string
	// PreserveFDs passes fds 3 to 3+N-1 to the container.
	PreserveFDs int
}

// Errors with runc's meaning.
var (
	ErrNotExist = libcontainer.ErrNotExist
	ErrExist    = libcontainer.ErrExist
)

// Create makes the container id from its bundle: namespaces, cgroup,
// root, and its init waiting to exec the process until Start. Its
// stdio are this process's 0, 1 and 2 (the caller's pipes or fifos), or
// a terminal sent to the console socket. On any error nothing of it is
// left.
func (r *Runtime) Create(id string, o CreateOptions) error {
	_, _, err := r.create(id, o)
	return err
}

// create is Create, returning the container and its init for Run.
func (r *Runtime) create(id string, o CreateOptions) (_ *libcontainer.Container, _ *libcontainer.Process, err error) {
	bundle, err := filepath.Abs(o.Bundle)
	if err != nil {
		return nil, nil, fmt.Errorf("bundle: %w", err)
	}
	s, unknown, err := LoadBundle(bundle)
	if err != nil {
		return nil, nil, err
	}
	if unknown != "" {
		if r.Policy != nil && r.Policy.UnknownFields == "refuse" {
			return nil, nil, &PolicyError{Reason: fmt.Sprintf("config.json: unknown field %q", unknown)}
		}
		logrus.Warnf("config.json: ignoring unknown field %q (the runtime spec has unknown fields ignored)", unknown)
	}
	if r.Policy != nil {
		if err := r.Policy.Apply(s); err != nil {
			return nil, nil, err
		}
	}
	if err := checkTerminal(s.Process, o.ConsoleSocket); err != nil {
		return nil, nil, err
	}
	allowRuntimeStatx(s.Linux.Seccomp)
	fifoDevices(s.Linux)
	// specconv resolves a relative root.path, and records the bundle, from
	// the working directory.
	if err := os.Chdir(bundle); err != nil {
		return nil, nil, fmt.Errorf("bundle: %w", err)
	}
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       id,
		UseSystemdCgroup: r.SystemdCgroup,
		Spec:             s,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("config.json: %w", err)
	}
	for _, m := range dropBindData(cfg) {
		logrus.Warnf("config.json: mounts: %s", m)
	}
	if err := os.MkdirAll(r.Root, 0o700); err != nil {
		return nil, nil, fmt.Errorf("root: %w", err)
	}
	c, err := libcontainer.Create(r.Root, id, cfg)
	if err != nil {
		return nil, nil, err
	}
	defer func() {
		if err != nil {
			_ = c.Destroy()
		}
	}()
	p, err := newProcess(s.Process, true)
	if err != nil {
		return nil, nil, err
	}
	closeConsole, err := setStdio(p, s.Process.Terminal, o.ConsoleSocket)
	if err != nil {
		return nil, nil, err
	}
	defer closeConsole()
	if err := preserveFDs(p, o.PreserveFDs); err != nil {
		return nil, nil, err
	}
	if err := c.Start(p); err != nil {
		return nil, nil, err
	}
	if o.PidFile != "" {
		if err := writePidFile(o.PidFile, p); err != nil {
			_ = p.Signal(unix.SIGKILL)
			_, _ = p.Wait()
			return nil, nil, err
		}
	}
	return c, p, nil
}

// Run is runc's run: Create, Start, then wait for the container's
// process, forwarding to it the signals this process gets, and return
// its exit status (128+N for a signal N). The container is deleted once
// the process has ended, unless keep.
func (r *Runtime) Run(id string, o CreateOptions, keep bool) (int, error) {
	// Caught before the container exists: none is lost in between.
	sigs := make(chan os.Signal, 32)
	signal.Notify(sigs)
	defer signal.Stop(sigs)
	c, p, err := r.create(id, o)
	if err != nil {
		return -1, err
	}
	if err := c.Exec(); err != nil {
		return -1, errors.Join(err, killAndDestroy(c))
	}
	status, err := waitForwarding(p, sigs)
	if err != nil {
		return -1, errors.Join(err, killAndDestroy(c))
	}
	if keep {
		return status, nil
	}
	// Its init has ended: Destroy removes the cgroup (killing whatever
	// an init that was not the pid namespace's init left there) and the
	// state, and runs the poststop hooks.
	if err := c.Destroy(); err != nil {
		return status, err
	}
	return status, nil
}

// checkTerminal refuses what cannot work: a terminal with nowhere to send
// it, or a console socket without a terminal.
func checkTerminal(p *rspec.Process, consoleSocket string) error {
	if p.Terminal && consoleSocket == "" {
		return errors.New("process.terminal is true but no --console-socket was given: cannot allocate a terminal when detached")
	}
	if !p.Terminal && consoleSocket != "" {
		return errors.New("--console-socket given but process.terminal is false")
	}
	return nil
}

// setStdio gives p this process's stdio (detached: the caller's pipes
// go to the container as they are), or a terminal whose master goes to
// the console socket.
func setStdio(p *libcontainer.Process, terminal bool, consoleSocket string) (func(), error) {
	if !terminal {
		p.Stdin, p.Stdout, p.Stderr = os.Stdin, os.Stdout, os.Stderr
		return func() {}, nil
	}
	conn, err := net.Dial("unix", consoleSocket)
	if err != nil {
		return nil, fmt.Errorf("console socket %s: %w", consoleSocket, err)
	}
	f, err := conn.(*net.UnixConn).File()
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("console socket %s: %w", consoleSocket, err)
	}
	p.ConsoleSocket = f
	return func() { f.Close(); conn.Close() }, nil
}

func preserveFDs(p *libcontainer.Process, n int) error {
	if n < 0 {
		return fmt.Errorf("--preserve-fds %d: want 0 or more", n)
	}
	for fd := 3; fd < 3+n; fd++ {
		if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
			return fmt.Errorf("--preserve-fds %d: fd %d is not open", n, fd)
		}
		p.ExtraFiles = append(p.ExtraFiles, os.NewFile(uintptr(fd), "preserved-fd-"+strconv.Itoa(fd)))
	}
	return nil
}

// writePidFile writes the process's PID to path atomically: whoever
// reads it never sees it half-written.
func writePidFile(path string, p *libcontainer.Process) error {
	pid, err := p.Pid()
	if err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path))
	if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)), 0o644); err != nil {
		return fmt.Errorf("pid file: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("pid file: %w", err)
	}
	return nil
}

// newProcess is the libcontainer process of a spec's process.
func newProcess(sp *rspec.Process, init bool) (*libcontainer.Process, error) {
	nnp := sp.NoNewPrivileges
	p := &libcontainer.Process{
		Args: sp.Args, Env: sp.Env, Cwd: sp.Cwd,
		UID: int(sp.User.UID), GID: int(sp.User.GID),
		NoNewPrivileges: &nnp,
		AppArmorProfile: sp.ApparmorProfile,
		Scheduler:       sp.Scheduler,
		IOPriority:      sp.IOPriority,
		Init:            init,
	}
	if sp.ConsoleSize != nil {
		p.ConsoleWidth, p.ConsoleHeight = uint16(sp.ConsoleSize.Width), uint16(sp.ConsoleSize.Height)
	}
	if c := sp.Capabilities; c != nil {
		p.Capabilities = &configs.Capabilities{Bounding: c.Bounding, Effective: c.Effective, Inheritable: c.Inheritable, Permitted: c.Permitted, Ambient: c.Ambient}
	}
	for _, g := range sp.User.AdditionalGids {
		p.AdditionalGroups = append(p.AdditionalGroups, int(g))
	}
	for _, rl := range sp.Rlimits {
		typ, ok := rlimits[rl.Type]
		if !ok {
			return nil, fmt.Errorf("process.rlimits: unknown type %q", rl.Type)
		}
		p.Rlimits = append(p.Rlimits, configs.Rlimit{Type: typ, Hard: rl.Hard, Soft: rl.Soft})
	}
	aff, err := configs.ConvertCPUAffinity(sp.ExecCPUAffinity)
	if err != nil {
		return nil, fmt.Errorf("process.execCPUAffinity: %w", err)
	}
	p.CPUAffinity = aff
	return p, nil
}

var rlimits = map[string]int{
	"RLIMIT_CPU": unix.RLIMIT_CPU, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_DATA": unix.RLIMIT_DATA,
	"RLIMIT_STACK": unix.RLIMIT_STACK, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK,
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE, "RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME": unix.RLIMIT_RTTIME,
}

// load is the container id.
func (r *Runtime) load(id string) (*libcontainer.Container, error) {
	if id == "" {
		return nil, errors.New("container id cannot be empty")
	}
	return libcontainer.Load(r.Root, id)
}

// Start runs the process of the created container id.
func (r *Runtime) Start(id string) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	st, err := c.Status()
	if err != nil {
		return err
	}
	switch st {
	case libcontainer.Created:
		return c.Exec()
	case libcontainer.Stopped:
		return errors.New("cannot start a container that has stopped")
	case libcontainer.Running:
		return errors.New("cannot start an already running container")
	default:
		return fmt.Errorf("cannot start a container in the %s state", st)
	}
}

// State is runc's state of a container: the runtime spec's, plus the
// root and the creation time.
type State struct {
	Version     string            `json:"ociVersion"`
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Rootfs      string            `json:"rootfs"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
	Owner       string            `json:"owner"`
}

// State reports the container id.
func (r *Runtime) State(id string) (*State, error) {
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	st, err := c.Status()
	if err != nil {
		return nil, err
	}
	s, err := c.State()
	if err != nil {
		return nil, err
	}
	pid := s.BaseState.InitProcessPid
	if st == libcontainer.Stopped {
		pid = 0
	}
	bundle, ann := utils.Annotations(s.Config.Labels)
	return &State{
		Version: s.Config.Version, ID: s.ID, Pid: pid, Status: st.String(),
		Bundle: bundle, Rootfs: s.Config.Rootfs, Created: s.Created, Annotations: ann, Owner: "",
	}, nil
}

// Kill sends sig to the container's init (which, in its own pid
// namespace, takes every process with it on SIGKILL). all is runc's
// obsolete --all: signalling a container that is no longer running is
// then not an error.
func (r *Runtime) Kill(id string, sig unix.Signal, all bool) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	err = c.Signal(sig)
	if all && errors.Is(err, libcontainer.ErrNotRunning) {
		return nil
	}
	return err
}

// Delete removes the container id: a stopped one at once; a created one
// (never started) or, with force, a running one is killed first. A
// container whose state is gone is cleaned up as far as possible.
func (r *Runtime) Delete(id string, force bool) error {
	c, err := r.load(id)
	if errors.Is(err, libcontainer.ErrNotExist) {
		// What a half-done create may have left under the root.
		if rmErr := removeStateDir(r.Root, id); rmErr != nil {
			return rmErr
		}
		if force {
			return nil
		}
		return err
	}
	if err != nil {
		return err
	}
	if force {
		return killAndDestroy(c)
	}
	st, err := c.Status()
	if err != nil {
		return err
	}
	switch st {
	case libcontainer.Stopped:
		return c.Destroy()
	case libcontainer.Created:
		return killAndDestroy(c)
	default:
		return fmt.Errorf("cannot delete container %s that is not stopped: %s", id, st)
	}
}

// removeStateDir removes the state directory of id under root, if it is
// one (a valid ID names a direct child of root).
func removeStateDir(root, id string) error {
	if id == "" || id == "." || id == ".." || filepath.Base(id) != id {
		return fmt.Errorf("invalid container id %q", id)
	}
	return os.RemoveAll(filepath.Join(root, id))
}

// killAndDestroy kills the container and removes it once its init is
// gone, waited for on a pidfd (no polling).
func killAndDestroy(c *libcontainer.Container) error {
	s, err := c.State()
	if err != nil {
		return err
	}
	pidfd := -1
	if pid := s.BaseState.InitProcessPid; pid > 0 {
		// Opened before the kill: the PID cannot be reused meanwhile.
		if fd, err := unix.PidfdOpen(pid, 0); err == nil {
			pidfd = fd
			defer unix.Close(fd)
		}
	}
	if err := c.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
		return err
	}
	if pidfd >= 0 {
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		for {
			n, err := unix.Poll(fds, 10_000)
			if errors.Is(err, unix.EINTR) {
				continue
			}
			if err != nil {
				return fmt.Errorf("wait for the container's init: %w", err)
			}
			if n == 0 {
				return errors.New("the container's init still runs 10s after SIGKILL")
			}
			break
		}
	}
	return c.Destroy()
}

// Processes lists the host PIDs of the container's processes.
func (r *Runtime) Processes(id string) ([]int, error) {
	c, err := r.load(id)
	if err != nil {
		return nil, err
	}
	return c.Processes()
}

// Pause freezes the container; Resume thaws it.
func (r *Runtime) Pause(id string) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	return c.Pause()
}

// Resume thaws a paused container.
func (r *Runtime) Resume(id string) error {
	c, err := r.load(id)
	if err != nil {
		return err
	}
	return c.Resume()
}
