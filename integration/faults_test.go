package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/api"
)

// The tests here break the host under a running corral: a full disk, a
// read-only state dir, cgroups removed by someone else.

// patience is how long a step may take: generous, for a loaded machine.
const patience = 30 * time.Second

func TestLogDirFullKeepsServiceRunning(t *testing.T) {
	d := newDaemon(t, `
  talker:
    command: ["/bin/sh", "-c", "pad=$(printf %0500d 0); i=0; while :; do i=$((i+1)); echo line $i $pad; sleep 0.02; done"]
    restart: {policy: on-failure}
`)
	// Lines of half a KiB: once the file system is full, the room left in
	// the last page of output.log takes only a few of them.
	//
	// Mounted before the daemon starts, so it is unmounted after the
	// daemon stopped (cleanups run last registered first).
	mountTmpfs(t, d.logDir, "size=4m,mode=0755")
	d.start()
	first := awaitRunning(d, "talker")
	output := filepath.Join(d.logDir, "talker", "output.log")
	waitLog(t, output, "the first lines", func(l logLines) bool { return l.last >= 5 })

	filler := filepath.Join(d.logDir, "filler")
	fill(t, filler)
	// The same sandbox goes on: only its log suffers.
	same := func(st *api.ServiceDetail) {
		t.Helper()
		if st.State != "running" || st.PID != first.PID || st.Restarts != 0 || len(st.Exits) != 0 {
			t.Fatalf("with the log dir full: %s pid %d, %d restarts, exits %+v; want running pid %d as before; daemon log:\n%s",
				st.State, st.PID, st.Restarts, st.Exits, first.PID, d.log())
		}
	}
	st := d.waitFor("talker", patience, "reporting lost log lines", func(st *api.ServiceDetail) bool {
		same(st)
		return st.LogError == "no space left on device" && st.LogLinesLost > 0
	})
	t.Logf("disk full: %d lines lost so far, log error %q", st.LogLinesLost, st.LogError)
	// The init's short drop notes may still fit where a line did not, so
	// the error can clear for a moment between two reads: the text
	// `status` prints must show it while it holds.
	var r result
	for deadline := time.Now().Add(patience); ; time.Sleep(20 * time.Millisecond) {
		if r = d.ctl("status", "talker"); r.code != 0 {
			t.Fatalf("corral status: %s", r)
		}
		if strings.Contains(r.stdout, "log loss:") && strings.Contains(r.stdout, "no space left on device") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("corral status while the disk is full: want the log loss and \"no space left on device\" within %s; last got:\n%s", patience, r.stdout)
		}
	}
	// Lines keep coming, and being dropped, for a while: the command is
	// neither blocked on its output nor disturbed.
	for until := time.Now().Add(time.Second); time.Now().Before(until); time.Sleep(50 * time.Millisecond) {
		same(d.status("talker"))
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	d.waitFor("talker", patience, "logging again", func(st *api.ServiceDetail) bool {
		same(st)
		return st.LogError == ""
	})
	// Once writing works, the note comes first, then the lines after it.
	l := waitLog(t, output, "the drop note and lines after it", func(l logLines) bool { return l.note && l.lastAfterNote > 0 })
	st = d.status("talker")
	same(st)
	t.Logf("after the disk was freed: %d lines lost in all; notes %v; %d line numbers missing in output.log",
		st.LogLinesLost, l.dropped, l.missing)
	var noted uint64
	for _, n := range l.dropped {
		noted += n
	}
	if st.LogLinesLost == 0 || st.LogError != "" || noted != st.LogLinesLost || l.missing != st.LogLinesLost {
		t.Errorf("lines lost: status says %d (error %q), the notes in output.log say %d, %d line numbers are missing; want all equal and not 0",
			st.LogLinesLost, st.LogError, noted, l.missing)
	}
	r = d.ctl("status", "talker")
	if r.code != 0 {
		t.Fatalf("corral status: %s", r)
	}
	wantContains(t, "corral status after the disk was freed", r.stdout, "log loss:")
	if strings.Contains(r.stdout, "no space left on device") {
		t.Errorf("corral status still says writing fails after the disk was freed:\n%s", r.stdout)
	}
	d.stop()
}

