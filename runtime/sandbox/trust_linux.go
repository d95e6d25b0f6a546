package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/procstat"
	"github.com/corral-dev/corral/rootfs/beneath"
	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/runtime/pid1"
	"github.com/corral-dev/corral/runtime/store"
	"github.com/corral-dev/corral/spec"
)

// What a manager finds in its state dir is root's, but it is not taken on
// its word: a record must never make corral signal, kill or remove
// anything but one of this state dir's sandboxes. Before it acts on a
// sandbox it did not make itself (Sweep, Adopt, a leftover of the name it
// reserves), a manager checks, under the state lock:
//
//   - the record: its name is a service name, the same as its file's; its
//     built-in root is exactly <state>/roots/NAME; its cgroup is exactly
//     PARENT/NAME for a cgroup parent this state dir's sandboxes are made
//     under (cgroup-parents.json, written before the first sandbox is made
//     under a new parent, and the parents the manager's caller configured);
//     the cgroups it made are PARENT or its ancestors, never "/";
//   - libcontainer's state (libcontainer/NAME/state.json, a plain file in a
//     plain directory): the same sandbox, the same cgroup in every
//     hierarchy, its own PID namespace, and nothing corral never asks of
//     libcontainer (hooks, systemd, Intel RDT);
//   - the init, if one runs: a process in that cgroup (pids and memory on
//     v1, the unified hierarchy on v2), PID 1 of a PID namespace of its
//     own, running corral's init (argv[0] and the binary as /proc shows it
//     are both /dev/.corral-init), or libcontainer's init before it
//     executes corral's.
//
// What fails is set aside: the entries of its name in the state dir move
// to <state>/quarantine, for the operator, with a warning that says why,
// and nothing it names is touched.

// ErrUntrusted: a record in the state dir names something that is not one
// of this state dir's sandboxes.
var ErrUntrusted = errors.New("not a sandbox of this state dir")

func untrusted(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUntrusted, fmt.Sprintf(format, args...))
}

// errInitGone: the init a check was about ended (or its PID was reused)
// while it was being checked.
var errInitGone = errors.New("init ended")

// parentsFile lists the cgroup parents under which a state dir's
// sandboxes were made.
type parentsFile struct {
	CgroupParents []string `json:"cgroup_parents"`
}

func (m *Manager) parentsPath() string   { return filepath.Join(m.stateDir, "cgroup-parents.json") }
func (m *Manager) quarantineDir() string { return filepath.Join(m.stateDir, "quarantine") }

// recordedParents reads the cgroup parents this state dir's sandboxes
// were made under (none before the first).
func (m *Manager) recordedParents() ([]string, error) {
	var f parentsFile
	err := store.ReadJSON(m.parentsPath(), &f)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the state dir's cgroup parents: %w", err)
	}
	return f.CgroupParents, nil
}

// recordParent adds parent to the state dir's cgroup parents, if it is
// new, before a sandbox is made under it. Call it under the state lock.
func (m *Manager) recordParent(parent string) error {
	m.mu.Lock()
	known := m.recorded[parent]
	m.mu.Unlock()
	if known {
		return nil // no file read on every start
	}
	listed, err := m.recordedParents()
	if err != nil {
		return err
	}
	if !slices.Contains(listed, parent) {
		if err := spec.CheckCgroupParent(parent); err != nil {
			return fmt.Errorf("cgroup parent: %w", err)
		}
		if err := store.WriteJSON(m.parentsPath(), parentsFile{CgroupParents: append(listed, parent)}); err != nil {
			return fmt.Errorf("record cgroup parent %s: %w", parent, err)
		}
	}
	m.mu.Lock()
	if m.recorded == nil {
		m.recorded = map[string]bool{}
	}
	m.recorded[parent] = true
	m.mu.Unlock()
	return nil
}

// trust is what a manager holding the state lock takes for its own.
type trust struct {
	stateDir string
	// parents are the cgroup parents of the state dir's sandboxes.
	parents []string
	// roots are the mount points of the cgroup hierarchies.
	roots []string
	mode  cgroup.Mode
}

