// Package sandbox runs one isolated instance of a service: it turns a
// spec.Service into a hardened runtime-spec, creates it with runc's
// libcontainer, waits for it, reports how it ended, and removes everything
// it made. It is the only package that imports libcontainer.
//
// Every sandbox has a record in the state dir, written before anything
// else is made for it and removed last. A corral process that is killed
// leaves its records behind, and Sweep (run by every Manager at start)
// destroys the sandboxes whose owner is gone, except detached ones: those
// of a daemon, which outlive it and are adopted by the next daemon
// (Adopt).
package sandbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"golang.org/x/sys/unix"

	// Device rules in a config fail without the devices manager.
	_ "github.com/opencontainers/cgroups/devices"

	"github.com/corral-dev/corral/isolation"
	"github.com/corral-dev/corral/isolation/filter"
	"github.com/corral-dev/corral/rootfs"
	"github.com/corral-dev/corral/rootfs/beneath"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/idmap"
	"github.com/corral-dev/corral/runtime/pid1"
	"github.com/corral-dev/corral/runtime/store"
	"github.com/corral-dev/corral/spec"
)

// Sentinel errors callers branch on.
var (
	// ErrNameInUse: a live sandbox already has the name.
	ErrNameInUse = errors.New("sandbox name in use")
	// ErrCommandNotFound: the command does not exist in the sandbox.
	ErrCommandNotFound = errors.New("command not found")
	// ErrCommandNotExecutable: the command exists but cannot be executed.
	ErrCommandNotExecutable = errors.New("command not executable")
)

// Kind says whether a manager's sandboxes live and die with it.
type Kind int

const (
	// Attached sandboxes belong to their corral process (`corral run`):
	// once it is gone, the next manager's sweep destroys them.
	Attached Kind = iota
	// Detached sandboxes outlive their corral process (the daemon): no
	// sweep touches them, and the next daemon adopts them.
	Detached
)

// detachedLabel marks a detached sandbox in libcontainer's own state too,
// so that it is recognized even if its record is lost.
const detachedLabel = "corral.detached=true"

// createdCgroupsLabel prefixes the label listing the parent cgroups the
// sandbox made (its record's CreatedCgroups).
const createdCgroupsLabel = "corral.created-cgroups="

// Manager makes sandboxes under one state dir and one cgroup layout.
type Manager struct {
	kind     Kind
	stateDir string
	cgroups  *cgroup.Host
	log      logrus.FieldLogger
	self     int
	selfAt   uint64
	// exe is corral's own binary; init its execute-only copy in the state
	// dir, bound into each sandbox as its init (see prepareInit).
	exe, init string
	// filters holds seccomp profiles compiled once to BPF: compiling one
	// in every new sandbox would cost several ms per start.
	filters *filter.Cache
	// parents counts the live sandboxes of this manager that claim each
	// parent cgroup one of them made. A sandbox made under such a parent
	// claims it too (it is in its record's CreatedCgroups), so whichever
	// of them ends last removes it, not only the one that happened to
	// make it.
	mu      sync.Mutex
	parents map[string]int
	// trusted are cgroup parents that the caller makes sandboxes under,
	// trusted beside those recorded in the state dir (see loadTrust).
	trusted []string
	// recorded are the parents this manager saw in the state dir's list
	// (recordParent): once there, they stay, so it is read once each.
	recorded map[string]bool
	// ids hands out the sandboxes' blocks of host IDs (see userns_linux.go);
	// opened at the first need, again after a failure (corral setup may
	// have run since).
	idsMu sync.Mutex
	ids   *idmap.Allocator
	// usernsFds are user namespaces of blocks, for id-mapped mounts.
	usernsFds map[uint32]*os.File
	// net is the bridge network, opened by openNet at the first need
	// (see network_linux.go).
	netMu   sync.Mutex
	openNet func() (Network, error)
	net     Network
}

// Layout of the state dir.
func (m *Manager) recordsDir() string    { return filepath.Join(m.stateDir, "sandboxes") }
func (m *Manager) rootsDir() string      { return filepath.Join(m.stateDir, "roots") }
func (m *Manager) uppersDir() string     { return filepath.Join(m.stateDir, "uppers") }
func (m *Manager) containersDir() string { return filepath.Join(m.stateDir, "libcontainer") }

// upperPath is the writable layer of sandbox n's image root.
func (m *Manager) upperPath(n string) string { return filepath.Join(m.uppersDir(), n) }
func (m *Manager) recordPath(n string) string {
	return filepath.Join(m.recordsDir(), n+".json")
}
func (m *Manager) statusPath(n string) string {
	return filepath.Join(m.recordsDir(), n+".status")
}

// NewManager prepares stateDir (mode 0700) and sweeps what killed corral
// processes left in it. Sandboxes found there are trusted only under the
// cgroup parents that the state dir records its sandboxes were made under
// (Create records each new one) and under parents: the caller's own, such
// as the daemon's configured one (a state dir of a corral that did not
// record its parents has them from there).
func NewManager(stateDir string, cg *cgroup.Host, log logrus.FieldLogger, kind Kind, parents ...string) (*Manager, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("state dir %s: %w", stateDir, err)
	}
	start, err := processStartTime(os.Getpid())
	if err != nil {
		return nil, fmt.Errorf("read own start time: %w", err)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find own binary: %w", err)
	}
	m := &Manager{
		kind: kind, stateDir: abs, cgroups: cg, log: log, self: os.Getpid(), selfAt: start, exe: exe,
		filters: &filter.Cache{Dir: filepath.Join(abs, "seccomp")},
		parents: map[string]int{},
	}
	for _, p := range parents {
		if err := spec.CheckCgroupParent(p); err != nil {
			return nil, fmt.Errorf("cgroup parent: %w", err)
		}
		m.trusted = append(m.trusted, p)
	}
	for _, d := range []string{m.stateDir, m.recordsDir(), m.rootsDir(), m.uppersDir(), m.containersDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("make state dir: %w", err)
		}
		// A sandbox's init, in its user namespace, is not host root: it
		// must be able to pass through to its root (search only; nothing
		// here can be listed or read by it).
		if d == m.stateDir || d == m.rootsDir() {
			if err := os.Chmod(d, 0o711); err != nil {
				return nil, fmt.Errorf("make state dir: %w", err)
			}
		}
		// What is removed below them is checked to be theirs by path: the
		// directories themselves must be the state dir's own (the state
		// dir is the caller's to choose).
		if fi, err := os.Lstat(d); d != m.stateDir && (err != nil || !fi.IsDir()) {
			return nil, fmt.Errorf("state dir: %s is not a directory", d)
		}
	}
	if err := checkWritable(m.recordsDir()); err != nil {
		return nil, err
	}
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	m.init, err = prepareInit(m.initDir(), m.exe)
	unlock()
	if err != nil {
		return nil, err
	}
	if err := m.Sweep(); err != nil {
		return nil, err
	}
	return m, nil
}

