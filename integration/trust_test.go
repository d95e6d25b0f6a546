package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

// The records in a state dir never make corral act outside its own
// sandboxes: a record naming a host process, a foreign cgroup or a
// directory outside the state dir is set aside (moved to
// <state>/quarantine) with a warning saying why, and what it names is
// neither adopted, shown, signalled, killed nor removed.

// TestAdoptionRefusesAForeignInit: with the daemon dead, libcontainer's
// state of a sandbox is rewritten to name a host process outside any
// sandbox, with its real start time (so that libcontainer's own check
// passes). The next daemon sets the sandbox's records aside, never shows
// or touches that process, not even at its clean stop, and runs the
// service afresh once its cgroup is free.
func TestAdoptionRefusesAForeignInit(t *testing.T) {
	d := newDaemon(t, `
  idle:
    command: ["/bin/sleep", "1000"]
    restart: {policy: always, backoff: {initial: 100ms, max: 200ms, jitter: 0}, crash_loop: {failures: 100000}}
`).start()
	old := d.waitRunning("idle").PID
	// Nothing removes the cgroups the old sandbox made once its record is
	// set aside: the test does.
	t.Cleanup(func() { removeEmptyCgroup(cgroupParent) })
	foreign := startForeign(t, "")
	d.kill9()

	statePath := filepath.Join(d.stateDir, "libcontainer", "idle", "state.json")
	rewriteJSON(t, statePath, func(st map[string]any) {
		st["init_process_pid"] = json.Number(strconv.Itoa(foreign))
		st["init_process_start"] = json.Number(procStart(foreign))
	})
	d.restart()
	d.waitDaemonLog("set aside")
	if !alive(foreign) {
		t.Fatalf("the foreign process %d died when the daemon started; log:\n%s", foreign, d.log())
	}
	log := d.log()
	for _, want := range []string{"sandbox=idle", fmt.Sprintf("init %d: ", foreign), "is in cgroup"} {
		if !strings.Contains(log, want) {
			t.Errorf("daemon log lacks %q:\n%s", want, log)
		}
	}
	if st := d.status("idle"); st.PID == foreign {
		t.Errorf("the daemon took the foreign process %d for the service's: %+v", foreign, st)
	}
	assertNotInPs(t, d, foreign)
	if got := quarantined(t, d.stateDir, "idle"); !slices.Contains(got, "json") || !slices.Contains(got, "libcontainer") {
		t.Errorf("quarantine holds %q of idle; want its record and libcontainer state", got)
	}
	// The sandbox the record was of is not the daemon's any more, nor
	// killed: its processes hold the cgroup, and the daemon cannot start
	// the service there until they are gone.
	if !alive(old) {
		t.Errorf("the sandbox init %d of the set-aside record was killed", old)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st := d.waitFor("idle", patience, "running in a new sandbox", func(st *api.ServiceDetail) bool {
		return st.State == "running" && st.PID != 0 && st.PID != old && st.PID != foreign
	})
	assertNotInPs(t, d, foreign)
	d.stop()
	if !alive(foreign) {
		t.Fatalf("the foreign process %d died at the daemon's stop; log:\n%s", foreign, d.log())
	}
	if alive(st.PID) {
		t.Errorf("the new sandbox's init %d outlived the daemon's stop", st.PID)
	}
}

// TestLeftoverRecordNamingForeignThingsIsSetAside: a record of a dead
// owner names a foreign cgroup (holding a process) as its cgroup and as
// one it made, and a foreign directory as its root. Neither `corral run`
// (attached: its sweep) nor the daemon (detached: its adoption) kills the
// process or removes the cgroup or the directory; each sets the record
// aside.
func TestLeftoverRecordNamingForeignThingsIsSetAside(t *testing.T) {
	foreignCgroup := fmt.Sprintf("/corral-itest-foreign-%d", os.Getpid())
	cgDir := filepath.Join(host.Mounts["pids"], foreignCgroup)
	if err := os.Mkdir(cgDir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeCgroupDir(t, cgDir) })
	foreign := startForeign(t, cgDir)
	foreignDir := t.TempDir()
	precious := filepath.Join(foreignDir, "precious")
	if err := os.WriteFile(precious, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	d := newDaemon(t, `
  idle:
    command: ["/bin/sleep", "1000"]
`)
	evil := func(detached bool) {
		writeRecord(t, d.stateDir, "evil", map[string]any{
			"name":            "evil",
			"cgroup_path":     foreignCgroup,
			"created_cgroups": []string{foreignCgroup},
			"root_dir":        foreignDir,
			"owner_pid":       deadPID(t),
			"owner_start":     1,
			"created":         time.Now().UTC(),
			"detached":        detached,
		})
	}
	untouched := func(who string) {
		t.Helper()
		if !alive(foreign) {
			t.Fatalf("after %s: the foreign process %d in %s is gone", who, foreign, foreignCgroup)
		}
		if _, err := os.Stat(cgDir); err != nil {
			t.Errorf("after %s: the foreign cgroup: %v", who, err)
		}
		if data, err := os.ReadFile(precious); err != nil || string(data) != "keep me\n" {
			t.Errorf("after %s: the foreign directory's file: %q, %v", who, data, err)
		}
		if _, err := os.Stat(filepath.Join(d.stateDir, "sandboxes", "evil.json")); !os.IsNotExist(err) {
			t.Errorf("after %s: the record is still in the state dir (%v)", who, err)
		}
	}

	evil(false)
	r := corralOn(t, d.stateDir, "run", "--cgroup-parent", cgroupParent, "--", "/bin/true")
	if r.code != 0 {
		t.Fatalf("corral run: %s", r)
	}
	untouched("corral run")
	if !strings.Contains(r.stderr, "set aside") || !strings.Contains(r.stderr, "sandbox=evil") || !strings.Contains(r.stderr, "reason=") {
		t.Errorf("corral run does not say it set the record aside and why: %s", r)
	}

	evil(true)
	d.start()
	d.waitDaemonLog("set aside")
	untouched("the daemon's start")
	d.waitRunning("idle")
	d.stop()
	untouched("the daemon's stop")
	if n := len(quarantined(t, d.stateDir, "evil")); n != 2 {
		t.Errorf("quarantine holds %d entries of evil, want its two records", n)
	}
}

// TestLeftoverRecordRootOutsideTheStateDirIsRefused: a record's root must
// be exactly <state>/roots/NAME; one reaching out of the state dir by ..
// or through a symlink is set aside, and a symlink in place of a root is
// removed, never what it points to.
func TestLeftoverRecordRootOutsideTheStateDirIsRefused(t *testing.T) {
	dir, err := os.MkdirTemp(workDir, "trust-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// A sandbox's root, in its user namespace, passes through it to the
	// built-in root in the state dir.
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	foreign := filepath.Join(dir, "foreign")
	if err := os.MkdirAll(foreign, 0o755); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(foreign, "precious")
	if err := os.WriteFile(precious, []byte("keep me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(state, "roots"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dir, filepath.Join(state, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(foreign, filepath.Join(state, "roots", "inroots")); err != nil {
		t.Fatal(err)
	}
	for name, root := range map[string]string{
		"dotdot":  state + "/roots/../../foreign",
		"linked":  state + "/link/foreign",
		"inroots": state + "/roots/inroots", // its own place, a symlink there
	} {
		writeRecord(t, state, name, map[string]any{
			"name":        name,
			"cgroup_path": cgroupParent + "/" + name,
			"root_dir":    root,
			"owner_pid":   deadPID(t),
			"owner_start": 1,
			"created":     time.Now().UTC(),
		})
	}
	r := corralOn(t, state, "run", "--cgroup-parent", cgroupParent, "--", "/bin/true")
	if r.code != 0 {
		t.Fatalf("corral run: %s", r)
	}
	if data, err := os.ReadFile(precious); err != nil || string(data) != "keep me\n" {
		t.Fatalf("the foreign directory's file: %q, %v; corral run:\n%s", data, err, r)
	}
	for _, name := range []string{"dotdot", "linked"} {
		if got := quarantined(t, state, name); !slices.Equal(got, []string{"json"}) {
			t.Errorf("%s: quarantine holds %q, want its record", name, got)
		}
		if !strings.Contains(r.stderr, "sandbox="+name) {
			t.Errorf("corral run does not report %s: %s", name, r)
		}
	}
	// A symlink in its own place is the sandbox's: removed, as a link.
	if got := quarantined(t, state, "inroots"); len(got) != 0 {
		t.Errorf("inroots set aside: %q", got)
	}
	if _, err := os.Lstat(filepath.Join(state, "roots", "inroots")); !os.IsNotExist(err) {
		t.Errorf("the symlink in place of a root is left: %v", err)
	}
	entries, _ := os.ReadDir(filepath.Join(state, "sandboxes"))
	for _, e := range entries {
		t.Errorf("state dir still holds sandboxes/%s", e.Name())
	}
}

// startForeign starts `sleep 1000` outside any sandbox, in the cgroup dir
// cgDir if given, and kills it when the test ends.
func startForeign(t *testing.T, cgDir string) int {
	t.Helper()
	cmd := exec.Command("/bin/sleep", "1000")
	if cgDir != "" {
		cmd = exec.Command("/bin/sh", "-c", `echo $$ > "$0/cgroup.procs" && exec /bin/sleep 1000`, cgDir)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	// Wait until it is sleep, in its cgroup.
	for deadline := time.Now().Add(patience); ; {
		exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid))
		if strings.HasSuffix(exe, "sleep") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the foreign process is %s, not sleep", exe)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd.Process.Pid
}

// removeCgroupDir removes a cgroup the test made, once the processes the
// test put there are gone.
func removeCgroupDir(t *testing.T, dir string) {
	for deadline := time.Now().Add(patience); ; {
		err := os.Remove(dir)
		if err == nil || os.IsNotExist(err) {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("remove cgroup %s: %v", dir, err)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// removeEmptyCgroup removes the cgroup at path from every hierarchy where
// it is empty.
func removeEmptyCgroup(path string) {
	for _, root := range host.Roots {
		_ = os.Remove(filepath.Join(root, path))
	}
}

// deadPID is the PID of a process that has ended.
func deadPID(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("/bin/true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

// writeRecord writes a sandbox record by hand into stateDir.
func writeRecord(t *testing.T, stateDir, name string, rec map[string]any) {
	t.Helper()
	dir := filepath.Join(stateDir, "sandboxes")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".json"), data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// rewriteJSON changes a JSON object file in place, numbers kept exact.
func rewriteJSON(t *testing.T, path string, change func(map[string]any)) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v map[string]any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	change(v)
	if data, err = json.Marshal(v); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// quarantined lists the kinds (json, status, libcontainer, root) of the
// entries of name set aside in stateDir's quarantine.
func quarantined(t *testing.T, stateDir, name string) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(stateDir, "quarantine"))
	var kinds []string
	for _, e := range entries {
		if rest, ok := strings.CutPrefix(e.Name(), name+"."); ok {
			kind, _, _ := strings.Cut(rest, ".")
			kinds = append(kinds, kind)
		}
	}
	slices.Sort(kinds)
	return kinds
}

// assertNotInPs checks that `corral ps` shows no process pid.
func assertNotInPs(t *testing.T, d *daemonProc, pid int) {
	t.Helper()
	r := d.ctl("ps")
	if r.code != 0 {
		t.Fatalf("corral ps: %s", r)
	}
	if slices.Contains(strings.Fields(r.stdout), strconv.Itoa(pid)) {
		t.Errorf("corral ps shows the foreign process %d:\n%s", pid, r.stdout)
	}
}

// corralOn runs corral with state dir stateDir to completion.
func corralOn(t *testing.T, stateDir string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return finish(t, exec.CommandContext(ctx, corralBin, append([]string{"--state-dir", stateDir}, args...)...))
}

// waitDaemonLog waits until the daemon's log holds text.
func (d *daemonProc) waitDaemonLog(text string) {
	d.t.Helper()
	for deadline := time.Now().Add(patience); !strings.Contains(d.log(), text); {
		if time.Now().After(deadline) {
			d.t.Fatalf("daemon never logged %q; log:\n%s", text, d.log())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
