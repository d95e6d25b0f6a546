package main

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/image"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/imagerun"
	"github.com/corral-dev/corral/runtime/network"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/spec"
)

type runOptions struct {
	svc          spec.Service
	image        string
	entrypoint   string
	pull         string
	cgroupParent string
	readOnly     bool
	userns       string
	stopTimeout  time.Duration
	bridge       spec.Bridge
}

func newRunCommand(g *globalOptions) *cobra.Command {
	o := &runOptions{bridge: spec.DefaultBridgeConfig()}
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARG...]\n  corral run [flags] --image REF [-- ARG...]",
		Short: "Run a command in a new hardened sandbox, in the foreground",
		Long: `Run COMMAND in a new sandbox and wait for it. Its standard streams are
passed through; corral exits with its exit code, or 128+N if signal N
killed it. SIGINT and SIGTERM are forwarded to the sandbox's init; if it is
still running --stop-timeout later, or on a second SIGINT/SIGTERM, every
process in the sandbox is killed. When the sandbox ends because of a limit
(an OOM kill, the pids limit), corral says so on stderr.

Without --rootfs or --image the sandbox's root is built from read-only
binds of the host's /usr, /bin, /sbin and /lib* with a minimal /etc, so no
image is needed. With --image REF (an image, pulled from its registry
unless the store has it (--pull)) the root is the image's layers, and its config applies as docker
run applies it: its Entrypoint runs with the arguments given here, else with
its Cmd; its Env, WorkingDir and User apply unless --env, --workdir or
--user say otherwise.

Exit codes of corral itself: 125 corral failed or bad usage, 126 the
command is not executable, 127 the command was not found.`,
		Example: `  corral run -- /bin/ls /
  corral run --memory 64M --cpus 0.5 --pids 64 -- /bin/sh -c 'echo hello from $(hostname)'
  corral run --rootfs /srv/busybox --network host --cap-add NET_BIND_SERVICE -- /bin/httpd -f -p 80
  corral run --image corral-example/busybox-web:1 --entrypoint /bin/sh -- -c 'id; ls /www'`,
		RunE: func(cmd *cobra.Command, args []string) error {
			o.svc.Command = args
			if o.image == "" && len(args) == 0 {
				return &exitError{code: exitCorralError, err: fmt.Errorf("run: no command given (see 'corral run --help')")}
			}
			if o.image != "" {
				o.svc.Image = &spec.Image{Ref: o.image, Pull: o.pull,
					UserFromImage:    !cmd.Flags().Changed("user"),
					WorkdirFromImage: !cmd.Flags().Changed("workdir"),
				}
				if o.svc.Image.WorkdirFromImage {
					o.svc.Workdir = ""
				}
				if o.entrypoint != "" {
					o.svc.Image.Entrypoint = []string{o.entrypoint}
				}
			} else if o.entrypoint != "" {
				return &exitError{code: exitCorralError, err: fmt.Errorf("run: --entrypoint is for --image")}
			}
			o.svc.Security.WritableRoot = !o.readOnly
			switch o.userns {
			case spec.UserNamespacePrivate:
			case spec.UserNamespaceHost:
				o.svc.Security.HostUserNamespace = true
			default:
				return &exitError{code: exitCorralError, err: fmt.Errorf("run: --userns %q: use %s (the default: a user namespace and a block of host IDs of its own) or %s", o.userns, spec.UserNamespacePrivate, spec.UserNamespaceHost)}
			}
			return o.run(g)
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // everything after COMMAND belongs to it
	f.StringVar(&o.svc.Name, "name", "", "sandbox name (default: run-<random>); also the hostname unless --hostname")
	f.StringVar(&o.svc.Rootfs, "rootfs", "", "directory tree to use as the root (default: read-only binds of the host's system directories)")
	f.StringVar(&o.image, "image", "", "run an image of the store (corral image import): its layers are the root, its config the defaults")
	f.StringVar(&o.pull, "pull", spec.PullMissing, "with --image: when to pull it from its registry: missing, always or never")
	f.StringVar(&o.entrypoint, "entrypoint", "", "with --image: the program to run instead of the image's Entrypoint (its Cmd is then not used)")
	f.Var(bytesValue{&o.svc.Resources.Memory}, "memory", "memory limit, e.g. 64M, 1.5G, 134217728 (default: none); swap is not allowed beyond it")
	f.Var(cpusValue{&o.svc.Resources.CPUs}, "cpus", "CPU limit in CPUs, e.g. 0.5 (default: none)")
	f.Int64Var(&o.svc.Resources.Pids, "pids", spec.DefaultPids, "limit on processes and threads")
	f.StringVar(&o.svc.Network, "network", spec.NetworkNone, "network: none (own namespace, loopback only), host, or bridge (an address on corral's bridge, outbound NAT)")
	f.Var(publishValue{&o.svc.Publish}, "publish", "with --network bridge: publish a port on the host, [HOST_IP:]HOST_PORT:PORT[/tcp|/udp]; repeatable")
	f.Var(egressValue{&o.svc.Egress}, "egress", "with --network bridge: allow only these destinations, CIDR|ADDRESS|HOST[:PORT[/tcp|/udp]] (none: nothing); repeatable")
	f.StringVar(&o.bridge.Name, "bridge", spec.DefaultBridge, "with --network bridge: the bridge's name (shared with the daemon of the same state dir)")
	f.Var(prefixValue{&o.bridge.Subnet}, "subnet", "with --network bridge: the bridge's IPv4 subnet (default "+spec.DefaultSubnet+")")
	f.Var(addrsValue{&o.bridge.DNS}, "dns", "with --network bridge: a resolver for the sandbox (default: the host's non-loopback ones); repeatable")
	f.StringVar(&o.cgroupParent, "cgroup-parent", spec.DefaultCgroupParent, "absolute cgroup path under which the sandbox's cgroup is made")
	f.Var(userValue{&o.svc.User}, "user", "numeric UID[:GID] to run as (default 0:0: root inside the sandbox, without capabilities)")
	f.Var(envValue{&o.svc.Env}, "env", "set an environment variable KEY=VALUE (KEY alone copies it from here); repeatable")
	f.StringVar(&o.svc.Workdir, "workdir", "/", "working directory inside the sandbox")
	f.Var(mountsValue{&o.svc.Mounts}, "mount", "bind a host path: SRC:DST[:ro|rw][,idmap], read-only unless rw; idmap shows its host owners unchanged inside; repeatable")
	f.StringVar(&o.userns, "userns", spec.UserNamespacePrivate, "user namespace: private (its own, IDs 0-65535 a block of host IDs no one else has) or host (its root is host root, without capabilities)")
	f.BoolVar(&o.svc.Security.UnsafeHostMounts, "unsafe-host-mounts", false, "allow --mount and --rootfs of host paths that hand the sandbox the host: /, /proc, /sys, /dev, /boot writable, corral's state dir and binary, container runtime sockets")
	f.Var(capsValue{&o.svc.Security.CapAdd}, "cap-add", "give back a capability, e.g. NET_BIND_SERVICE, or ALL (default: none at all); repeatable")
	f.BoolVar(&o.readOnly, "read-only", true, "make the root filesystem read-only (/tmp and /run are always writable)")
	f.StringVar(&o.svc.Security.Seccomp, "seccomp", spec.SeccompDefault, "seccomp: default (Docker's profile, native architecture only), unconfined, or a profile FILE")
	f.StringVar(&o.svc.Hostname, "hostname", "", "hostname inside the sandbox (default: the name)")
	f.DurationVar(&o.stopTimeout, "stop-timeout", spec.DefaultStopTimeout, "after a forwarded SIGINT/SIGTERM, how long before every process is killed")
	return cmd
}