// lock serializes, across corral processes, the moments that read or
// change the set of records: name reservation and the sweep.
func (m *Manager) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(m.stateDir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open state lock: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	return func() { f.Close() }, nil
}

// Sandbox is one created sandbox. Its caller's protocol: Start once; if
// Start succeeded, Wait; then Destroy, always, even after errors.
type Sandbox struct {
	Name      string
	m         *Manager
	rec       *record
	root      *rootfs.Root
	container *libcontainer.Container
	// initNeverRan: Run failed before the init process existed.
	initNeverRan bool
	process      *libcontainer.Process
	spec         *rspec.Spec
	limits       spec.Resources
	// claims are the parent cgroups it claimed (see claimParents), until
	// Destroy.
	claims []string
	// warmed is closed once the attach lock's warm-up for its init is
	// over (see warmAttach); nil: none.
	warmed chan struct{}
	// seccomp is the profile the init loads for the command (nil: none).
	seccomp *rspec.LinuxSeccomp
	// command is the service's command, for reports.
	command string
	// notify is the sd_notify socket of a service with notify (see
	// notify_linux.go).
	notify *net.UnixConn
	// notes delivers what its processes say on it (Notes) until
	// notesDone is closed by Destroy.
	notes     chan Note
	notesDone chan struct{}
	// userns is the user namespace its init joins (see joinUserns), held
	// until the init has started; nil: the runtime makes one.
	userns *os.File
	// For an adopted sandbox (process is nil: its init is not our child):
	// the init's PID and a pidfd that becomes readable when it ends.
	initPid int
	pidfd   int
}

// Create reserves the service's name, builds its root and hardened spec,
// and creates the sandbox (its cgroup, nothing running yet). A service
// whose root is an image (svc with the image's config applied,
// spec.WithImage) gives the image's unpacked layers, bottom first: its
// root is their overlay (rootfs.Layered) over a writable layer of the
// sandbox's own, removed with it. Any other gives none.
func (m *Manager) Create(svc *spec.Service, cgroupParent string, layers ...string) (*Sandbox, error) {
	return m.create(svc, cgroupParent, layers)
}