func TestStateDirNotWritableIsAClearError(t *testing.T) {
	dir, err := os.MkdirTemp(workDir, "ro-state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(dir) })
	mountTmpfs(t, dir, "size=64k,mode=0700")
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
	d := newDaemon(t, `
  s:
    command: ["/bin/sleep", "1000"]
`)
	for _, c := range []struct {
		what string
		args []string
	}{
		{"daemon", []string{"--state-dir", dir, "daemon", "--config", d.config}},
		{"run", []string{"--state-dir", dir, "run", "--cgroup-parent", cgroupParent, "--", "/bin/true"}},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		began := time.Now()
		r := finish(t, exec.CommandContext(ctx, corralBin, c.args...))
		took := time.Since(began)
		timedOut := ctx.Err() != nil
		cancel()
		t.Logf("corral %s on a read-only state dir: exit %d after %s; stderr: %s", c.what, r.code, took.Round(time.Millisecond), strings.TrimSpace(r.stderr))
		if timedOut {
			t.Errorf("corral %s on a read-only state dir still ran after 10s; want a quick refusal; %s", c.what, r)
			continue
		}
		if r.code == 0 {
			t.Errorf("corral %s on a read-only state dir: want a non-zero exit; got %s", c.what, r)
			continue
		}
		wantContains(t, "corral "+c.what+" stderr", r.stderr, dir)
		wantContains(t, "corral "+c.what+" stderr", r.stderr, "read-only file system")
	}
}

// victimService is the service whose cgroup the tests remove: a shell
// with a child of its own, restarted quickly.
const victimService = `
  victim:
    command: ["/bin/sh", "-c", "/bin/sleep 1000 & exec /bin/sleep 1000"]
    restart: {policy: always, backoff: {initial: 100ms, jitter: 0}}
`

func TestCgroupRemovedBehindCorralsBack(t *testing.T) {
	d := newDaemon(t, victimService).start()
	first := awaitRunning(d, "victim")
	pids, had := removeCgroup(t, d, "victim")
	// The sandbox runs on outside any cgroup of its own; the daemon still
	// answers, about it too.
	if st := d.status("victim"); st.State != "running" || st.PID != first.PID {
		t.Errorf("with its cgroup gone: %s pid %d; want still running pid %d", st.State, st.PID, first.PID)
	}
	if r := d.ctl("ps"); r.code != 0 || !strings.Contains(r.stdout, "victim") {
		t.Errorf("corral ps with the sandbox's cgroup gone: %s", r)
	}
	kill(t, pids)
	next := d.waitFor("victim", patience, "running in a new sandbox", func(st *api.ServiceDetail) bool {
		return st.State == "running" && st.PID != 0 && st.PID != first.PID
	})
	checkReplaced(t, d, "victim", next, had)
	d.stop()
}

func TestCgroupRemovedBehindCorralsBackWhileDaemonDown(t *testing.T) {
	d := newDaemon(t, victimService).start()
	first := awaitRunning(d, "victim")
	d.kill9()
	pids, had := removeCgroup(t, d, "victim")
	kill(t, pids)
	d.restart()
	next := d.waitFor("victim", patience, "running in a new sandbox", func(st *api.ServiceDetail) bool {
		return st.State == "running" && st.PID != 0 && st.PID != first.PID
	})
	checkReplaced(t, d, "victim", next, had)
	d.stop()
}

// removeCgroup removes a service's sandbox cgroup in every hierarchy
// while the sandbox runs, as `cgdelete -r` would: the processes move out
// (to the hierarchy's root), then the cgroup goes. It returns the
// processes moved and the hierarchies that held the cgroup.
//
// (Killing the processes first and removing the cgroup after never gets
// ahead of the daemon: it has removed the cgroup by the time the last
// process is gone.)
func removeCgroup(t *testing.T, d *daemonProc, name string) (pids []int, had []string) {
	t.Helper()
	moved := map[int]string{} // PID: its start time
	// Outside the sandbox's cgroup, nothing else would ever stop them.
	t.Cleanup(func() {
		for p, started := range moved {
			if started != "" && procStart(p) == started {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
		}
	})
	for _, root := range host.Roots {
		dir := filepath.Join(root, d.cgroup, name)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		had = append(had, root)
		// Until none is left: a process may fork while others move.
		for deadline := time.Now().Add(patience); ; {
			left := cgroupProcs(t, dir)
			if len(left) == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("processes %v stay in %s", left, dir)
			}
			for _, p := range left {
				if _, ok := moved[p]; !ok {
					moved[p] = procStart(p)
				}
				err := os.WriteFile(filepath.Join(root, "cgroup.procs"), []byte(fmt.Sprint(p)), 0o644)
				if err != nil && !errors.Is(err, syscall.ESRCH) {
					t.Fatalf("move %d from %s: %v", p, dir, err)
				}
			}
		}
		// Its sub-cgroups, if any, go first.
		var dirs []string
		_ = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
			if err == nil && e.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, unix.ENOENT) {
				t.Fatalf("rmdir %s: %v", dirs[i], err)
			}
		}
		if _, err := os.Stat(dir); err == nil {
			t.Fatalf("%s still exists after rmdir", dir)
		}
	}
	for p := range moved {
		pids = append(pids, p)
	}
	if len(had) == 0 || len(pids) == 0 {
		t.Fatalf("service %s: cgroup in %v, processes %v; want a running sandbox", name, had, pids)
	}
	t.Logf("moved %d processes of %s out and removed its cgroup in %d hierarchies", len(pids), name, len(had))
	return pids, had
}