// check completes and checks the options against this host h, naming the
// flag at fault.
func (o *runOptions) check(h spec.Host) error {
	if o.svc.Name == "" {
		o.svc.Name = "run-" + randomSuffix()
	}
	if !filepath.IsAbs(o.cgroupParent) {
		return fmt.Errorf("--cgroup-parent %q: must be an absolute cgroup path such as %s", o.cgroupParent, spec.DefaultCgroupParent)
	}
	if err := spec.CheckCgroupParent(o.cgroupParent); err != nil {
		return fmt.Errorf("--cgroup-parent %s: %w", o.cgroupParent, err)
	}
	if n := runtime.NumCPU(); o.svc.Resources.CPUs > float64(n) {
		return fmt.Errorf("--cpus %g: this host has %d CPUs; use a value from 0.01 to %d", o.svc.Resources.CPUs, n, n)
	}
	if o.svc.Resources.Pids < 1 {
		return fmt.Errorf("--pids %d: use a positive number of processes and threads", o.svc.Resources.Pids)
	}
	if o.stopTimeout <= 0 {
		return fmt.Errorf("--stop-timeout %s: use a duration longer than 0, e.g. 10s", o.stopTimeout)
	}
	if o.svc.Rootfs != "" {
		abs, err := filepath.Abs(o.svc.Rootfs)
		if err != nil {
			return fmt.Errorf("--rootfs %s: %w", o.svc.Rootfs, err)
		}
		if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
			return fmt.Errorf("--rootfs %s: no such directory", o.svc.Rootfs)
		}
		o.svc.Rootfs = abs
		if err := o.unsafeMount(h, spec.Mount{Source: abs, ReadOnly: o.readOnly}); err != nil {
			return fmt.Errorf("--rootfs %s: %w", o.svc.Rootfs, err)
		}
	}
	for _, m := range o.svc.Mounts {
		if err := o.unsafeMount(h, m); err != nil {
			return fmt.Errorf("--mount %s:%s: %w", m.Source, m.Destination, err)
		}
		if _, err := os.Stat(m.Source); err != nil {
			return fmt.Errorf("--mount %s:%s: source %s does not exist", m.Source, m.Destination, m.Source)
		}
	}
	if s := o.svc.Security.Seccomp; s != spec.SeccompDefault && s != spec.SeccompUnconfined {
		abs, err := filepath.Abs(s)
		if err == nil {
			_, err = os.Stat(abs)
		}
		if err != nil {
			return fmt.Errorf("--seccomp %s: not default, unconfined, or a readable profile file", s)
		}
		o.svc.Security.Seccomp = abs
	}
	if err := spec.Validate(&o.svc); err != nil {
		return flagError(err)
	}
	if h.Workdir != nil {
		if err := h.Workdir(&o.svc); err != nil {
			return fmt.Errorf("--workdir: %w", err)
		}
	}
	return nil
}