func (m *Manager) create(svc *spec.Service, cgroupParent string, layers []string) (_ *Sandbox, err error) {
	if (svc.Image != nil) != (len(layers) > 0) {
		// An image's root is its layers, and only an image has layers.
		return nil, &spec.FieldError{Field: "image", Err: fmt.Errorf("the service's image (%v) and the layers given (%d) do not go together", svc.Image != nil, len(layers))}
	}
	if err := spec.Validate(svc); err != nil {
		return nil, err
	}
	if !filepath.IsAbs(cgroupParent) {
		return nil, fmt.Errorf("cgroup parent %q is not an absolute path", cgroupParent)
	}
	// On v2, corral must not sit in an ancestor of its sandboxes.
	if err := m.cgroups.CheckParent(cgroupParent); err != nil {
		return nil, err
	}
	sb, err := m.reserve(svc, filepath.Join(cgroupParent, svc.Name))
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, sb.Destroy())
		}
	}()
	sb.limits = svc.Resources
	sb.warmed = m.warmAttach(sb)
	// A cgroup of this name that already holds processes is not ours (our
	// own leftovers were swept): say so plainly instead of libcontainer's
	// "cgroup is not empty".
	if pids, _ := m.cgroups.Procs(sb.rec.CgroupPath); len(pids) > 0 {
		sb.rec.CgroupPath = "" // not ours: never remove it
		return nil, fmt.Errorf("%w: cgroup %s already holds %d processes that this corral did not start (another corral with the same cgroup parent?)",
			ErrNameInUse, filepath.Join(cgroupParent, svc.Name), len(pids))
	}
	// The ID block is looked up (a locked read and write in the state
	// dir) while the built-in root is built: neither needs the other.
	mapped := make(chan error, 1)
	var ids *idMapping
	if svc.Security.HostUserNamespace {
		mapped <- nil
	} else {
		go func() {
			var err error
			ids, err = m.mapping(svc.Name)
			mapped <- err
		}()
	}
	waitIDs := func() error {
		if mapped == nil {
			return nil
		}
		err := <-mapped
		mapped = nil
		if ids != nil {
			sb.rec.IDBlock = ids.block
		}
		return err
	}
	// Every way out waits for the lookup (before the deferred Destroy).
	defer func() {
		if werr := waitIDs(); werr != nil && err == nil {
			err = werr
		}
	}()
	if svc.Rootfs != "" || len(layers) > 0 {
		if err := waitIDs(); err != nil {
			return nil, err
		}
		if ids != nil && svc.Rootfs != "" {
			if err := checkRootEnterable(svc.Rootfs); err != nil {
				return nil, err
			}
		}
	}
	if len(layers) > 0 {
		sb.root, err = m.layeredRoot(svc, sb.rec.RootDir, layers, ids)
	} else if svc.Rootfs == "" {
		sb.root, err = m.builtinRoot(sb.rec.RootDir, builtinOptions(svc), svc.Security.WritableRoot)
	} else if ids != nil {
		// Shown to the sandbox through an id-mapped mount: its owners as
		// they are on disk, nothing chowned.
		var userns *os.File
		if userns, err = m.userns(ids.block); err == nil {
			sb.root, err = rootfs.IDMapped(svc.Rootfs, sb.rec.RootDir, userns)
		}
		if err != nil {
			return nil, &spec.FieldError{Field: "rootfs", Err: fmt.Errorf("%w; or user_namespace: host", err)}
		}
	} else {
		sb.root, err = rootfs.Directory(svc.Rootfs)
	}
	if err = errors.Join(waitIDs(), err); err != nil {
		return nil, err
	}
	s := spec.RuntimeSpec(svc)
	sb.root.Apply(s)
	if svc.Notify {
		conn, path, err := m.makeNotify(svc.Name)
		if err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", svc.Name, err)
		}
		sb.notify = conn
		s.Mounts = append(s.Mounts, notifyMount(path))
		s.Process.Env = append(s.Process.Env, notifyEnv())
	}
	if err := isolation.Harden(s, svc.Security); err != nil {
		return nil, err
	}
	if svc.EffectiveNetwork() == spec.NetworkBridge {
		if err := m.attach(svc, s); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", svc.Name, err)
		}
	}
	oomGroup(s, m.cgroups.Mode)
	if ids != nil {
		ids.apply(s, svc)
	}
	// corral's init loads the seccomp filter itself, precompiled, and
	// runs the command; libcontainer only sees the init.
	sb.seccomp, s.Linux.Seccomp = s.Linux.Seccomp, nil
	s.Mounts = append(s.Mounts, rspec.Mount{
		Destination: pid1.PathInSandbox, Source: m.init, Type: "bind",
		Options: []string{"bind", "ro", "nosuid", "nodev"},
	})
	if sb.root.Shared() {
		if ok, _ := sb.root.HasMountpoints(s.Mounts); !ok {
			if err := sb.unshareRoot(s, builtinOptions(svc)); err != nil {
				return nil, fmt.Errorf("sandbox %s: %w", svc.Name, err)
			}
		}
	}
	if ids != nil {
		if err := ids.prepareRoot(sb.root, s, svc); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", svc.Name, err)
		}
		if err := m.checkIDMaps(ids, svc); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", svc.Name, err)
		}
	}
	// The runtime would make a missing working directory: refuse it here.
	if err := sb.root.CheckDir(s.Mounts, s.Process.Cwd); err != nil {
		return nil, &spec.FieldError{Field: "workdir", Err: err}
	}
	s.Linux.CgroupsPath = sb.rec.CgroupPath
	sb.spec = s
	cfg, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: svc.Name, Spec: s})
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: convert spec: %w", svc.Name, err)
	}
	if ids != nil {
		if sb.userns, err = m.joinUserns(cfg, ids.block); err != nil {
			return nil, fmt.Errorf("sandbox %s: %w", svc.Name, err)
		}
	}
	if m.kind == Detached {
		// What the record holds that a successor needs if the record is
		// lost: that it is a daemon's, and the parent cgroups it made.
		cfg.Labels = append(cfg.Labels, detachedLabel, createdCgroupsLabel+strings.Join(sb.rec.CreatedCgroups, ","))
	}
	sb.container, err = libcontainer.Create(m.containersDir(), svc.Name, cfg)
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: create: %w", svc.Name, err)
	}
	return sb, nil
}

// warmAttach warms the kernel's cgroup attach lock for the move of sb's
// init into its cgroup (see cgroup.WarmAttach), beside the rest of its
// set-up: the grace period that move would wait for (7.5-17 ms on this
// kind of machine) runs meanwhile.
// The warm-up's cgroup is a sibling of the sandbox's, named after it with
// a leading dot (no service's name has one); a parent cgroup it makes is
// one sb claimed, removed by its Destroy. The returned channel is closed
// once the warm-up is over and its cgroup removed.
func (m *Manager) warmAttach(sb *Sandbox) chan struct{} {
	parent := filepath.Dir(sb.rec.CgroupPath)
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := m.cgroups.WarmAttach(warmCgroup(sb.rec.CgroupPath), slices.Contains(sb.claims, parent))
		if err != nil {
			// Only slower: the runtime's own move takes the lock cold.
			m.log.WithError(err).WithField("sandbox", sb.Name).Debug("warm-up of the cgroup attach lock")
		}
	}()
	return done
}

// warmCgroup is the warm-up's cgroup for the sandbox whose cgroup is
// cgroupPath: its sibling, named after it with a leading dot.
func warmCgroup(cgroupPath string) string {
	return filepath.Join(filepath.Dir(cgroupPath), ".warm-"+filepath.Base(cgroupPath))
}

// builtinOptions are what svc's built-in root holds of its own.
func builtinOptions(svc *spec.Service) rootfs.HostBindOptions {
	return rootfs.HostBindOptions{
		Hostname:    svc.EffectiveHostname(),
		HostNetwork: svc.EffectiveNetwork() == spec.NetworkHost,
		UID:         svc.User.UID,
		GID:         svc.User.GID,
	}
}

// builtinRoot makes a sandbox's built-in root in dir: on the shared
// template when the root is read-only (its own /etc files in dir), a
// tree of its own when it is writable.
func (m *Manager) builtinRoot(dir string, opt rootfs.HostBindOptions, writable bool) (*rootfs.Root, error) {
	if writable {
		return rootfs.HostBind(dir, opt)
	}
	template, err := rootfs.EnsureTemplate(m.rootsDir())
	if err != nil {
		return nil, err
	}
	return rootfs.HostBindShared(template, dir, opt)
}