// loadTrust reads what the state dir's sandboxes may be. Call it under the
// state lock.
func (m *Manager) loadTrust() (*trust, error) {
	listed, err := m.recordedParents()
	if err != nil {
		return nil, err
	}
	t := &trust{stateDir: m.stateDir, roots: m.cgroups.Roots, mode: m.cgroups.Mode}
	for _, p := range append(listed, m.trusted...) {
		// A parent that corral refuses to make sandboxes under was never
		// one of its own (the root cgroup, the service manager's).
		if spec.CheckCgroupParent(p) == nil && !slices.Contains(t.parents, p) {
			t.parents = append(t.parents, p)
		}
	}
	return t, nil
}

// checkRecord checks the record read from the file of the sandbox name.
func (t *trust) checkRecord(rec *record, name string) error {
	if !spec.ValidName(name) {
		return untrusted("%q is not a service name", name)
	}
	if rec.Name != name {
		return untrusted("the record of %s names the sandbox %q", name, rec.Name)
	}
	if root := filepath.Join(t.stateDir, "roots", name); rec.RootDir != "" && rec.RootDir != root {
		return untrusted("its root %s is not %s", rec.RootDir, root)
	}
	if rec.Service != nil && (rec.Service.Name != name || len(rec.Service.Command) == 0) {
		return untrusted("its service is %q with command %q", rec.Service.Name, rec.Service.Command)
	}
	if rec.CgroupPath == "" {
		if len(rec.CreatedCgroups) > 0 {
			return untrusted("it made cgroups %q but has none", rec.CreatedCgroups)
		}
		return nil
	}
	if err := t.checkCgroup(rec.CgroupPath); err != nil {
		return err
	}
	if filepath.Base(rec.CgroupPath) != name {
		return untrusted("its cgroup %s is not named %s", rec.CgroupPath, name)
	}
	parent := filepath.Dir(rec.CgroupPath)
	for _, c := range rec.CreatedCgroups {
		if c == "/" || c != filepath.Clean(c) || (c != parent && !strings.HasPrefix(parent, c+"/")) {
			return untrusted("a cgroup it made, %s, is not its parent %s or an ancestor of it", c, parent)
		}
	}
	return nil
}

// checkCgroup checks that p is a sandbox's cgroup: NAME (a service name)
// right under one of the state dir's cgroup parents.
func (t *trust) checkCgroup(p string) error {
	name := filepath.Base(p)
	if spec.ValidName(name) {
		for _, parent := range t.parents {
			if p == filepath.Join(parent, name) {
				return nil
			}
		}
	}
	return untrusted("cgroup %s is not a sandbox's under this state dir's cgroup parents %q", p, t.parents)
}

// checkState checks libcontainer's state of the sandbox rec describes
// (rec checked already).
func (t *trust) checkState(st *libcontainer.State, rec *record) error {
	cfg := &st.Config
	switch {
	case st.ID != rec.Name:
		return untrusted("libcontainer's state is of %q", st.ID)
	case cfg.Cgroups == nil || rec.CgroupPath == "" || cfg.Cgroups.Path != rec.CgroupPath:
		return untrusted("libcontainer's state has another cgroup than the record's %q", rec.CgroupPath)
	case cfg.Cgroups.Systemd:
		return untrusted("libcontainer's state has systemd cgroups")
	case cfg.RootlessCgroups:
		return untrusted("libcontainer's state has rootless cgroups")
	case !cfg.Namespaces.IsPrivate(configs.NEWPID):
		return untrusted("libcontainer's state shares a PID namespace")
	case cfg.IntelRdt != nil || st.IntelRdtPath != "" || st.IntelRdtMonPath != "":
		return untrusted("libcontainer's state has an Intel RDT group")
	}
	for name, hooks := range cfg.Hooks {
		if len(hooks) > 0 {
			return untrusted("libcontainer's state runs %s hooks", name)
		}
	}
	for controller, p := range st.CgroupPaths {
		if !slices.ContainsFunc(t.roots, func(root string) bool { return p == filepath.Join(root, rec.CgroupPath) }) {
			return untrusted("libcontainer's %q cgroup %s is not %s in a cgroup hierarchy", controller, p, rec.CgroupPath)
		}
	}
	return nil
}

// procInit is what /proc shows of a sandbox's init.
type procInit struct {
	cgroup  string // /proc/PID/cgroup
	status  string // /proc/PID/status
	cmdline []string
	exe     string // the link /proc/PID/exe
}

