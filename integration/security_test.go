package integration

import (
	"crypto/sha256"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

// The hostile services of these tests attack the daemon's own surface
// (issue 11): what a sandbox can write, name or race must never make the
// daemon, which runs as root, act on the host.

// hostileNotifier plants a file beside its notify socket, keeps trying to
// swap the socket for a symlink to target (a host file the daemon would
// chmod when it makes the socket again), claims MAINPID=1 (ignored), and
// sends READY=1 only once /shared/go
// exists, then writes /shared/sent.
func hostileNotifier(target string) string {
	script := `import os,socket,time
sock=os.environ['NOTIFY_SOCKET']
d=os.path.dirname(sock)
try:
    open(os.path.join(d,'planted'),'w').write('x'*4096)
    print('planted a file', flush=True)
except Exception as e:
    print('plant refused:', e, flush=True)
s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM)
s.sendto(b'MAINPID=1',sock)
print('swapping', flush=True)
while not os.path.exists('/shared/go'):
    for p in (sock, sock+'.tmp'):
        try:
            os.unlink(p)
        except Exception:
            pass
        try:
            os.symlink('` + target + `', p)
        except Exception:
            pass
    try:
        os.rename(sock+'.tmp', sock)
    except Exception:
        pass
    time.sleep(0.001)
s.sendto(b'READY=1\nSTATUS=ready at last',sock)
open('/shared/sent','w').close()
time.sleep(1000)
`
	return fmt.Sprintf("%q", script)
}

// TestNotifySocketCannotReachTheHost: finding 1. The sandbox gets the
// socket only (nothing it writes lands in the state dir, and it cannot
// swap the socket for a symlink the daemon would chmod through, over
// several daemon restarts); senders outside the sandbox are ignored;
// MAINPID is ignored; an adopted service that
// has not said it is ready stays starting, and a READY=1 sent while no
// daemon runs (after a clean hand-over) is read by the next one.
func TestNotifySocketCannotReachTheHost(t *testing.T) {
	shared := sharedDir(t)
	target := filepath.Join(workDir, fmt.Sprintf("target-%d", time.Now().UnixNano()))
	if err := os.WriteFile(target, []byte("root's"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(target)
	d := newDaemon(t, `
  hostile:
    command: ["/usr/bin/python3", "-c", `+hostileNotifier(target)+`]
    notify: true
    mounts: ["`+shared+`:/shared:rw"]
`).start()
	d.waitFor("hostile", 10*time.Second, "started", func(st *api.ServiceDetail) bool { return st.PID != 0 })
	d.waitLogged("hostile", "swapping")
	pid := d.status("hostile").PID

	// A sender outside the sandbox (this test, as root) cannot mark it
	// ready or set its status.
	sock := filepath.Join(d.stateDir, "notify", "hostile.sock")
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatalf("dial the notify socket from the host: %v", err)
	}
	if _, err := c.Write([]byte("READY=1\nSTATUS=forged")); err != nil {
		t.Fatal(err)
	}
	c.Close()

	// Daemons killed and restarted while the service races the socket.
	logs := ""
	for i := 0; i < 3; i++ {
		time.Sleep(300 * time.Millisecond)
		logs += d.log()
		d.kill9()
		d.restart()
		st := d.waitFor("hostile", 10*time.Second, "adopted", func(st *api.ServiceDetail) bool { return st.PID != 0 })
		if st.PID != pid {
			t.Fatalf("adoption %d: pid %d, want %d (the sandbox was replaced)", i, st.PID, pid)
		}
		if st.State != "starting" {
			t.Errorf("adoption %d: state %s; the service never said it is ready, want starting", i, st.State)
		}
		if st.NotifyStatus == "forged" {
			t.Errorf("a host process set the service's status")
		}
	}
	if fi, err := os.Stat(target); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("the host file the service pointed its symlink at: %v, %v; want mode 0600", fi.Mode(), err)
	}
	// MAINPID=1 is ignored: the daemon acts only on its own init, and
	// the host's PID 1 is untouched (this test's host survives).
	if !strings.Contains(logs, "from outside the sandbox dropped") {
		t.Errorf("the host's message was not reported as dropped; daemon logs:\n%s", logs)
	}

	// A clean hand-over; READY=1 sent while no daemon runs.
	if err := d.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	<-d.done
	if _, err := os.Stat(sock); err != nil {
		t.Fatalf("the notify socket is gone after the hand-over: %v", err)
	}
	if err := os.WriteFile(filepath.Join(shared, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(filepath.Join(shared, "sent")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the service did not send READY=1 while no daemon ran")
		}
		time.Sleep(10 * time.Millisecond)
	}
	d.restart()
	st := d.waitFor("hostile", 10*time.Second, "ready", func(st *api.ServiceDetail) bool { return st.State == "running" })
	if st.PID != pid || st.NotifyStatus != "ready at last" {
		t.Errorf("after the hand-over: pid %d (want %d), status %q", st.PID, pid, st.NotifyStatus)
	}
	// Nothing the service wrote landed in the state dir.
	_ = filepath.WalkDir(d.stateDir, func(p string, e os.DirEntry, err error) error {
		if err == nil && e.Name() == "planted" {
			t.Errorf("the sandbox wrote %s on the host", p)
		}
		return nil
	})
	d.stop()
	if _, err := os.Lstat(sock); err == nil {
		t.Errorf("the notify socket outlived its sandbox")
	}
}

// TestExecHealthChecksNeverExposeTheDaemonsFiles: finding 2. The helper
// that runs an exec check enters the sandbox non-dumpable (the init is an
// execute-only binary) with only the fds it needs, none a host file: the
// seccomp program comes as a sealed memfd. A service racing every new
// process, and its own PID 1, for their fds and ptrace gets nothing, and
// the cached programs stay as they were.
func TestExecHealthChecksNeverExposeTheDaemonsFiles(t *testing.T) {
	// The racer goes for every corral init, the helpers that exec checks
	// start beside it and its own PID 1, which holds the host's status
	// file and log dir open for the sandbox's whole life.
	racer := `import os,ctypes,time
libc=ctypes.CDLL(None,use_errno=True)
me=os.getpid()
# A check's command is forked by its init and execs: until then it is
# the init's non-dumpable copy; after, the check's own program, which is
# the service's to touch. Only a process that is still an init counts.
def still_init(p):
    try:
        return open('/proc/%s/cmdline' % p,'rb').read().startswith(b'/dev/.corral-init')
    except Exception:
        return False
print('racing', flush=True)
end=time.time()+7
got=0
while time.time()<end:
    for p in os.listdir('/proc'):
        if not p.isdigit() or int(p) == me:
            continue
        try:
            if not open('/proc/%s/cmdline' % p,'rb').read().startswith(b'/dev/.corral-init'):
                continue
        except Exception:
            continue
        if libc.ptrace(16, int(p), 0, 0) == 0:
            if still_init(p):
                print('GOT ptrace', p, flush=True); got+=1
            libc.ptrace(17, int(p), 0, 0)
        try:
            for fd in os.listdir('/proc/%s/fd' % p):
                try:
                    f=os.open('/proc/%s/fd/%s' % (p, fd), os.O_RDWR)
                    if still_init(p):
                        print('GOT fd', p, fd, os.readlink('/proc/self/fd/%d' % f), flush=True); got+=1
                    os.close(f)
                except Exception:
                    pass
        except Exception:
            pass
    time.sleep(0.0005)
print('raced, got', got, flush=True)
try:
    open('/dev/.corral-init','rb').read(1)
    print('init binary readable', flush=True)
except Exception as e:
    print('init binary unreadable', flush=True)
time.sleep(1000)
`
	d := newDaemon(t, `
  racer:
    command: ["/usr/bin/python3", "-c", `+fmt.Sprintf("%q", racer)+`]
    user: 65534
    health:
      exec: ["/bin/sh", "-c", "sleep 0.5"]
      interval: 1s
      timeout: 900ms
      retries: 5
`).start()
	d.waitRunning("racer")
	before := cacheDigests(t, d.stateDir)
	if len(before) == 0 {
		t.Fatal("no cached seccomp program in the state dir")
	}
	// Look at the helpers from the host while they run.
	cg := filepath.Join(host.Mounts["pids"], d.cgroup, "racer")
	seen := 0
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, pid := range cgroupProcs(t, cg) {
			argv := cmdline(pid)
			if len(argv) < 1 || argv[0] != "/dev/.corral-init" {
				continue
			}
			// Every init, the sandbox's PID 1 too, is non-dumpable: its
			// /proc/PID/fd is host root's, out of the service's reach.
			var st syscall.Stat_t
			if err := syscall.Stat(fmt.Sprintf("/proc/%d/fd", pid), &st); err == nil && st.Uid != 0 {
				t.Errorf("corral's init %v (pid %d) is dumpable: its /proc/PID/fd belongs to uid %d", argv, pid, st.Uid)
			}
			if len(argv) < 2 || argv[1] != "/bin/sh" {
				continue // the sandbox's own init: its fds are the sandbox's status file and log dir
			}
			fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
			if err != nil {
				continue
			}
			seen++
			for _, fd := range fds {
				link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
				if err != nil {
					continue
				}
				if strings.HasPrefix(link, "/") && link != "/dev/null" && !strings.HasPrefix(link, "/memfd:") {
					t.Errorf("an exec check's init holds fd %s = %s (a host file)", fd.Name(), link)
				}
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if seen == 0 {
		t.Fatal("never caught an exec check's init running")
	}
	d.waitLogged("racer", "raced, got 0")
	d.waitLogged("racer", "init binary unreadable")
	out, _ := os.ReadFile(filepath.Join(d.logDir, "racer", "output.log"))
	if strings.Contains(string(out), "GOT") {
		t.Errorf("the service reached another process:\n%s", out)
	}
	if after := cacheDigests(t, d.stateDir); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("the cached seccomp programs changed: %v -> %v", before, after)
	}
	d.stop()
}

// cmdline is a process's argv (nil if it is gone).
func cmdline(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimSuffix(string(data), "\x00"), "\x00")
}

// cacheDigests hashes every cached seccomp program of a state dir.
func cacheDigests(t *testing.T, stateDir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	paths, _ := filepath.Glob(filepath.Join(stateDir, "seccomp", "*.bpf"))
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = fmt.Sprintf("%x", sha256.Sum256(data))
	}
	return out
}

// TestLogDirPlantsDoNotMoveTheDaemon: finding 4. The service's user owns
// its log dir; a hard link to a root file planted there is not chowned to
// that user, and a symlink planted as a rotated log is not followed when
// the daemon reads the logs.
func TestLogDirPlantsDoNotMoveTheDaemon(t *testing.T) {
	d := newDaemon(t, `
  victim:
    command: ["/bin/sh", "-c", "echo hello; sleep 1000"]
    user: 65534
`)
	secret := filepath.Join(workDir, fmt.Sprintf("secret-%d", time.Now().UnixNano()))
	if err := os.WriteFile(secret, []byte("2026-01-01T00:00:00.000000Z stdout SECRET of root\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(secret)
	dir := filepath.Join(d.logDir, "victim")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(secret, filepath.Join(dir, "output.log.2")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(dir, "output.log.1")); err != nil {
		t.Fatal(err)
	}
	d.start()
	d.waitRunning("victim")
	d.waitLogged("victim", "hello")
	var st syscall.Stat_t
	if err := syscall.Stat(secret, &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 0 || st.Gid != 0 {
		t.Errorf("the daemon gave a root file hard-linked into the log dir to uid %d:%d", st.Uid, st.Gid)
	}
	r := d.ctl("logs", "--tail", "100", "victim")
	if strings.Contains(r.stdout, "SECRET") {
		t.Errorf("corral logs followed a symlink out of the log dir:\n%s", r.stdout)
	}
	d.stop()
}