// unshareRoot gives the sandbox a built-in root of its own instead of the
// shared one, which lacks a mount point that s needs (the runtime, or
// MakeMountpoints, would make it in the template every sandbox shares).
// s's root is replaced, and the shared root's binds (one run of s's
// mounts, where Apply put them, after Harden's standard mounts) by the
// new root's.
func (sb *Sandbox) unshareRoot(s *rspec.Spec, opt rootfs.HostBindOptions) error {
	old := sb.root.Mounts
	at := -1
	for k := 0; k+len(old) <= len(s.Mounts) && at < 0; k++ {
		if slices.EqualFunc(s.Mounts[k:k+len(old)], old, func(a, b rspec.Mount) bool {
			return a.Destination == b.Destination && a.Source == b.Source
		}) {
			at = k
		}
	}
	if at < 0 {
		return errors.New("built-in root: its binds are not in the spec")
	}
	if err := sb.root.Remove(); err != nil {
		return err
	}
	r, err := rootfs.HostBind(sb.rec.RootDir, opt)
	if err != nil {
		return err
	}
	sb.root = r
	s.Root.Path = r.Path
	s.Mounts = slices.Concat(s.Mounts[:at], r.Mounts, s.Mounts[at+len(old):])
	return nil
}

// oomGroup makes an OOM kill take the whole sandbox on cgroup v2
// (memory.oom.group=1): every process of it is killed at once, its init
// with them, and the sandbox ends reported as OOM-killed. A sandbox that
// lost one process to the OOM killer is in a state its service never
// planned for (a worker gone, its parent waiting forever); ending it whole
// lets the restart policy bring it back clean. v1 has no such setting, and
// libcontainer refuses unified keys there: on v1 the kernel still kills
// one process, and a child's OOM kill is reported beside init's exit.
func oomGroup(s *rspec.Spec, mode cgroup.Mode) {
	if mode != cgroup.Unified {
		return
	}
	if s.Linux.Resources.Unified == nil {
		s.Linux.Resources.Unified = map[string]string{}
	}
	s.Linux.Resources.Unified["memory.oom.group"] = "1"
}

// reserve writes the sandbox's record under the state lock, after making
// sure no live sandbox has the name and sweeping a dead one that had it.
func (m *Manager) reserve(svc *spec.Service, cgroupPath string) (*Sandbox, error) {
	name := svc.Name
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// The parent is recorded before anything is made under it: what a
	// killed corral leaves there is then recognized as its own.
	if err := m.recordParent(filepath.Dir(cgroupPath)); err != nil {
		return nil, err
	}
	if old, err := loadRecord(m.recordPath(name)); err == nil {
		// Only a leftover of the name needs the state dir's trust read.
		t, err := m.loadTrust()
		if err != nil {
			return nil, err
		}
		if err := t.checkRecord(old, name); err != nil {
			m.setAside(name, err)
		} else {
			switch {
			case old.ownerAlive():
				return nil, fmt.Errorf("%w: sandbox %q is already running (corral pid %d)", ErrNameInUse, name, old.OwnerPID)
			case old.Detached:
				return nil, fmt.Errorf("%w: sandbox %q belongs to a corral daemon that is not running; start the daemon on this state dir to adopt it", ErrNameInUse, name)
			}
			if err := m.destroyLeftover(t, name, old); err != nil {
				return nil, err
			}
		}
	}
	claims := m.claimParents(filepath.Dir(cgroupPath))
	rec := &record{
		Name:           name,
		CgroupPath:     cgroupPath,
		CreatedCgroups: claims,
		OwnerPID:       m.self,
		OwnerStart:     m.selfAt,
		Created:        time.Now().UTC(),
		Detached:       m.kind == Detached,
		Service:        svc,
	}
	if svc.Rootfs == "" || !svc.Security.HostUserNamespace {
		// The built-in root, or where a directory root is id-mapped.
		rec.RootDir = filepath.Join(m.rootsDir(), name)
	}
	if err := rec.save(m.recordPath(name)); err != nil {
		m.unclaimParents(claims)
		return nil, err
	}
	return &Sandbox{Name: name, m: m, rec: rec, claims: claims, pidfd: -1, command: svc.Command[0]}, nil
}

// claimParents returns the cgroups from parent up that a sandbox made under
// parent must remove when it ends (if they are empty then), deepest first:
// those that do not exist yet, and those that live sandboxes of this
// manager claim, because one of them made it. Sandboxes that share a
// parent may end in any order. A cgroup corral did not make is never
// claimed.
func (m *Manager) claimParents(parent string) []string {
	missing := m.cgroups.Missing(parent)
	m.mu.Lock()
	defer m.mu.Unlock()
	var claimed []string
	for p := filepath.Clean(parent); p != "/"; p = filepath.Dir(p) {
		if slices.Contains(missing, p) || m.parents[p] > 0 {
			claimed = append(claimed, p)
			m.parents[p]++
		}
	}
	return claimed
}

// unclaimParents drops a sandbox's claims, once it has tried to remove
// the parents it claimed.
func (m *Manager) unclaimParents(claimed []string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range claimed {
		if m.parents[p]--; m.parents[p] <= 0 {
			delete(m.parents, p)
		}
	}
}

// Stdio is where the sandbox's standard streams go. Files are handed to
// the sandbox as they are (no copying goroutine), so output keeps flowing
// even if corral itself dies.
type Stdio struct {
	Stdin          io.Reader
	Stdout, Stderr *os.File
	// LogDir, if set, replaces Stdout and Stderr: the output goes to
	// timestamped log files there, rotated at LogMaxSize bytes, at most
	// LogMaxFiles files kept.
	LogDir      string
	LogMaxSize  int64
	LogMaxFiles int
}

