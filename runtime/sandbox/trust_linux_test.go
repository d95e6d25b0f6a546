package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/sirupsen/logrus"

	"github.com/corral-dev/corral/runtime/cgroup"
	"github.com/corral-dev/corral/spec"
)

func testTrust() *trust {
	return &trust{
		stateDir: "/var/lib/corral",
		parents:  []string{"/corral", "/old/parent"},
		roots:    []string{"/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"},
		mode:     cgroup.Hybrid,
	}
}

func TestCheckRecord(t *testing.T) {
	good := func(change func(*record)) *record {
		r := &record{
			Name:           "web",
			CgroupPath:     "/corral/web",
			CreatedCgroups: []string{"/corral"},
			RootDir:        "/var/lib/corral/roots/web",
			Service:        &spec.Service{Name: "web", Command: []string{"/bin/true"}},
		}
		if change != nil {
			change(r)
		}
		return r
	}
	for _, tc := range []struct {
		desc string
		file string // the record file's name, less .json
		rec  *record
		ok   bool
	}{
		{"as Create writes it", "web", good(nil), true},
		{"a --rootfs sandbox: no built-in root", "web", good(func(r *record) { r.RootDir = "" }), true},
		{"made under a parent that existed", "web", good(func(r *record) { r.CreatedCgroups = nil }), true},
		{"under an earlier parent, with its ancestors", "web", good(func(r *record) {
			r.CgroupPath, r.CreatedCgroups = "/old/parent/web", []string{"/old/parent", "/old"}
		}), true},
		{"rebuilt from nothing: a name only", "web", &record{Name: "web"}, true},
		{"service unknown (rebuilt)", "web", good(func(r *record) { r.Service = nil }), true},

		{"file name not a service name", "web app", good(func(r *record) { r.Name = "web app" }), false},
		{"file name hidden", ".web", good(func(r *record) { r.Name = ".web" }), false},
		{"file name with dots only", "..", good(func(r *record) { r.Name = ".." }), false},
		{"record of another name", "web", good(func(r *record) { r.Name = "db" }), false},
		{"record of a path", "web", good(func(r *record) { r.Name = "../web" }), false},
		{"root outside the state dir", "web", good(func(r *record) { r.RootDir = "/tmp/foreign" }), false},
		{"root escaping by ..", "web", good(func(r *record) { r.RootDir = "/var/lib/corral/roots/../../../tmp/foreign" }), false},
		{"root below its own", "web", good(func(r *record) { r.RootDir = "/var/lib/corral/roots/web/../../../../etc" }), false},
		{"root through another dir of the state dir", "web", good(func(r *record) { r.RootDir = "/var/lib/corral/link/web" }), false},
		{"root of another sandbox", "web", good(func(r *record) { r.RootDir = "/var/lib/corral/roots/db" }), false},
		{"root not clean", "web", good(func(r *record) { r.RootDir = "/var/lib/corral/roots//web" }), false},
		{"root relative", "web", good(func(r *record) { r.RootDir = "roots/web" }), false},
		{"cgroup under a foreign parent", "web", good(func(r *record) {
			r.CgroupPath, r.CreatedCgroups = "/system.slice/web", nil
		}), false},
		{"cgroup right under the root", "web", good(func(r *record) { r.CgroupPath, r.CreatedCgroups = "/web", nil }), false},
		{"cgroup of another name", "web", good(func(r *record) { r.CgroupPath = "/corral/db" }), false},
		{"cgroup below a parent's child", "web", good(func(r *record) { r.CgroupPath = "/corral/x/web" }), false},
		{"cgroup escaping by ..", "web", good(func(r *record) { r.CgroupPath = "/corral/../web" }), false},
		{"cgroup not clean", "web", good(func(r *record) { r.CgroupPath = "/corral//web" }), false},
		{"cgroup the parent itself", "corral", &record{Name: "corral", CgroupPath: "/corral"}, false},
		{"made the root cgroup", "web", good(func(r *record) { r.CreatedCgroups = []string{"/corral", "/"} }), false},
		{"made a foreign cgroup", "web", good(func(r *record) { r.CreatedCgroups = []string{"/foreign"} }), false},
		{"made its own leaf as a parent", "web", good(func(r *record) { r.CreatedCgroups = []string{"/corral/web"} }), false},
		{"made a cgroup sharing a prefix only", "web", good(func(r *record) {
			r.CgroupPath, r.CreatedCgroups = "/old/parent/web", []string{"/ol"}
		}), false},
		{"made a cgroup not clean", "web", good(func(r *record) { r.CreatedCgroups = []string{"/corral/"} }), false},
		{"made cgroups but has none", "web", good(func(r *record) { r.CgroupPath = "" }), false},
		{"service of another name", "web", good(func(r *record) { r.Service.Name = "db" }), false},
		{"service without a command", "web", good(func(r *record) { r.Service.Command = nil }), false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := testTrust().checkRecord(tc.rec, tc.file)
			if tc.ok && err != nil {
				t.Errorf("checkRecord(%+v, %q) = %v, want nil", tc.rec, tc.file, err)
			}
			if !tc.ok && !errors.Is(err, ErrUntrusted) {
				t.Errorf("checkRecord(%+v, %q) = %v, want ErrUntrusted", tc.rec, tc.file, err)
			}
		})
	}
}