// libcontainerInitName is the name (comm) of libcontainer's init until it
// executes the sandbox's init.
const libcontainerInitName = "runc:[2:INIT]"

// checkInit checks that p is the init of the sandbox whose cgroup is
// cgroupPath.
func (t *trust) checkInit(p procInit, cgroupPath string) error {
	if err := t.checkProcCgroup(p.cgroup, cgroupPath); err != nil {
		return err
	}
	nspid := statusField(p.status, "NSpid")
	if len(nspid) < 2 || nspid[len(nspid)-1] != "1" {
		return untrusted("the process is not the init of a PID namespace of its own (NSpid %q)", nspid)
	}
	// The bound binary as its own mount namespace names it: " (deleted)"
	// once corral's binary was replaced (an upgrade).
	exe := strings.TrimSuffix(p.exe, " (deleted)")
	switch {
	case len(p.cmdline) > 0 && p.cmdline[0] == pid1.PathInSandbox && strings.HasSuffix(exe, pid1.PathInSandbox):
		return nil
	case len(p.cmdline) == 2 && p.cmdline[1] == InitArg && slices.Equal(statusField(p.status, "Name"), []string{libcontainerInitName}):
		// libcontainer's init (corral re-executed), waiting for the go to
		// execute corral's.
		return nil
	}
	return untrusted("the process runs %q (%s), not corral's init", p.cmdline, p.exe)
}

// checkProcCgroup checks that content, a /proc/PID/cgroup, puts the
// process in cgroupPath in the hierarchies that corral's limits live in.
func (t *trust) checkProcCgroup(content, cgroupPath string) error {
	want := []string{"pids", "memory"}
	if t.mode == cgroup.Unified {
		want = []string{""}
	}
	found := 0
	for _, line := range strings.Split(content, "\n") {
		id, rest, _ := strings.Cut(line, ":")
		controllers, p, ok := strings.Cut(rest, ":")
		if !ok || (t.mode == cgroup.Unified) != (id == "0" && controllers == "") {
			continue
		}
		for _, c := range strings.Split(controllers, ",") {
			if !slices.Contains(want, c) {
				continue
			}
			if p != cgroupPath {
				return untrusted("the process is in cgroup %s (%s), not %s", p, strings.TrimSpace(line), cgroupPath)
			}
			found++
		}
	}
	if found != len(want) {
		return untrusted("the process is not in cgroup %s in every hierarchy", cgroupPath)
	}
	return nil
}

// statusField returns the fields of the named line of a /proc/PID/status.
func statusField(status, name string) []string {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			return strings.Fields(v)
		}
	}
	return nil
}

// checkProcess checks the process pid, started at start (clock ticks
// since boot), as the init of the sandbox whose cgroup is cgroupPath.
// errInitGone: it ended meanwhile.
func (t *trust) checkProcess(pid int, start uint64, cgroupPath string) error {
	p, err := readProcInit(pid)
	if err == nil {
		err = t.checkInit(p, cgroupPath)
	}
	// What was read is the init's only if it still runs, with the start
	// time libcontainer recorded: checked last.
	if !runs(pid, start) {
		return errInitGone
	}
	if err == nil {
		return nil
	}
	// An init on its way out has already lost its binary and command
	// line: it is not called foreign before it has had time to end.
	for deadline := time.Now().Add(initEndTimeout); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if !runs(pid, start) {
			return errInitGone
		}
	}
	if !errors.Is(err, ErrUntrusted) {
		err = untrusted("cannot tell what it runs: %v", err)
	}
	return fmt.Errorf("init %d: %w", pid, err)
}

// initEndTimeout bounds checkProcess's wait for an init that does not
// check out to end.
const initEndTimeout = time.Second

// runs reports whether pid is still the process started at start, and not
// a zombie.
func runs(pid int, start uint64) bool {
	st, err := procstat.Read(pid)
	return err == nil && st.StartTime == start && !st.Ended()
}

func readProcInit(pid int) (procInit, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	var p procInit
	cg, err := os.ReadFile(dir + "/cgroup")
	if err != nil {
		return p, err
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return p, err
	}
	cmdline, err := os.ReadFile(dir + "/cmdline")
	if err != nil {
		return p, err
	}
	if p.exe, err = os.Readlink(dir + "/exe"); err != nil {
		return p, err
	}
	p.cgroup, p.status = string(cg), string(status)
	p.cmdline = strings.Split(strings.TrimSuffix(string(cmdline), "\x00"), "\x00")
	return p, nil
}