// Start runs the service's command under corral's init, the sandbox's
// PID 1. A command that turns out to be missing or not executable is
// reported by Wait (Exit.ExecErr).
func (sb *Sandbox) Start(stdio Stdio) (err error) {
	p := sb.spec.Process
	cfg := pid1.Config{LogMaxSize: stdio.LogMaxSize, LogMaxFiles: stdio.LogMaxFiles}
	var files []*os.File
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	open := func(f *os.File, err error) (*os.File, error) {
		if f != nil {
			files = append(files, f)
		}
		return f, err
	}
	if cfg.Status, err = open(os.OpenFile(sb.m.statusPath(sb.Name), os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)); err != nil {
		return fmt.Errorf("sandbox %s: status file: %w", sb.Name, err)
	}
	if sb.seccomp != nil {
		if cfg.Seccomp, err = open(sb.m.filters.Open(sb.seccomp)); err != nil {
			return fmt.Errorf("sandbox %s: seccomp: %w", sb.Name, err)
		}
	}
	if stdio.LogDir != "" {
		// The daemon made it; the sandbox's user owns it: never follow a
		// symlink put in its place.
		if cfg.LogDir, err = open(os.OpenFile(stdio.LogDir, os.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW, 0)); err != nil {
			return fmt.Errorf("sandbox %s: log dir: %w", sb.Name, err)
		}
	}
	if sb.notify != nil {
		if cfg.Keep, err = open(dupConn(sb.notify)); err != nil {
			return fmt.Errorf("sandbox %s: notify socket: %w", sb.Name, err)
		}
	}
	if sb.userns != nil {
		files = append(files, sb.userns) // joined by the init in Run
		sb.userns = nil
	}
	argv, env, extra := cfg.Wrap(p.Args)
	sb.process = &libcontainer.Process{
		Args:            argv,
		Env:             append(append([]string(nil), p.Env...), env),
		Cwd:             p.Cwd,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		NoNewPrivileges: &p.NoNewPrivileges,
		Capabilities: &configs.Capabilities{
			Bounding:  p.Capabilities.Bounding,
			Effective: p.Capabilities.Effective,
			Permitted: p.Capabilities.Permitted,
		},
		Stdin:      stdio.Stdin,
		Stdout:     stdio.Stdout,
		Stderr:     stdio.Stderr,
		ExtraFiles: extra,
		Init:       true,
	}
	err = sb.container.Run(sb.process)
	if err != nil {
		if _, perr := sb.process.Pid(); perr != nil {
			// Its init never ran (libcontainer could not even start it):
			// libcontainer's own status of such a container dereferences
			// the process it never got (a panic), so Destroy removes it
			// without asking.
			sb.initNeverRan = true
		}
		sb.process = nil
		return fmt.Errorf("sandbox %s: start %q: %w", sb.Name, p.Args[0], classifyStartError(p.Args[0], err))
	}
	sb.rec.Started = time.Now().UTC()
	sb.rec.LogDir = stdio.LogDir
	sb.rec.NotifyFd = cfg.KeepFd()
	if sb.m.kind == Detached {
		// The start time is what a successor reports; without it the
		// sandbox still gets adopted, with the record's creation time.
		if err := sb.rec.save(sb.m.recordPath(sb.Name)); err != nil {
			sb.m.log.WithError(err).WithField("sandbox", sb.Name).Warn("record start time")
		}
	}
	return nil
}

// LogDir is where the sandbox's init writes the command's output ("" if
// unknown or none).
func (sb *Sandbox) LogDir() string { return sb.rec.LogDir }

// Started is when the sandbox's command was started.
func (sb *Sandbox) Started() time.Time {
	if sb.rec.Started.IsZero() {
		return sb.rec.Created
	}
	return sb.rec.Started
}

// classifyStartError recognizes libcontainer's report of a bad command
// (its init's exec.LookPath error, carried over a pipe as text).
func classifyStartError(command string, err error) error {
	msg := err.Error()
	if !strings.Contains(msg, fmt.Sprintf("exec: %q", command)) {
		return err
	}
	switch {
	case strings.Contains(msg, "no such file or directory"), strings.Contains(msg, "executable file not found"):
		return fmt.Errorf("%w: %v", ErrCommandNotFound, err)
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "is a directory"):
		return fmt.Errorf("%w: %v", ErrCommandNotExecutable, err)
	}
	return err
}

// execError classifies the init's report of a command it could not run.
func execError(command string, st pid1.Status) error {
	kind := ErrCommandNotExecutable
	if st.Errno == int(unix.ENOENT) || st.Errno == int(unix.ENOTDIR) {
		kind = ErrCommandNotFound
	}
	return fmt.Errorf("%w: %q: %s", kind, command, st.Message)
}

// Pid is the sandbox init's PID as the host sees it.
func (sb *Sandbox) Pid() (int, error) {
	if sb.initPid > 0 {
		return sb.initPid, nil
	}
	if sb.process == nil {
		return 0, errors.New("sandbox not started")
	}
	return sb.process.Pid()
}

// Signal sends sig to the sandbox's init. An init that installed no
// handler for sig does not get it (the kernel protects a PID namespace's
// init); SIGKILL always works and ends every process in the sandbox.
func (sb *Sandbox) Signal(sig os.Signal) error {
	if sig != unix.SIGKILL {
		sb.waitInitReady()
	}
	return sb.container.Signal(sig)
}

// initReadyTimeout bounds Signal's wait for a new sandbox's init.
const initReadyTimeout = 5 * time.Second