func TestCheckCgroup(t *testing.T) {
	tr := testTrust()
	for _, ok := range []string{"/corral/web", "/old/parent/db.1"} {
		if err := tr.checkCgroup(ok); err != nil {
			t.Errorf("checkCgroup(%s) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"/", "/corral", "/web", "/system.slice/ssh.service", "/corral/a/web", "/corral/.web", "/old/web", "corral/web", "/corral/web/"} {
		if err := tr.checkCgroup(bad); !errors.Is(err, ErrUntrusted) {
			t.Errorf("checkCgroup(%s) = %v, want ErrUntrusted", bad, err)
		}
	}
}

func goodState() *libcontainer.State {
	st := &libcontainer.State{
		BaseState: libcontainer.BaseState{
			ID: "web",
			Config: configs.Config{
				Cgroups:    &cgroups.Cgroup{Path: "/corral/web", Resources: &cgroups.Resources{}},
				Namespaces: configs.Namespaces{{Type: configs.NEWPID}, {Type: configs.NEWNS}},
			},
		},
		CgroupPaths: map[string]string{
			"memory": "/sys/fs/cgroup/memory/corral/web",
			"pids":   "/sys/fs/cgroup/pids/corral/web",
			"":       "/sys/fs/cgroup/unified/corral/web",
		},
	}
	return st
}

func TestCheckState(t *testing.T) {
	rec := &record{Name: "web", CgroupPath: "/corral/web"}
	for _, tc := range []struct {
		desc   string
		change func(*libcontainer.State)
		ok     bool
	}{
		{"as libcontainer saves it", func(*libcontainer.State) {}, true},
		{"another sandbox's", func(s *libcontainer.State) { s.ID = "db" }, false},
		{"no cgroup", func(s *libcontainer.State) { s.Config.Cgroups = nil }, false},
		{"another cgroup", func(s *libcontainer.State) { s.Config.Cgroups.Path = "/foreign/web" }, false},
		{"systemd cgroups", func(s *libcontainer.State) { s.Config.Cgroups.Systemd = true }, false},
		{"rootless cgroups", func(s *libcontainer.State) { s.Config.RootlessCgroups = true }, false},
		{"the host's PID namespace", func(s *libcontainer.State) { s.Config.Namespaces = s.Config.Namespaces[1:] }, false},
		{"a joined PID namespace", func(s *libcontainer.State) { s.Config.Namespaces[0].Path = "/proc/1/ns/pid" }, false},
		{"Intel RDT", func(s *libcontainer.State) { s.Config.IntelRdt = &configs.IntelRdt{} }, false},
		{"an Intel RDT path", func(s *libcontainer.State) { s.IntelRdtPath = "/sys/fs/resctrl/x" }, false},
		{"a poststop hook", func(s *libcontainer.State) {
			s.Config.Hooks = configs.Hooks{configs.Poststop: {configs.NewCommandHook(&configs.Command{Path: "/bin/rm"})}}
		}, false},
		{"empty hook lists", func(s *libcontainer.State) { s.Config.Hooks = configs.Hooks{configs.Poststop: nil} }, true},
		{"a foreign cgroup in one hierarchy", func(s *libcontainer.State) { s.CgroupPaths["memory"] = "/sys/fs/cgroup/memory/foreign" }, false},
		{"a cgroup path outside the hierarchies", func(s *libcontainer.State) { s.CgroupPaths["pids"] = "/tmp/x/corral/web" }, false},
		{"a cgroup path escaping by ..", func(s *libcontainer.State) {
			s.CgroupPaths["pids"] = "/sys/fs/cgroup/pids/corral/web/../../foreign"
		}, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			st := goodState()
			tc.change(st)
			err := testTrust().checkState(st, rec)
			if tc.ok && err != nil {
				t.Errorf("checkState = %v, want nil", err)
			}
			if !tc.ok && !errors.Is(err, ErrUntrusted) {
				t.Errorf("checkState = %v, want ErrUntrusted", err)
			}
		})
	}
	if err := testTrust().checkState(goodState(), &record{Name: "web"}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("checkState for a record without a cgroup = %v, want ErrUntrusted", err)
	}
}

const (
	v1InSandbox = "9:name=systemd:/corral/web\n8:pids:/corral/web\n4:memory:/corral/web\n1:cpu:/corral/web\n0::/corral/web\n"
	v1OnHost    = "9:name=systemd:/\n8:pids:/\n4:memory:/user.slice\n1:cpu:/\n0::/\n"
	nsInit      = "Name:\tcorral-init\nState:\tS (sleeping)\nNSpid:\t4242\t1\n"
)

func TestCheckInit(t *testing.T) {
	corralInit := procInit{
		cgroup:  v1InSandbox,
		status:  nsInit,
		cmdline: []string{"/dev/.corral-init", "/bin/sleep", "1000"},
		exe:     "/dev/.corral-init",
	}
	for _, tc := range []struct {
		desc   string
		mode   cgroup.Mode
		change func(*procInit)
		ok     bool
	}{
		{"corral's init", cgroup.Hybrid, func(*procInit) {}, true},
		{"corral's init after an upgrade replaced the binary", cgroup.Hybrid, func(p *procInit) { p.exe += " (deleted)" }, true},
		{"corral's init, memory and pids in one hierarchy", cgroup.Legacy, func(p *procInit) { p.cgroup = "3:memory,pids:/corral/web\n" }, true},
		{"corral's init on cgroup v2", cgroup.Unified, func(p *procInit) { p.cgroup = "0::/corral/web\n" }, true},
		{"libcontainer's init before the exec", cgroup.Hybrid, func(p *procInit) {
			p.status = strings.Replace(p.status, "corral-init", "runc:[2:INIT]", 1)
			p.cmdline, p.exe = []string{"/usr/local/bin/corral", "init"}, "/corral"
		}, true},

		{"a host process", cgroup.Hybrid, func(p *procInit) {
			*p = procInit{cgroup: v1OnHost, status: "Name:\tsleep\nNSpid:\t777\n", cmdline: []string{"sleep", "1000"}, exe: "/usr/bin/sleep"}
		}, false},
		{"the host's init", cgroup.Hybrid, func(p *procInit) { p.cgroup, p.status = v1OnHost, "Name:\tsystemd\nNSpid:\t1\n" }, false},
		{"outside the cgroup", cgroup.Hybrid, func(p *procInit) { p.cgroup = v1OnHost }, false},
		{"in another sandbox's cgroup", cgroup.Hybrid, func(p *procInit) { p.cgroup = strings.ReplaceAll(v1InSandbox, "web", "db") }, false},
		{"in the cgroup for pids only", cgroup.Hybrid, func(p *procInit) {
			p.cgroup = strings.Replace(v1InSandbox, "4:memory:/corral/web", "4:memory:/", 1)
		}, false},
		{"in a child of the cgroup", cgroup.Hybrid, func(p *procInit) { p.cgroup = strings.ReplaceAll(v1InSandbox, "/corral/web", "/corral/web/x") }, false},
		{"no memory hierarchy line", cgroup.Hybrid, func(p *procInit) { p.cgroup = "8:pids:/corral/web\n0::/corral/web\n" }, false},
		{"v1 lines only on cgroup v2", cgroup.Unified, func(p *procInit) { p.cgroup = "8:pids:/corral/web\n4:memory:/corral/web\n" }, false},
		{"not in a PID namespace of its own", cgroup.Hybrid, func(p *procInit) { p.status = "Name:\tcorral-init\nNSpid:\t4242\n" }, false},
		{"not the namespace's init", cgroup.Hybrid, func(p *procInit) { p.status = "Name:\tcorral-init\nNSpid:\t4242\t7\n" }, false},
		{"no NSpid line", cgroup.Hybrid, func(p *procInit) { p.status = "Name:\tcorral-init\n" }, false},
		{"another command in the sandbox", cgroup.Hybrid, func(p *procInit) {
			p.cmdline, p.exe = []string{"/bin/sleep", "1000"}, "/usr/bin/sleep"
		}, false},
		{"named as corral's init, another binary", cgroup.Hybrid, func(p *procInit) { p.exe = "/usr/bin/sleep" }, false},
		{"corral's init binary, another argv[0]", cgroup.Hybrid, func(p *procInit) { p.cmdline[0] = "sleep" }, false},
		{"an init argument, not libcontainer's init", cgroup.Hybrid, func(p *procInit) { p.cmdline = []string{"/sbin/foo", "init"} }, false},
		{"no command line (a kernel thread)", cgroup.Hybrid, func(p *procInit) { p.cmdline = nil }, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := corralInit
			p.cmdline = slices.Clone(p.cmdline)
			tc.change(&p)
			tr := testTrust()
			tr.mode = tc.mode
			err := tr.checkInit(p, "/corral/web")
			if tc.ok && err != nil {
				t.Errorf("checkInit(%+v) = %v, want nil", p, err)
			}
			if !tc.ok && !errors.Is(err, ErrUntrusted) {
				t.Errorf("checkInit(%+v) = %v, want ErrUntrusted", p, err)
			}
		})
	}
}

