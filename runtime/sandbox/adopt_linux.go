package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs"
	"github.com/corral-dev/corral/runtime/pid1"
	"github.com/corral-dev/corral/spec"
)

// Adopted is a detached sandbox that an earlier daemon left, now owned by
// this manager.
type Adopted struct {
	*Sandbox
	// Service is what the sandbox was made from; nil when its record was
	// lost and rebuilt from what runs.
	Service *spec.Service
	// Running is false for a sandbox whose command ended while no daemon
	// watched: Wait returns its exit at once.
	Running bool
}

// Adopt takes over every detached sandbox whose daemon is gone. Those
// still running are returned for the caller to supervise (Wait, Signal,
// Destroy work as on sandboxes it made), and so are those that ended
// meanwhile, for their exit to be reported. Sandboxes caught half-made (a
// daemon killed during a start) never ran their command and are removed.
// Nothing that runs a command is killed here: the caller decides. A
// sandbox whose record or state does not check out (see inspect) is set
// aside, untouched, and its service is as if it never ran.
func (m *Manager) Adopt() ([]*Adopted, error) {
	if m.kind != Detached {
		return nil, errors.New("adopt: only a detached manager adopts sandboxes")
	}
	unlock, err := m.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	t, err := m.loadTrust()
	if err != nil {
		return nil, fmt.Errorf("adopt: %w", err)
	}
	names, err := m.leftNames()
	if err != nil {
		return nil, fmt.Errorf("adopt: %w", err)
	}
	var found []*Adopted
	var errs []error
	for _, name := range names {
		a, err := m.adopt(t, name)
		if err != nil {
			errs = append(errs, fmt.Errorf("adopt sandbox %s: %w", name, err))
			continue
		}
		if a != nil {
			found = append(found, a)
		}
	}
	return found, errors.Join(errs...)
}

// leftNames lists the sandboxes with a record or libcontainer state.
func (m *Manager) leftNames() ([]string, error) {
	var names []string
	records, err := os.ReadDir(m.recordsDir())
	if err != nil {
		return nil, err
	}
	for _, e := range records {
		if name, ok := strings.CutSuffix(e.Name(), ".json"); ok && !strings.HasPrefix(name, ".") {
			names = append(names, name)
		}
	}
	containers, err := os.ReadDir(m.containersDir())
	if err != nil {
		return nil, err
	}
	for _, e := range containers {
		if !slices.Contains(names, e.Name()) {
			names = append(names, e.Name())
		}
	}
	return names, nil
}

// adopt takes over one sandbox, or returns nil if it is not a detached
// sandbox left by a dead owner, was removed as a half-made one, or was set
// aside.
func (m *Manager) adopt(t *trust, name string) (*Adopted, error) {
	log := m.log.WithField("sandbox", name)
	rec, err := loadRecord(m.recordPath(name))
	switch {
	case errors.Is(err, os.ErrNotExist):
		rec = m.rebuildRecord(name)
		if !rec.Detached {
			return nil, nil // an attached sandbox's state: Sweep's business
		}
		log.Warn("sandbox record missing; rebuilt it from libcontainer's state")
	case err != nil:
		rec = m.rebuildRecord(name)
		if !rec.Detached {
			return nil, nil
		}
		log.WithError(err).Warn("sandbox record corrupt; rebuilt it from libcontainer's state")
	}
	if !rec.Detached || rec.ownerAlive() {
		return nil, nil
	}
	c, err := m.inspect(t, name, rec)
	if errors.Is(err, ErrUntrusted) {
		m.setAside(name, err)
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if c == nil {
		// Killed before libcontainer saved its state: the command never
		// ran; whatever is in the cgroup is a half-started init.
		log.Info("removing a sandbox whose start was interrupted")
		return nil, m.removeLeftover(t, rec, nil)
	}
	status, err := c.Status()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if status == libcontainer.Created {
		// Its init waits for the go that a killed daemon never gave: the
		// command was never executed.
		log.Info("removing a sandbox whose start was interrupted")
		return nil, m.removeLeftover(t, rec, c)
	}
	rec.OwnerPID, rec.OwnerStart = m.self, m.selfAt
	if err := rec.save(m.recordPath(name)); err != nil {
		return nil, err
	}
	sb := &Sandbox{Name: name, m: m, rec: rec, container: c, pidfd: -1, initPid: -1, command: "command"}
	sb.claims = m.reclaimParents(rec.CreatedCgroups)
	if rec.RootDir != "" {
		sb.root = rootfs.Adopt(rec.RootDir)
	}
	if rec.Service != nil {
		sb.limits = rec.Service.Resources
		sb.command = rec.Service.Command[0]
	}
	a := &Adopted{Sandbox: sb, Service: rec.Service}
	if bridged(rec) && status != libcontainer.Stopped {
		// Its loopback-published ports were served by the daemon that
		// is gone.
		if n, err := m.network(); err != nil {
			log.WithError(err).Warn("bridge unavailable: the sandbox's loopback-published ports stay closed")
		} else if err := n.Adopt(name); err != nil {
			log.WithError(err).Warn("cannot serve the sandbox's loopback-published ports again")
		}
	}
	if status == libcontainer.Stopped {
		if !m.commandStarted(name) {
			return nil, m.interrupted(sb)
		}
		return a, nil
	}
	state, err := c.State()
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	fd, err := unix.PidfdOpen(state.InitProcessPid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return a, nil // ended just now
		}
		return nil, fmt.Errorf("pidfd: %w", err)
	}
	// The PID could have been reused between libcontainer's check and
	// the pidfd: check again that it names the same process.
	if start, err := processStartTime(state.InitProcessPid); err != nil || start != state.InitProcessStartTime {
		unix.Close(fd)
		return a, nil
	}
	sb.pidfd, sb.initPid, a.Running = fd, state.InitProcessPid, true
	if !m.commandStarted(name) && !m.awaitCommand(name, fd) {
		return nil, m.interrupted(sb)
	}
	if rec.NotifyFd > 0 {
		if err := m.adoptNotify(sb); err != nil {
			log.WithError(err).Warn("sd_notify socket not recovered: its messages are not read until the service restarts")
		}
	}
	return a, nil
}