// unsafeMount refuses a bind of m that would hand the sandbox the host,
// unless --unsafe-host-mounts.
func (o *runOptions) unsafeMount(h spec.Host, m spec.Mount) error {
	if o.svc.Security.UnsafeHostMounts {
		return nil
	}
	if err := h.UnsafeMount(m, ""); err != nil {
		return fmt.Errorf("%w; bind it only with --unsafe-host-mounts", err)
	}
	return nil
}

// flagNames maps the service fields Validate names to run's flags.
var flagNames = map[string]string{
	"name": "--name", "hostname": "--hostname", "workdir": "--workdir", "rootfs": "--rootfs", "image": "--image", "entrypoint": "--entrypoint", "pull": "--pull", "command": "COMMAND",
	"resources.memory": "--memory", "resources.cpus": "--cpus", "resources.pids": "--pids",
	"network": "--network", "publish": "--publish", "egress": "--egress", "capabilities": "--cap-add", "user_namespace": "--userns", "user": "--user", "mounts": "--mount", "seccomp": "--seccomp", "env": "--env",
}

// flagError rewrites validation errors to name flags, not fields.
func flagError(err error) error {
	var msgs []error
	for _, e := range unjoin(err) {
		var fe *spec.FieldError
		if errors.As(e, &fe) {
			if name, ok := flagNames[fe.Field]; ok {
				e = fmt.Errorf("%s: %w", name, fe.Err)
			}
		}
		msgs = append(msgs, e)
	}
	return errors.Join(msgs...)
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func randomSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// forwarded are the signals corral run passes on to the sandbox.
var forwarded = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2}