// readState reads libcontainer's state of the named sandbox, refusing
// (ErrUntrusted) anything but a regular file in a plain directory of the
// state dir: no symlink is followed, no FIFO waited on.
func (m *Manager) readState(name string) (*libcontainer.State, error) {
	dir, err := beneath.OpenRoot(m.containersDir())
	if err != nil {
		return nil, err
	}
	defer dir.Close()
	f, err := dir.Open(filepath.Join(name, "state.json"), unix.O_RDONLY|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.EXDEV) || errors.Is(err, unix.ENOTDIR) {
		return nil, untrusted("%s is not a directory of the state dir", filepath.Join(m.containersDir(), name))
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		return nil, untrusted("%s is not a regular file", f.Name())
	}
	var st libcontainer.State
	if err := json.NewDecoder(f).Decode(&st); err != nil {
		return nil, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return &st, nil
}

// inspect checks the sandbox name (its record rec, its libcontainer state,
// its init if one runs) before anything is done to it, and loads its
// libcontainer state: nil if it has none, or none that can be read.
func (m *Manager) inspect(t *trust, name string, rec *record) (*libcontainer.Container, error) {
	if err := t.checkRecord(rec, name); err != nil {
		return nil, err
	}
	st, err := m.readState(name)
	if errors.Is(err, ErrUntrusted) {
		return nil, err
	}
	if err != nil {
		return nil, nil // never started, or torn: nothing of it to believe
	}
	if err := t.checkState(st, rec); err != nil {
		return nil, err
	}
	c, err := libcontainer.Load(m.containersDir(), name)
	if err != nil {
		return nil, nil
	}
	// What libcontainer loaded is what it will act on: the same checks.
	loaded, err := c.State()
	if err != nil {
		return nil, fmt.Errorf("state: %w", err)
	}
	if err := t.checkState(loaded, rec); err != nil {
		return nil, err
	}
	if status, err := c.Status(); err != nil || status != libcontainer.Stopped {
		err := t.checkProcess(loaded.InitProcessPid, loaded.InitProcessStartTime, rec.CgroupPath)
		if err != nil && !errors.Is(err, errInitGone) {
			return nil, err
		}
	}
	return c, nil
}

// setAside moves what the state dir holds under name (the record, the
// init's status, libcontainer's state, the built-in root) to the
// quarantine dir, where nothing reads it, and warns with the reason.
// Nothing the record names is touched.
func (m *Manager) setAside(name string, why error) {
	log := m.log.WithField("sandbox", name).WithField("reason", why.Error())
	kinds := []string{"json", "status", "libcontainer", "root"}
	from := []string{m.recordPath(name), m.statusPath(name), filepath.Join(m.containersDir(), name), filepath.Join(m.rootsDir(), name)}
	to := func(i int, stamp string) string { return filepath.Join(m.quarantineDir(), name+"."+kinds[i]+"."+stamp) }
	if err := os.MkdirAll(m.quarantineDir(), 0o700); err != nil {
		log.WithError(err).Error("cannot set aside an untrusted sandbox record; it is left as it is, and nothing it names was touched")
		return
	}
	// A stamp that no earlier set-aside of the name took.
	now := strconv.FormatInt(time.Now().Unix(), 10)
	taken := func(stamp string) bool {
		return slices.ContainsFunc([]int{0, 1, 2, 3}, func(i int) bool {
			_, err := os.Lstat(to(i, stamp))
			return err == nil
		})
	}
	stamp := now
	for n := 2; taken(stamp); n++ {
		stamp = now + "-" + strconv.Itoa(n)
	}
	var moved []string
	for i, path := range from {
		if _, err := os.Lstat(path); err != nil {
			continue
		}
		if err := os.Rename(path, to(i, stamp)); err != nil {
			log.WithError(err).Error("set aside " + path)
			continue
		}
		moved = append(moved, to(i, stamp))
	}
	log.WithField("moved_to", strings.Join(moved, ",")).Warn("set aside a sandbox record that names what is not this state dir's sandbox; nothing it names was touched")
}