// waitInitReady waits until the sandbox's init takes signals. Until it has
// blocked them (it then forks the command and writes its first status
// record) it is a PID namespace's init without handlers, to which the
// kernel delivers nothing from outside but SIGKILL: a stop signal sent
// right after Start would be lost, and the stop end in SIGKILL at the stop
// timeout (on a slow machine, most stops right after a start did).
func (sb *Sandbox) waitInitReady() {
	if sb.process == nil {
		return
	}
	deadline := time.Now().Add(initReadyTimeout)
	for {
		_, err := pid1.ReadStatus(sb.m.statusPath(sb.Name))
		if !errors.Is(err, pid1.ErrNoStatus) || time.Now().After(deadline) {
			return // a record (or none to wait for): the init is ready
		}
		if status, err := sb.container.Status(); err != nil || status == libcontainer.Stopped {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// Wait waits for the sandbox's init to end and reads the cgroup's counters
// before anything is removed.
func (sb *Sandbox) Wait() (Exit, error) {
	exit := Exit{MemoryLimit: sb.limits.Memory, PidsLimit: sb.limits.EffectivePids()}
	switch {
	case sb.process != nil:
		state, err := sb.process.Wait()
		if state == nil {
			return Exit{}, fmt.Errorf("sandbox %s: wait: %w", sb.Name, err)
		}
		ws := state.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			exit.Signal = ws.Signal()
		} else {
			exit.Code = ws.ExitStatus()
		}
	case sb.pidfd >= 0:
		// An adopted init is not our child: its exit status went to
		// whoever reaps it. The init's own record below is what counts;
		// an init that ended without writing one was killed, and only
		// SIGKILL can kill a PID namespace's init.
		if err := waitPidfd(sb.pidfd); err != nil {
			return Exit{}, fmt.Errorf("sandbox %s: wait: %w", sb.Name, err)
		}
		exit.Signal = unix.SIGKILL
	case sb.initPid < 0:
		// Adopted after it ended: the record says how, and its time when.
		exit.Signal, exit.Unwatched = unix.SIGKILL, true
	default:
		return Exit{}, errors.New("sandbox not started")
	}
	// The init's record tells how the command itself ended; without one
	// (the init was killed, say by SIGKILL at the stop timeout, taking the
	// command with it), the init's own status is the sandbox's.
	st, err := pid1.ReadStatus(sb.m.statusPath(sb.Name))
	if err == nil {
		switch st.State {
		case pid1.StateExited:
			exit.Code, exit.Signal = st.Code, 0
		case pid1.StateSignaled:
			exit.Code, exit.Signal = 0, syscall.Signal(st.Signal)
		case pid1.StateExecFailed:
			exit.ExecErr = execError(sb.command, st)
		}
		if exit.Unwatched && st.State != pid1.StateRunning {
			// The init wrote its last record as the command ended.
			if fi, err := os.Stat(sb.m.statusPath(sb.Name)); err == nil {
				exit.Ended = fi.ModTime()
			}
		}
	}
	// The exit is known without the counters: a cgroup removed behind
	// corral's back costs only the OOM and pids verdicts, said so in the
	// reason.
	if exit.Stats, err = sb.m.cgroups.Stats(sb.rec.CgroupPath); err != nil {
		exit.StatsErr = err
	}
	return exit, nil
}

// LogLoss reads, from the init's status record of the named sandbox, how
// many output lines it could not log and why writing fails now (0 when it
// works). While writing fails the count is a lower bound: the init updates
// it when the trouble starts and when it ends, not for every line.
func (m *Manager) LogLoss(name string) (lost uint64, failing syscall.Errno) {
	st, err := pid1.ReadStatus(m.statusPath(name))
	if err != nil {
		return 0, 0
	}
	return st.LogLost, syscall.Errno(st.LogErrno)
}

// Stats reads the sandbox's live counters.
func (sb *Sandbox) Stats() (cgroup.Stats, error) {
	return sb.m.cgroups.Stats(sb.rec.CgroupPath)
}

// Usage reads the sandbox's cgroup's counters the cheap way (see
// cgroup.Host.Usage): what a look at a running sandbox needs.
func (sb *Sandbox) Usage() (cgroup.Stats, error) {
	return sb.m.cgroups.Usage(sb.rec.CgroupPath)
}

// Runs is what the sandbox runs: its command and, for one made from an
// image, the image as REF@DIGEST.
func (sb *Sandbox) Runs() (command []string, image string) {
	svc := sb.rec.Service
	if svc == nil {
		return nil, ""
	}
	if svc.Image != nil {
		image = svc.Image.Ref
		if svc.Image.Digest != "" {
			image += "@" + svc.Image.Digest
		}
	}
	return svc.Command, image
}

// CgroupPath is the sandbox's cgroup, relative to each hierarchy's root.
func (sb *Sandbox) CgroupPath() string { return sb.rec.CgroupPath }

// Destroy kills whatever still runs in the sandbox and removes everything
// made for it: libcontainer state, cgroups, root, record. It is safe to
// call on a half-made sandbox and more than once.
func (sb *Sandbox) Destroy() error {
	var errs []error
	if sb.warmed != nil { // its cgroup is gone only then
		<-sb.warmed
		sb.warmed = nil
	}
	if sb.userns != nil { // never started
		sb.userns.Close()
		sb.userns = nil
	}
	if sb.container != nil {
		if sb.initNeverRan {
			// Nothing ran, no cgroup was entered: only its directory.
			if err := sb.m.removeContainerDir(sb.Name); err != nil {
				errs = append(errs, err)
			}
		} else if err := destroyContainer(sb.container, sb.process); err != nil {
			errs = append(errs, err)
		}
		sb.container = nil
	}
	if sb.pidfd >= 0 {
		unix.Close(sb.pidfd)
		sb.pidfd = -1
	}
	if sb.notify != nil {
		sb.notify.Close()
		sb.notify = nil
	}
	if sb.notesDone != nil {
		close(sb.notesDone)
		sb.notesDone = nil
	}
	if sb.root != nil {
		if err := sb.root.Remove(); err != nil {
			errs = append(errs, err)
		} else if sb.rec.hasUpper() {
			if err := rootfs.RemoveUpper(sb.m.upperPath(sb.Name)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if err := sb.m.detach(sb.rec); err != nil {
		errs = append(errs, err)
	}
	if err := sb.m.release(sb.rec, sb.claims, true); err != nil {
		errs = append(errs, err)
	}
	sb.claims = nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("destroy sandbox %s: %w", sb.Name, err)
	}
	return nil
}

// destroyContainer kills the container's processes if any still run, waits
// for its init to be gone, and destroys it. p is nil for a container
// loaded from state (its init is not our child: poll its status instead).
func destroyContainer(c *libcontainer.Container, p *libcontainer.Process) error {
	if status, err := c.Status(); err == nil && status != libcontainer.Stopped {
		if err := c.Signal(unix.SIGKILL); err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			return fmt.Errorf("kill: %w", err)
		}
		if p != nil {
			_, _ = p.Wait()
		} else if err := waitStopped(c, 10*time.Second); err != nil {
			return err
		}
	}
	return c.Destroy()
}

func waitStopped(c *libcontainer.Container, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		status, err := c.Status()
		if err != nil || status == libcontainer.Stopped {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sandbox %s still %s %s after SIGKILL", c.ID(), status, timeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// release removes the cgroups the sandbox made and, last, its record.
//
// counted: the sandbox's claims on parent cgroups are this manager's (see
// claimParents); a parent is removed only by its last claimant, and under
// the lock that new claims take, so that a sandbox being made under it
// (claimed, its own cgroup not made yet) never loses it. Otherwise (a
// leftover of another process) its created parents are removed if empty.
func (m *Manager) release(rec *record, claims []string, counted bool) error {
	var errs []error
	// The leaf normally went with libcontainer's Destroy; a half-made
	// sandbox may have left it, and a corral killed during its warm-up
	// the warm-up's (empty: its child ends with its parent).
	if rec.CgroupPath != "" {
		for _, cg := range []string{rec.CgroupPath, warmCgroup(rec.CgroupPath)} {
			if err := m.cgroups.RemoveEmpty(cg); err != nil {
				errs = append(errs, err)
			}
		}
	}
	parents := rec.CreatedCgroups
	if counted {
		m.mu.Lock()
		defer m.mu.Unlock()
		parents = nil
		for _, p := range claims {
			if m.parents[p]--; m.parents[p] <= 0 {
				delete(m.parents, p)
				parents = append(parents, p)
			}
		}
	}
	for _, cg := range parents {
		if err := m.cgroups.RemoveEmpty(cg); err != nil {
			errs = append(errs, err)
		}
	}
	if err := m.removeNotify(rec.Name); err != nil {
		errs = append(errs, err)
	}
	if err := os.Remove(m.statusPath(rec.Name)); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	if err := os.Remove(m.recordPath(rec.Name)); err != nil && !os.IsNotExist(err) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Sweep destroys every sandbox whose owning corral process is gone: the
// leftovers of a corral that was killed. Sandboxes of live owners are not
// touched.
func (m *Manager) Sweep() error {
	unlock, err := m.lock()
	if err != nil {
		return err
	}
	defer unlock()
	t, err := m.loadTrust()
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	// Half-written records of killed corral processes.
	if _, err := store.SweepTemp(m.recordsDir()); err != nil {
		m.log.WithError(err).Warn("sweep")
	}
	entries, err := os.ReadDir(m.recordsDir())
	if err != nil {
		return fmt.Errorf("sweep: %w", err)
	}
	var errs []error
	live := map[string]bool{}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok {
			continue // a status file, or a temporary file of an interrupted write
		}
		rec, err := loadRecord(filepath.Join(m.recordsDir(), e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // its owner destroyed it since the listing
		}
		if err != nil {
			// A torn record: libcontainer's state says what runs.
			m.log.WithError(err).Warn("unreadable sandbox record; recovering it from what runs")
			rec = m.rebuildRecord(name)
		}
		if err := t.checkRecord(rec, name); err != nil {
			m.setAside(name, err)
			continue
		}
		// A detached sandbox waits for a daemon to adopt it, whoever
		// sweeps: its exit status is the daemon's to report.
		if rec.ownerAlive() || rec.Detached {
			live[rec.Name] = true
			continue
		}
		// An owner ends right after it removes its record, and Destroy
		// does not take the lock: read after the load, the owner may be
		// gone because it is done. Its death is final, so a record still
		// there now is a leftover, and one gone was not.
		if _, err := os.Lstat(filepath.Join(m.recordsDir(), e.Name())); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err := m.destroyLeftover(t, name, rec); err != nil {
			errs = append(errs, err)
		}
	}
	// State without a record: made by a corral killed mid-way through
	// Destroy, after the record's removal was reordered, or by hand.
	errs = append(errs, m.sweepOrphanDirs(t, live)...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sweep leftovers: %w", err)
	}
	return nil
}

// destroyLeftover removes the sandbox name, whose owner is gone, killing
// it first if it still runs; or, if its record or state names what is not
// one of this state dir's sandboxes, sets them aside untouched.
func (m *Manager) destroyLeftover(t *trust, name string, rec *record) error {
	c, err := m.inspect(t, name, rec)
	if errors.Is(err, ErrUntrusted) {
		m.setAside(name, err)
		return nil
	}
	if err != nil {
		return fmt.Errorf("sandbox %s: %w", name, err)
	}
	return m.removeLeftover(t, rec, c)
}

// removeLeftover removes a sandbox that inspect passed, with c its
// libcontainer state (nil: none).
func (m *Manager) removeLeftover(t *trust, rec *record, c *libcontainer.Container) error {
	log := m.log.WithField("sandbox", rec.Name)
	var errs []error
	if c != nil {
		if status, _ := c.Status(); status != libcontainer.Stopped {
			log.WithField("owner_pid", rec.OwnerPID).Warn("killing sandbox left running by a corral process that is gone")
		}
		if err := destroyContainer(c, nil); err != nil {
			errs = append(errs, err)
		}
	} else if err := m.removeContainerDir(rec.Name); err != nil {
		// Created but never started: libcontainer made its directory and
		// saves no state in it until the start.
		errs = append(errs, err)
	}
	if rec.CgroupPath != "" {
		if err := m.killCgroup(t, rec.CgroupPath); err != nil {
			errs = append(errs, err)
		}
	}
	if rec.RootDir != "" {
		if err := rootfs.RemoveDir(rec.RootDir); err != nil {
			errs = append(errs, err)
		} else if rec.hasUpper() {
			if err := rootfs.RemoveUpper(m.upperPath(rec.Name)); err != nil {
				errs = append(errs, err)
			}
		}
	}
	// A manager without the bridge (its sweep at creation comes before
	// SetNetwork; a corral run not on the bridge) leaves the sandbox's
	// network to the sweep of the bridge by the next corral that opens it
	// (SweepNetwork takes off what no record names): refusing to remove
	// the rest would fail every later start in the state dir.
	if err := m.detach(rec); err != nil && !errors.Is(err, ErrNoBridge) {
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		if err := m.release(rec, nil, false); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sandbox %s: %w", rec.Name, err)
	}
	log.Info("removed leftovers of a sandbox whose corral process is gone")
	return nil
}

// removeContainerDir removes the libcontainer dir of the sandbox name,
// never through a symlink.
func (m *Manager) removeContainerDir(name string) error {
	dir, err := beneath.OpenRoot(m.containersDir())
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.RemoveAll(name)
}

// killCgroup SIGKILLs the processes left in a cgroup that corral's record
// says it made (a corral killed between creating the cgroup and writing
// libcontainer's state), and waits for it to empty. It kills only in a
// sandbox's cgroup under the state dir's cgroup parents.
func (m *Manager) killCgroup(t *trust, path string) error {
	if err := t.checkCgroup(path); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, err := m.cgroups.Procs(path)
		if err != nil {
			return fmt.Errorf("list processes of cgroup %s: %w", path, err)
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cgroup %s still holds processes %v", path, pids)
		}
		for _, pid := range pids {
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sweepOrphanDirs removes libcontainer state and built-in roots that have
// no record and belong to no live sandbox.
func (m *Manager) sweepOrphanDirs(t *trust, live map[string]bool) []error {
	var errs []error
	if entries, err := os.ReadDir(m.containersDir()); err == nil {
		for _, e := range entries {
			name := e.Name()
			if live[name] {
				continue
			}
			rec := m.rebuildRecord(name)
			if rec.Detached {
				continue // a daemon's, its record lost: Adopt rebuilds it
			}
			c, err := m.inspect(t, name, rec)
			switch {
			case errors.Is(err, ErrUntrusted):
				m.setAside(name, err)
			case err != nil:
				errs = append(errs, fmt.Errorf("sandbox %s: %w", name, err))
			case c != nil:
				if err := destroyContainer(c, nil); err != nil {
					errs = append(errs, fmt.Errorf("sandbox %s: %w", name, err))
				}
			default:
				if err := m.removeContainerDir(name); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if entries, err := os.ReadDir(m.rootsDir()); err == nil {
		for _, e := range entries {
			// Templates are shared by sandboxes of any name (and one being
			// made by another process may be there): never swept.
			if !live[e.Name()] && !rootfs.IsTemplate(e.Name()) {
				if err := rootfs.RemoveDir(filepath.Join(m.rootsDir(), e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	// Writable layers whose roots are gone (the root's mount comes down
	// first, above).
	if entries, err := os.ReadDir(m.uppersDir()); err == nil {
		for _, e := range entries {
			if _, err := os.Lstat(filepath.Join(m.rootsDir(), e.Name())); !live[e.Name()] && errors.Is(err, os.ErrNotExist) {
				if err := rootfs.RemoveUpper(m.upperPath(e.Name())); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errs
}

// UpdateResources changes the running sandbox's limits in place, without a
// restart. A zero memory or CPU value removes that limit.
func (sb *Sandbox) UpdateResources(r spec.Resources) error {
	cfg := sb.container.Config()
	res := *cfg.Cgroups.Resources
	// The settings Create gave (through specconv), from the same
	// conversion; an absent limit is -1, "none", for libcontainer.
	want := spec.LinuxResources(r)
	res.Memory, res.MemorySwap = -1, -1
	if m := want.Memory; m != nil {
		res.Memory, res.MemorySwap = *m.Limit, *m.Swap
	}
	res.CpuQuota, res.CpuPeriod = -1, spec.CPUPeriod
	if c := want.CPU; c != nil {
		res.CpuQuota, res.CpuPeriod = *c.Quota, *c.Period
	}
	res.PidsLimit = want.Pids.Limit
	cg := *cfg.Cgroups
	cg.Resources = &res
	cfg.Cgroups = &cg
	if err := sb.container.Set(cfg); err != nil {
		return fmt.Errorf("sandbox %s: update limits: %w", sb.Name, err)
	}
	sb.limits = r
	return nil
}

// NotifyOOM returns a channel that receives a value each time the kernel
// OOM killer acts in the sandbox's cgroup (a child killed while the
// sandbox runs on, as well as the sandbox's end), and is closed when the
// cgroup goes away.
func (sb *Sandbox) NotifyOOM() (<-chan struct{}, error) {
	if sb.container == nil {
		return nil, ErrNotRunning
	}
	ch, err := sb.container.NotifyOOM()
	if err != nil {
		return nil, fmt.Errorf("sandbox %s: watch OOM kills: %w", sb.Name, err)
	}
	return ch, nil
}

// KillAll sends SIGKILL to the sandbox's init, which ends every process in
// its PID namespace, and to anything else still in its cgroup.
func (sb *Sandbox) KillAll() error {
	err := sb.container.Signal(unix.SIGKILL)
	if errors.Is(err, libcontainer.ErrNotRunning) {
		err = nil
	}
	pids, _ := sb.m.cgroups.Procs(sb.rec.CgroupPath)
	for _, pid := range pids {
		_ = unix.Kill(pid, unix.SIGKILL)
	}
	return err
}