// commandStarted reports whether the sandbox's init has recorded starting
// the command (or its end). Without a record the command never ran: a
// daemon killed in the middle of a start leaves libcontainer's init to
// notice its parent is gone and kill itself before it executes anything.
func (m *Manager) commandStarted(name string) bool {
	_, err := pid1.ReadStatus(m.statusPath(name))
	return err == nil
}

// awaitCommandTimeout bounds the wait for an init caught between its
// start and its first record.
const awaitCommandTimeout = 2 * time.Second

// awaitCommand waits for a live init without a status record to write one
// (true) or to end without it (false).
func (m *Manager) awaitCommand(name string, pidfd int) bool {
	deadline := time.Now().Add(awaitCommandTimeout)
	for time.Now().Before(deadline) {
		if m.commandStarted(name) {
			return true
		}
		fds := []unix.PollFd{{Fd: int32(pidfd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, 10); n > 0 {
			return m.commandStarted(name) // ended: did it record anything?
		}
	}
	return true // alive and silent: leave it to supervision, never kill on a guess
}

// interrupted removes an adopted sandbox whose command never ran (no exit
// to report: its service simply starts again).
func (m *Manager) interrupted(sb *Sandbox) error {
	m.log.WithField("sandbox", sb.Name).Info("removing a sandbox whose start was interrupted: its command never ran")
	return sb.Destroy()
}

// rebuildRecord makes a record for a sandbox whose record is lost, from
// libcontainer's state. Its Service is unknown.
func (m *Manager) rebuildRecord(name string) *record {
	rec := &record{Name: name}
	state, err := m.readState(name)
	if err != nil {
		return rec
	}
	cfg := state.Config
	rec.Detached = slices.Contains(cfg.Labels, detachedLabel)
	for _, l := range cfg.Labels {
		if v, ok := strings.CutPrefix(l, createdCgroupsLabel); ok && v != "" {
			rec.CreatedCgroups = strings.Split(v, ",")
		}
	}
	if cfg.Cgroups != nil {
		rec.CgroupPath = cfg.Cgroups.Path
	}
	// Its built-in root: its own dir, or the shared template with its own
	// /etc files in that dir.
	root := filepath.Join(m.rootsDir(), name)
	if cfg.Rootfs == root || filepath.Dir(cfg.Rootfs) == m.rootsDir() && rootfs.IsTemplate(filepath.Base(cfg.Rootfs)) {
		rec.RootDir = root
	}
	rec.Created, rec.Started = state.Created, state.Created
	return rec
}

// reclaimParents counts an adopted sandbox's claims on the parent cgroups
// its record says it shares (see claimParents).
func (m *Manager) reclaimParents(claims []string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, p := range claims {
		m.parents[p]++
	}
	return slices.Clone(claims)
}

// waitPidfd blocks until the process behind fd has ended.
func waitPidfd(fd int) error {
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		_, err := unix.Poll(fds, -1)
		if err == nil && fds[0].Revents != 0 {
			return nil
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return fmt.Errorf("poll pidfd: %w", err)
		}
	}
}

// checkWritable fails plainly when dir cannot take new files (a read-only
// or full filesystem), before any sandbox depends on writing there.
func checkWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("state dir %s is not writable: %w", filepath.Dir(dir), unwrapPath(err))
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// unwrapPath drops the *PathError's repetition of the path.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