// kill kills pids with SIGKILL and waits until they are gone (zombies
// count as gone: their parent reaps them, maybe not at once).
func kill(t *testing.T, pids []int) {
	t.Helper()
	for _, p := range pids {
		if err := syscall.Kill(p, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			t.Fatalf("kill %d: %v", p, err)
		}
	}
	deadline := time.Now().Add(patience)
	for _, p := range pids {
		for !gone(p) {
			if time.Now().After(deadline) {
				t.Fatalf("process %d still there %s after SIGKILL", p, patience)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// gone reports whether a process has ended (it may be a zombie).
func gone(pid int) bool {
	f := procStat(pid)
	return len(f) == 0 || f[0] == "Z"
}

// procStart is a process's start time, which tells it from a later one
// with the same PID ("" if it is gone).
func procStart(pid int) string {
	if f := procStat(pid); len(f) > 19 {
		return f[19]
	}
	return ""
}

// procStat is the fields of /proc/PID/stat after the command's name,
// from the state on.
func procStat(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil
	}
	return strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
}

// checkReplaced checks that after its sandbox was destroyed behind the
// daemon's back, the end was reported as what it was, the service runs in
// a whole new sandbox, and the daemon still answers.
func checkReplaced(t *testing.T, d *daemonProc, name string, next *api.ServiceDetail, had []string) {
	t.Helper()
	if len(next.Exits) != 1 || next.Restarts != 1 {
		t.Errorf("service %s running again with %d restarts and exits %+v; want the one end of the sandbox reported", name, next.Restarts, next.Exits)
	} else if e := next.Exits[0]; e.Signal != int(syscall.SIGKILL) || !strings.Contains(e.Reason, "killed by signal 9 (SIGKILL)") {
		t.Errorf("service %s: end reported as signal %d, reason %q; want the SIGKILL it was; daemon log:\n%s", name, e.Signal, e.Reason, d.log())
	}
	// The new sandbox has its own cgroup again, everywhere the old one was,
	// and its init lives in it.
	for _, root := range had {
		if _, err := os.Stat(filepath.Join(root, d.cgroup, name)); err != nil {
			t.Errorf("the new sandbox has no cgroup in %s: %v", root, err)
		}
	}
	if inits := d.sandboxInits()[name]; len(inits) != 1 {
		t.Errorf("service %s: sandbox inits %v in its cgroup; want exactly one; daemon log:\n%s", name, inits, d.log())
	}
	r := d.ctl("ps")
	if r.code != 0 || !strings.Contains(r.stdout, name) {
		t.Fatalf("corral ps after the cgroup was removed: %s\ndaemon log:\n%s", r, d.log())
	}
	t.Logf("corral ps:\n%s", r.stdout)
}

// awaitRunning waits until a service runs, with the patience of this file.
func awaitRunning(d *daemonProc, name string) *api.ServiceDetail {
	d.t.Helper()
	return d.waitFor(name, patience, "running", func(st *api.ServiceDetail) bool { return st.State == "running" && st.PID != 0 })
}

// mountTmpfs mounts a tmpfs on dir (made if missing) and unmounts it when
// the test ends.
func mountTmpfs(t *testing.T, dir, options string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, options); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v (detached instead)", dir, err)
			_ = unix.Unmount(dir, unix.MNT_DETACH)
		}
	})
}