// TestCheckProcessOfAHostProcess: a live process outside any sandbox is
// refused; one whose start time is not the recorded one is taken as gone.
func TestCheckProcessOfAHostProcess(t *testing.T) {
	cmd := exec.Command("sleep", "100")
	if err := cmd.Start(); err != nil {
		t.Fatal("cannot run sleep:", err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	start, err := processStartTime(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	host, err := cgroup.Detect()
	if err != nil {
		t.Fatal("no cgroups:", err)
	}
	tr := &trust{parents: []string{"/corral"}, roots: host.Roots, mode: host.Mode}
	if err := tr.checkProcess(cmd.Process.Pid, start, "/corral/web"); !errors.Is(err, ErrUntrusted) {
		t.Errorf("checkProcess(sleep) = %v, want ErrUntrusted", err)
	}
	if err := tr.checkProcess(cmd.Process.Pid, start+1, "/corral/web"); !errors.Is(err, errInitGone) {
		t.Errorf("checkProcess(sleep, another start time) = %v, want errInitGone", err)
	}
}

func testManager(t *testing.T, trusted ...string) (*Manager, *bytes.Buffer) {
	t.Helper()
	var buf bytes.Buffer
	log := logrus.New()
	log.SetOutput(&buf)
	root := t.TempDir()
	h := &cgroup.Host{Mode: cgroup.Hybrid, Mounts: map[string]string{"pids": root, "memory": root}, Roots: []string{root}}
	m := &Manager{stateDir: t.TempDir(), cgroups: h, log: log, parents: map[string]int{}, trusted: trusted}
	for _, d := range []string{m.recordsDir(), m.rootsDir(), m.containersDir()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	return m, &buf
}

func TestRecordedParents(t *testing.T) {
	m, _ := testManager(t, "/configured")
	tr, err := m.loadTrust()
	if err != nil || !slices.Equal(tr.parents, []string{"/configured"}) {
		t.Fatalf("before any record: parents %q, %v; want only the configured one", tr.parents, err)
	}
	for _, p := range []string{"/corral", "/a/b", "/corral"} {
		if err := m.recordParent(p); err != nil {
			t.Fatalf("recordParent(%s): %v", p, err)
		}
	}
	for _, bad := range []string{"/", "relative", "/system.slice"} {
		if err := m.recordParent(bad); err == nil {
			t.Errorf("recordParent(%q): no error", bad)
		}
	}
	if got, err := m.recordedParents(); err != nil || !slices.Equal(got, []string{"/corral", "/a/b"}) {
		t.Errorf("recordedParents = %q, %v; want /corral and /a/b once each", got, err)
	}
	fi, err := os.Stat(m.parentsPath())
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("parents file: %v, %v; want mode 0600", fi, err)
	}
	// A parent corral refuses to make sandboxes under is never trusted,
	// whoever wrote it there.
	data := `{"cgroup_parents": ["/corral", "/", "/system.slice", "/init.scope/x", "/a/../b"]}`
	if err := os.WriteFile(m.parentsPath(), []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	if tr, err := m.loadTrust(); err != nil || !slices.Equal(tr.parents, []string{"/corral", "/configured"}) {
		t.Errorf("loadTrust of %s: %q, %v; want /corral and /configured", data, tr.parents, err)
	}
	if err := os.WriteFile(m.parentsPath(), []byte(`{"cgroup_par`), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := m.loadTrust(); err == nil || !strings.Contains(err.Error(), m.parentsPath()) {
		t.Errorf("loadTrust of a torn file = %v, want an error naming it", err)
	}
}

func TestReadState(t *testing.T) {
	m, _ := testManager(t)
	st := goodState()
	st.Config.Hooks = configs.Hooks{configs.Poststop: {configs.NewCommandHook(&configs.Command{Path: "/bin/rm", Args: []string{"rm", "-rf", "/"}})}}
	data, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	write := func(dir string) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "state.json"), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(m.containersDir(), "web"))
	got, err := m.readState("web")
	if err != nil {
		t.Fatalf("readState: %v", err)
	}
	// What a forged state would have libcontainer run is seen, and refused.
	if err := testTrust().checkState(got, &record{Name: "web", CgroupPath: "/corral/web"}); !errors.Is(err, ErrUntrusted) {
		t.Errorf("checkState of a state with hooks = %v, want ErrUntrusted", err)
	}
	if _, err := m.readState("missing"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("readState(missing) = %v, want ErrNotExist", err)
	}
	// A symlinked libcontainer dir, a symlinked state file, a FIFO: refused,
	// without following or blocking.
	elsewhere := t.TempDir()
	write(elsewhere)
	if err := os.Symlink(elsewhere, filepath.Join(m.containersDir(), "linked")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(m.containersDir(), "filelink"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(elsewhere, "state.json"), filepath.Join(m.containersDir(), "filelink", "state.json")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(m.containersDir(), "fifo"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(filepath.Join(m.containersDir(), "fifo", "state.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(m.containersDir(), "file"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"linked", "filelink", "fifo", "file"} {
		done := make(chan error, 1)
		go func() {
			_, err := m.readState(name)
			done <- err
		}()
		select {
		case err := <-done:
			if !errors.Is(err, ErrUntrusted) {
				t.Errorf("readState(%s) = %v, want ErrUntrusted", name, err)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("readState(%s) blocked", name)
		}
	}
}

// TestSetAside: the name's entries in the state dir move to the
// quarantine dir, and nothing else does; what the record names is not
// touched; a second set-aside of the name keeps the first.
func TestSetAside(t *testing.T) {
	m, log := testManager(t)
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "precious"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	evil := &record{Name: "evil", CgroupPath: "/foreign/evil", RootDir: foreign}
	mk := func() {
		if err := evil.save(m.recordPath("evil")); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(m.statusPath("evil"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(m.containersDir(), "evil"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(foreign, filepath.Join(m.rootsDir(), "evil")); err != nil {
			t.Fatal(err)
		}
	}
	mk()
	other := &record{Name: "web", CgroupPath: "/corral/web"}
	if err := other.save(m.recordPath("web")); err != nil {
		t.Fatal(err)
	}
	m.setAside("evil", untrusted("test reason"))
	mk()
	m.setAside("evil", untrusted("test reason"))

	assertOnlyFiles(t, m.recordsDir(), "web.json")
	assertOnlyFiles(t, m.containersDir())
	assertOnlyFiles(t, m.rootsDir())
	assertOnlyFiles(t, foreign, "precious")
	entries, err := os.ReadDir(m.quarantineDir())
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]int{}
	for _, e := range entries {
		name, _, _ := strings.Cut(strings.TrimPrefix(e.Name(), "evil."), ".")
		kinds[name]++
	}
	if len(entries) != 8 || kinds["json"] != 2 || kinds["status"] != 2 || kinds["libcontainer"] != 2 || kinds["root"] != 2 {
		t.Errorf("quarantine holds %d entries %v; want the record, status, libcontainer state and root, twice", len(entries), kinds)
	}
	if got := log.String(); strings.Count(got, "level=warning") != 2 || !strings.Contains(got, "test reason") || !strings.Contains(got, "set aside") {
		t.Errorf("log:\n%s\nwant two warnings saying set aside and why", got)
	}
}

// TestSweepLeavesForeignThingsAlone: a leftover record of a dead owner
// naming a foreign cgroup (holding a live process) and a foreign directory
// is set aside; the process lives, the directory and cgroup stay.
func TestSweepLeavesForeignThingsAlone(t *testing.T) {
	m, log := testManager(t, "/corral")
	victim := exec.Command("sleep", "100")
	if err := victim.Start(); err != nil {
		t.Fatal("cannot run sleep:", err)
	}
	t.Cleanup(func() {
		_ = victim.Process.Kill()
		_ = victim.Wait()
	})
	// A fake cgroup tree: Procs reads cgroup.procs there.
	root := m.cgroups.Roots[0]
	for _, cg := range []string{"foreign/evil", "corral/web"} {
		if err := os.MkdirAll(filepath.Join(root, cg), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, cg, "cgroup.procs"), []byte(strconv.Itoa(victim.Process.Pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "precious"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, rec := range []*record{
		{Name: "evil", CgroupPath: "/foreign/evil", CreatedCgroups: []string{"/foreign"}, RootDir: foreign, OwnerPID: 1 << 30},
		{Name: "evil2", CgroupPath: "/corral/evil2", RootDir: filepath.Join(m.rootsDir(), "..", "..", filepath.Base(foreign)), OwnerPID: 1 << 30},
		// A record of another name than its file's, naming a sandbox
		// cgroup of the state dir's.
		{Name: "web", CgroupPath: "/corral/web", OwnerPID: 1 << 30},
	} {
		file := rec.Name
		if file == "web" {
			file = "evil3"
		}
		if err := rec.save(m.recordPath(file)); err != nil {
			t.Fatal(err)
		}
	}
	if err := m.Sweep(); err != nil {
		t.Fatalf("Sweep: %v", err)
	}
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the foreign process is gone: %v", err)
	}
	assertOnlyFiles(t, foreign, "precious")
	assertOnlyFiles(t, m.recordsDir())
	for _, cg := range []string{"foreign", "foreign/evil", "corral/web"} {
		if _, err := os.Stat(filepath.Join(root, cg)); err != nil {
			t.Errorf("cgroup %s: %v", cg, err)
		}
	}
	if n := strings.Count(log.String(), "set aside"); n != 3 {
		t.Errorf("%d set-aside warnings, want 3; log:\n%s", n, log.String())
	}
}