func (o *runOptions) run(g *globalOptions) error {
	fail := func(err error) error { return &exitError{code: exitCorralError, err: fmt.Errorf("run: %w", err)} }
	if err := o.check(g.host()); err != nil {
		return fail(err)
	}
	if os.Geteuid() != 0 {
		return fail(errors.New("must be run as root: sandboxes need namespaces and cgroups"))
	}
	if !sandbox.SeccompSupported() {
		return fail(errors.New("this corral binary was built without seccomp support (cgo and -tags seccomp); refusing to run sandboxes without it"))
	}
	host, err := cgroup.Detect()
	if err != nil {
		return fail(err)
	}
	log := logrus.WithField("sandbox", o.svc.Name)
	mgr, err := sandbox.NewManager(g.stateDir, host, logrus.StandardLogger(), sandbox.Attached, o.cgroupParent)
	if err != nil {
		return fail(err)
	}
	mgr.SetNetwork(func() (sandbox.Network, error) { return network.Open(g.stateDir, o.bridge) })
	if o.svc.EffectiveNetwork() == spec.NetworkBridge && network.Present(g.stateDir, o.bridge.Name) {
		// What a killed corral left on the bridge of sandboxes now gone.
		if err := mgr.SweepNetwork(); err != nil {
			log.WithError(err).Warn("sweep of the bridge")
		}
	}

	// Catch signals before anything is made, so that a Ctrl-C during set-up
	// still ends in a clean tear-down rather than leftovers.
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, forwarded...)
	defer signal.Stop(signals)

	// A run's ID block is its own while it runs, and then free again;
	// never that of a sandbox of the same name that runs.
	release := func() {
		if o.svc.Security.HostUserNamespace {
			return // it took none
		}
		if err := mgr.ReleaseIDs(o.svc.Name); err != nil {
			log.WithError(err).Warn("release the sandbox's ID block")
		}
	}
	svc, layers := &o.svc, []string(nil)
	if o.svc.Image != nil {
		// The image is held for as long as this run lives.
		prepared, err := o.prepareImage(g)
		if err != nil {
			release()
			return fail(flagError(err))
		}
		defer prepared.Release()
		svc, layers = prepared.Service, prepared.Layers
	}
	sb, err := mgr.Create(svc, o.cgroupParent, layers...)
	if err != nil {
		if !errors.Is(err, sandbox.ErrNameInUse) {
			release()
		}
		return fail(flagError(err))
	}
	exit, waitErr := o.supervise(sb, signals, log)
	// Once the sandbox's PID 1 has been reaped, no process of its PID
	// namespace is left (the kernel ends them all before its init), and
	// its block is free while the rest is taken down.
	released := make(chan struct{})
	if ended := waitErr == nil; ended {
		go func() { release(); close(released) }()
	} else {
		defer release()
		close(released)
	}
	defer func() { <-released }()
	if err := sb.Destroy(); err != nil {
		log.WithError(err).Error("tear-down incomplete")
		if waitErr == nil {
			waitErr = err
		}
	}
	if waitErr != nil {
		return startFailure(waitErr)
	}
	if !exit.Clean() {
		fmt.Fprintf(os.Stderr, "corral: sandbox %s: %s\n", o.svc.Name, exit.Reason())
	}
	if code := exit.ExitCode(); code != 0 {
		return &exitError{code: code}
	}
	return nil
}

// prepareImage finds --image in the store and applies its config.
func (o *runOptions) prepareImage(g *globalOptions) (*imagerun.Prepared, error) {
	store, err := image.Open(imagerun.StoreDir(g.dataDir))
	if err != nil {
		return nil, err
	}
	ctx, cancel := signalContext()
	defer cancel()
	return imagerun.Prepare(ctx, store, &o.svc)
}

// supervise starts the sandbox, forwards signals to it until it ends, and
// returns how it ended.
func (o *runOptions) supervise(sb *sandbox.Sandbox, signals chan os.Signal, log logrus.FieldLogger) (sandbox.Exit, error) {
	select {
	case sig := <-signals:
		return sandbox.Exit{}, fmt.Errorf("interrupted by %s before the sandbox started", sig)
	default:
	}
	if err := sb.Start(sandbox.Stdio{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}); err != nil {
		return sandbox.Exit{}, err
	}
	done := make(chan struct{})
	defer close(done)
	go func() {
		var killTimer <-chan time.Time
		stopping := false
		for {
			select {
			case <-done:
				return
			case sig := <-signals:
				if stopping && (sig == unix.SIGINT || sig == unix.SIGTERM) {
					log.Warn("second stop signal: killing every process in the sandbox")
					_ = sb.Signal(unix.SIGKILL)
					continue
				}
				if err := sb.Signal(sig); err != nil {
					log.WithError(err).Debug("forward signal")
				}
				if sig == unix.SIGINT || sig == unix.SIGTERM {
					stopping = true
					killTimer = time.After(o.stopTimeout)
				}
			case <-killTimer:
				log.Warnf("still running %s after the stop signal: killing every process in the sandbox", o.stopTimeout)
				_ = sb.Signal(unix.SIGKILL)
			}
		}
	}()
	return sb.Wait()
}

// startFailure maps a failure to start to the exit code docker run uses.
func startFailure(err error) error {
	return &exitError{code: sandbox.StartFailedCode(err), err: err}
}