// fill writes path until its file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for written := 0; ; written += len(buf) {
		if _, err := f.Write(buf); errors.Is(err, syscall.ENOSPC) {
			return
		} else if err != nil {
			t.Fatalf("fill %s: %v", path, err)
		}
		if written > 64<<20 {
			t.Fatalf("fill %s: not full after 64MiB", path)
		}
	}
}

// logLines is what a log file of the numbered lines ("line N") holds.
type logLines struct {
	last          int      // the highest line number
	lastAfterNote int      // the highest line number after the last drop note
	note          bool     // a "log lines dropped" note was seen
	dropped       []uint64 // the count of each note
	missing       uint64   // numbers in 1..last that are not there
}

var (
	numberedLine = regexp.MustCompile(`^line ([0-9]+) 0{500}$`)
	dropNote     = regexp.MustCompile(`^corral-init: ([0-9]+) log lines dropped \(No space left on device\)$`)
)

// readLog reads the whole records of a log file of numbered lines.
func readLog(t *testing.T, path string) logLines {
	t.Helper()
	var l logLines
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l
	} else if err != nil {
		t.Fatal(err)
	}
	// The init may be writing the last record right now.
	whole := string(data[:bytes.LastIndexByte(data, '\n')+1])
	seen := map[int]bool{}
	for _, rec := range strings.Split(strings.TrimSuffix(whole, "\n"), "\n") {
		if rec == "" {
			continue
		}
		fields := strings.SplitN(rec, " ", 3)
		if len(fields) != 3 {
			t.Fatalf("%s: malformed record %q", path, rec)
		}
		if _, err := time.Parse(time.RFC3339Nano, fields[0]); err != nil {
			t.Fatalf("%s: record without a timestamp: %q", path, rec)
		}
		if m := numberedLine.FindStringSubmatch(fields[2]); fields[1] == "stdout" && m != nil {
			n, _ := strconv.Atoi(m[1])
			seen[n] = true
			l.last = max(l.last, n)
			if l.note {
				l.lastAfterNote = max(l.lastAfterNote, n)
			}
		} else if m := dropNote.FindStringSubmatch(fields[2]); fields[1] == "stderr" && m != nil {
			n, _ := strconv.ParseUint(m[1], 10, 64)
			l.note, l.lastAfterNote = true, 0
			l.dropped = append(l.dropped, n)
		} else {
			t.Fatalf("%s: unexpected record %q", path, rec)
		}
	}
	for i := 1; i <= l.last; i++ {
		if !seen[i] {
			l.missing++
		}
	}
	return l
}

// waitLog polls a log file until ok says so.
func waitLog(t *testing.T, path, what string, ok func(logLines) bool) logLines {
	t.Helper()
	deadline := time.Now().Add(patience)
	for {
		l := readLog(t, path)
		if ok(l) {
			return l
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(path)
			t.Fatalf("%s: no %s after %s: %+v; tail:\n%s", path, what, patience, l, tail(string(data), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
