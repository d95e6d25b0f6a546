//go:build cgo

package pid1

// These tests run the init for real: the test binary links the constructor,
// so it becomes the init when re-executed with EnvVar set. They need
// neither root nor a sandbox: away from PID 1 the init is a subreaper.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
)

// initProc is a run of the init.
type initProc struct {
	*exec.Cmd
	statusPath     string
	stdout, stderr *os.File
}

// result is how a run of the init ended.
type result struct {
	code           int // -1 if a signal killed the init
	stdout, stderr string
	status         Status
	statusErr      error
}

// newInit returns the init (binary bin) set up to run command with cfg; a
// status file is made when cfg.Status is nil. Its stdout and stderr are
// files, so that background processes holding them do not stall Wait. The
// init leads a new process group, which the command and its children join:
// a test that fails half-way kills the whole group.
func newInit(t *testing.T, bin string, cfg Config, command ...string) *initProc {
	t.Helper()
	dir := t.TempDir()
	p := &initProc{statusPath: filepath.Join(dir, "status")}
	if cfg.Status == nil {
		cfg.Status = openFile(t, p.statusPath, os.O_RDWR|os.O_CREATE)
	}
	argv, env, files := cfg.Wrap(command)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	p.Cmd = exec.CommandContext(ctx, bin)
	p.Cancel = func() error { return syscall.Kill(-p.Process.Pid, syscall.SIGKILL) }
	p.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	t.Cleanup(func() {
		if p.Process == nil {
			return
		}
		// The group outlives its leader while a member lives: no PID reuse.
		syscall.Kill(-p.Process.Pid, syscall.SIGKILL)
		if p.ProcessState == nil {
			p.Wait()
		}
	})
	p.Args = argv // argv[0] is PathInSandbox: the init ignores it
	p.Env = append(os.Environ(), env)
	p.ExtraFiles = files
	p.stdout = openFile(t, filepath.Join(dir, "stdout"), os.O_RDWR|os.O_CREATE)
	p.stderr = openFile(t, filepath.Join(dir, "stderr"), os.O_RDWR|os.O_CREATE)
	p.Stdout, p.Stderr = p.stdout, p.stderr
	return p
}

func (p *initProc) wait(t *testing.T) result {
	t.Helper()
	err := p.Wait()
	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		t.Fatalf("wait for the init: %v", err)
	}
	r := result{code: p.ProcessState.ExitCode()}
	r.stdout = readFile(t, p.stdout.Name())
	r.stderr = readFile(t, p.stderr.Name())
	r.status, r.statusErr = ReadStatus(p.statusPath)
	return r
}

// runInit runs command under this test binary as its init.
func runInit(t *testing.T, cfg Config, command ...string) result {
	t.Helper()
	p := newInit(t, os.Args[0], cfg, command...)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	return p.wait(t)
}

func openFile(t *testing.T, path string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flag, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func sh(script string, args ...string) []string {
	return append([]string{"/bin/sh", "-c", script, "sh"}, args...)
}

func TestExitAndSignal(t *testing.T) {
	tests := []struct {
		script string
		code   int
		status Status
	}{
		{"exit 0", 0, Status{State: StateExited}},
		{"exit 3", 3, Status{State: StateExited, Code: 3}},
		{"kill -TERM $$", 143, Status{State: StateSignaled, Signal: 15}},
		{"kill -KILL $$", 137, Status{State: StateSignaled, Signal: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.script, func(t *testing.T) {
			r := runInit(t, Config{}, sh(tt.script)...)
			if r.code != tt.code || r.statusErr != nil || r.status != tt.status {
				t.Errorf("exit %d, status %+v (%v); want exit %d, status %+v\nstderr: %s",
					r.code, r.status, r.statusErr, tt.code, tt.status, r.stderr)
			}
		})
	}
}

func TestStdioPassedThrough(t *testing.T) {
	r := runInit(t, Config{}, sh("echo out; echo err >&2; ls /proc/self/fd")...)
	// fds 0, 1, 2, and 3 for the directory ls reads: nothing of the init's.
	if want := "out\n0\n1\n2\n3\n"; r.stdout != want || r.stderr != "err\n" || r.code != 0 {
		t.Errorf("exit %d, stdout %q, stderr %q; want stdout %q, stderr %q", r.code, r.stdout, r.stderr, want, "err\n")
	}
}

func TestExecFailed(t *testing.T) {
	dir := t.TempDir()
	notExec := filepath.Join(dir, "not-executable")
	if err := os.WriteFile(notExec, []byte("#!/bin/sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		command string
		code    int
		errno   syscall.Errno
	}{
		{"/nonexistent/cmd", 127, syscall.ENOENT},
		{"corral-no-such-command", 127, syscall.ENOENT}, // through PATH
		{"/etc/passwd/x", 127, syscall.ENOTDIR},
		{notExec, 126, syscall.EACCES},
		{dir, 126, syscall.EACCES},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.command), func(t *testing.T) {
			p := newInit(t, os.Args[0], Config{}, tt.command, "arg")
			p.Env = append(p.Env, "PATH=/usr/bin:/bin") // none the user cannot search
			if err := p.Start(); err != nil {
				t.Fatal(err)
			}
			r := p.wait(t)
			want := Status{State: StateExecFailed, Errno: int(tt.errno), Message: tt.errno.Error()}
			// Go's messages are glibc's, but for the capital letter.
			want.Message = strings.ToUpper(want.Message[:1]) + want.Message[1:]
			if r.code != tt.code || r.status != want {
				t.Errorf("exit %d, status %+v (%v); want exit %d, status %+v", r.code, r.status, r.statusErr, tt.code, want)
			}
			if line := fmt.Sprintf("corral-init: exec %s: %s\n", tt.command, want.Message); r.stderr != line {
				t.Errorf("stderr %q, want %q", r.stderr, line)
			}
		})
	}
}

func TestEnvironment(t *testing.T) {
	p := newInit(t, os.Args[0], Config{}, "env") // found through PATH
	p.Env = append(p.Env, "CORRAL_TEST=a b")
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	r := p.wait(t)
	if r.code != 0 || !strings.Contains(r.stdout, "\nCORRAL_TEST=a b\n") || !strings.Contains(r.stdout, "\nPATH=") {
		t.Errorf("exit %d, env output:\n%s", r.code, r.stdout)
	}
	if strings.Contains(r.stdout, EnvVar) {
		t.Errorf("the command sees %s:\n%s", EnvVar, r.stdout)
	}
}

func TestBadConfig(t *testing.T) {
	dir := t.TempDir()
	// fd 3: a writable file, 4: a directory, 5: a read-only file.
	files := []*os.File{
		openFile(t, filepath.Join(dir, "status"), os.O_RDWR|os.O_CREATE),
		openFile(t, dir, os.O_RDONLY),
		openFile(t, filepath.Join(dir, "status"), os.O_RDONLY),
	}
	tests := []struct{ value, message string }{
		{"", `item "" is not key=value`},
		{"status=3,", `item "" is not key=value`},
		{"status", `item "status" is not key=value`},
		{"seccomp=3", "status= is required"},
		{"status=3,bogus=1", `unknown key "bogus"`},
		{"status=3,status=3", "status given twice"},
		{"status=", "status=: want a number from 3 to 2147483647"},
		{"status=x", "status=x: want a number from 3 to 2147483647"},
		{"status=2", "status=2: want a number from 3 to 2147483647"},
		{"status=3,logmax=0", "logmax=0: want a number from 1 to"},
		{"status=3,logmax=-5", "logmax=-5: want a number from 1 to"},
		{"status=3,logmax=99999999999999999999", "logmax=99999999999999999999: want a number from 1 to"},
		{"status=3,logfiles=1001", "logfiles=1001: want a number from 1 to 1000"},
		{"status=3,logdir=4", "logdir= needs logmax= and logfiles="},
		{"status=3,logdir=4,logmax=100", "logdir= needs logmax= and logfiles="},
		{"status=9", "status=9: Bad file descriptor"},
		{"status=4", "status=4: not a regular file"},
		{"status=5", "status=5: not open for writing"},
		{"status=3,logdir=3,logmax=1,logfiles=1", "must be different fds"},
		{"status=3,logdir=5,logmax=1,logfiles=1", "logdir=5: not a directory"},
		{"status=3,seccomp=4", "seccomp=4: not a regular file"},
		{"status=3,keep=5", "keep=5: not a socket"},
		{"status=3,logdir=4,keep=4,logmax=1,logfiles=1", "must be different fds"},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			cmd := exec.Command(os.Args[0], "/bin/true")
			cmd.Env = append(os.Environ(), EnvVar+"="+tt.value)
			cmd.ExtraFiles = files
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if code := cmd.ProcessState.ExitCode(); code != 125 {
				t.Errorf("exit %d (%v), want 125", code, err)
			}
			if !strings.HasPrefix(stderr.String(), "corral-init: ") || !strings.Contains(stderr.String(), tt.message) ||
				strings.Count(stderr.String(), "\n") != 1 {
				t.Errorf("stderr %q, want one line with %q", stderr.String(), tt.message)
			}
			if stdout.Len() > 0 {
				t.Errorf("stdout %q", stdout.String())
			}
		})
	}
	if st, err := os.Stat(files[0].Name()); err != nil || st.Size() != 0 {
		t.Errorf("the status file was written: %v %v", st.Size(), err)
	}
}

// TestKeepHoldsTheSocketFromTheCommand: the init holds the keep socket
// open while the command runs (a datagram sent to it is queued, not
// refused, after the test closed its own copy of the receiving end) and the
// command does not have it.
func TestKeepHoldsTheSocketFromTheCommand(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	keep, err := conn.File()
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	cfg := Config{Keep: keep}
	if got := cfg.KeepFd(); got != 4 {
		t.Fatalf("KeepFd = %d, want 4 (after status)", got)
	}
	p := newInit(t, os.Args[0], cfg, sh(`ls /proc/self/fd; sleep 30`)...)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	keep.Close()
	st := waitRunning(t, p.statusPath)
	waitFor(t, func() bool { return strings.Contains(readFile(t, p.stdout.Name()), "\n") })
	fds := strings.Fields(readFile(t, p.stdout.Name()))
	for _, fd := range fds {
		if fd != "0" && fd != "1" && fd != "2" && fd != "3" { // 3: ls's own directory fd
			t.Errorf("the command has fd %s open: %v", fd, fds)
		}
	}
	sender, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatalf("the socket is gone while the init runs: %v", err)
	}
	defer sender.Close()
	if _, err := sender.Write([]byte("READY=1")); err != nil {
		t.Fatalf("send to the kept socket: %v", err)
	}
	link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/4", p.Process.Pid))
	if err != nil || !strings.HasPrefix(link, "socket:") {
		t.Errorf("the init's fd 4 is %q (%v), want the socket", link, err)
	}
	_ = st
}

func TestNoCommand(t *testing.T) {
	r := runInit(t, Config{})
	if r.code != 125 || r.stderr != "corral-init: no command to run\n" || !errors.Is(r.statusErr, ErrNoStatus) {
		t.Errorf("exit %d, stderr %q, status %+v (%v)", r.code, r.stderr, r.status, r.statusErr)
	}
}

// readLine reads one line from r, failing the test after 10 seconds.
func readLine(t *testing.T, r *os.File, br *bufio.Reader) string {
	t.Helper()
	if err := r.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("read the command's output: %v (so far %q)", err, line)
	}
	return strings.TrimSuffix(line, "\n")
}

func TestSignalsForwarded(t *testing.T) {
	script := `
		for s in HUP USR2 WINCH; do trap "echo got $s" $s; done
		trap "echo got TERM; exit 7" TERM
		/bin/sleep 30 &
		echo "$!"
		echo ready
		while :; do sleep 0.02; done`
	p := newInit(t, os.Args[0], Config{}, sh(script)...)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p.Stdout = w
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	initPID := p.Process.Pid
	br := bufio.NewReader(r)
	background, _ := strconv.Atoi(readLine(t, r, br)) // killed with the group
	if line := readLine(t, r, br); line != "ready" {
		t.Fatalf("got %q, want ready", line)
	}

	// The status record names the command, a child of the init.
	s := waitRunning(t, p.statusPath)
	if ppid, _ := procStat(t, s.PID); ppid != initPID {
		t.Errorf("the PID of the running record, %d, has parent %d, not the init %d", s.PID, ppid, initPID)
	}

	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGUSR2, syscall.SIGWINCH} {
		if err := syscall.Kill(initPID, sig); err != nil {
			t.Fatal(err)
		}
		name := strings.TrimPrefix(unix.SignalName(sig), "SIG")
		if line := readLine(t, r, br); line != "got "+name {
			t.Fatalf("after %v got %q, want %q", sig, line, "got "+name)
		}
	}
	// Not forwarded: the shell has no trap for these and would die of them.
	for _, sig := range []syscall.Signal{syscall.SIGALRM, syscall.SIGPIPE} {
		if err := syscall.Kill(initPID, sig); err != nil {
			t.Fatal(err)
		}
	}
	if err := syscall.Kill(initPID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if line := readLine(t, r, br); line != "got TERM" {
		t.Fatalf("after SIGTERM got %q, want got TERM", line)
	}
	res := p.wait(t)
	if res.code != 7 || res.status != (Status{State: StateExited, Code: 7}) {
		t.Errorf("exit %d, status %+v (%v), want 7; stderr %q", res.code, res.status, res.statusErr, res.stderr)
	}
	// Signals go to the command's process, not its group.
	if _, state := procStat(t, background); state == "" || state == "Z" {
		t.Errorf("the background process got the signal too (state %q)", state)
	}
}

// TestPIDNamespaceInit runs the init as the PID 1 of a new PID namespace,
// as in a sandbox: the kernel delivers a signal from outside to such an
// init only if it has a handler or (as here) has the signal blocked.
func TestPIDNamespaceInit(t *testing.T) {
	script := `
		trap "echo got TERM; exit 5" TERM
		echo "$$"
		while :; do sleep 0.02; done`
	p := newInit(t, os.Args[0], Config{}, sh(script)...)
	p.SysProcAttr.Cloneflags = syscall.CLONE_NEWPID
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	p.Stdout = w
	if err := p.Start(); err != nil {
		testenv.Need(t, !errors.Is(err, syscall.EPERM), "making a PID namespace needs root (CAP_SYS_ADMIN)")
		t.Fatal(err)
	}
	w.Close()
	br := bufio.NewReader(r)
	if line := readLine(t, r, br); line != "2" {
		t.Errorf("the command's PID is %s, want 2 (the init is 1)", line)
	}
	if s := waitRunning(t, p.statusPath); s.PID != 2 {
		t.Errorf("status %+v, want running 2", s)
	}
	if err := p.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if line := readLine(t, r, br); line != "got TERM" {
		t.Errorf("after SIGTERM got %q", line)
	}
	if res := p.wait(t); res.code != 5 || res.status != (Status{State: StateExited, Code: 5}) {
		t.Errorf("exit %d, status %+v (%v), want 5; stderr %q", res.code, res.status, res.statusErr, res.stderr)
	}
}

// procStat returns the parent and state of process pid, or 0 and "" if it
// is gone.
func procStat(t *testing.T, pid int) (ppid int, state string) {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ESRCH) {
		return 0, ""
	}
	if err != nil {
		t.Fatal(err)
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	ppid, err = strconv.Atoi(fields[1])
	if err != nil {
		t.Fatalf("parse /proc/%d/stat: %v", pid, err)
	}
	return ppid, fields[0]
}

// zombieChildren lists the zombie children of pid.
func zombieChildren(t *testing.T, pid int) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var zombies []int
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, state := procStat(t, p); ppid == pid && state == "Z" {
			zombies = append(zombies, p)
		}
	}
	return zombies
}

func TestReapsOrphans(t *testing.T) {
	dir := t.TempDir()
	// Three orphans: each subshell starts a sleep and exits at once, so the
	// sleep is reparented to the init, and ends a second later.
	script := `
		for i in 1 2 3; do (/bin/sleep 1 & echo $! > "$1/orphan$i"); done
		echo started > "$1/started"
		exec /bin/sleep 30`
	p := newInit(t, os.Args[0], Config{}, sh(script, dir)...)
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	initPID := p.Process.Pid
	waitFor(t, func() bool { _, err := os.Stat(filepath.Join(dir, "started")); return err == nil })
	var orphans []int
	for i := 1; i <= 3; i++ {
		orphan, err := strconv.Atoi(strings.TrimSpace(readFile(t, filepath.Join(dir, fmt.Sprintf("orphan%d", i)))))
		if err != nil {
			t.Fatal(err)
		}
		if ppid, state := procStat(t, orphan); ppid != initPID {
			t.Fatalf("orphan %d: parent %d (state %q), want the init %d", orphan, ppid, state, initPID)
		}
		orphans = append(orphans, orphan)
	}
	for _, orphan := range orphans {
		// Reaped: gone, not a zombie.
		waitFor(t, func() bool { _, state := procStat(t, orphan); return state == "" })
	}
	if z := zombieChildren(t, initPID); len(z) > 0 {
		t.Errorf("zombie children of the init: %v", z)
	}
	if err := p.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if r := p.wait(t); r.code != 143 || r.status != (Status{State: StateSignaled, Signal: 15}) {
		t.Errorf("exit %d, status %+v (%v), want 143, signaled 15", r.code, r.status, r.statusErr)
	}
}

// waitRunning waits for the running record: the init writes it after the
// fork, so the command may have printed things before.
func waitRunning(t *testing.T, path string) Status {
	t.Helper()
	var s Status
	var err error
	waitFor(t, func() bool { s, err = ReadStatus(path); return !errors.Is(err, ErrNoStatus) })
	if err != nil || s.State != StateRunning {
		t.Fatalf("status %+v (%v), want running", s, err)
	}
	return s
}

// waitFor polls cond for up to 10 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
	}
}

// record is one line of output.log.
type record struct {
	when   time.Time
	stream string
	text   string
}

var recordRE = regexp.MustCompile(`^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z) (stdout|stderr) (.*)$`)

// readLog reads a log file, which must hold whole records only.
func readLog(t *testing.T, path string) []record {
	t.Helper()
	return parseLog(t, path, readFile(t, path))
}

func parseLog(t *testing.T, path, data string) []record {
	t.Helper()
	if data != "" && !strings.HasSuffix(data, "\n") {
		t.Fatalf("%s does not end with a newline: %q", path, data)
	}
	var records []record
	for _, line := range strings.SplitAfter(data, "\n") {
		if line == "" {
			continue
		}
		m := recordRE.FindStringSubmatch(strings.TrimSuffix(line, "\n"))
		if m == nil {
			t.Fatalf("%s: not a record: %q", path, line)
		}
		when, err := time.Parse("2006-01-02T15:04:05.000000Z", m[1])
		if err != nil {
			t.Fatal(err)
		}
		records = append(records, record{when, m[2], m[3]})
	}
	return records
}

// texts returns the texts of the records of stream ("" for all).
func texts(records []record, stream string) []string {
	var out []string
	for _, r := range records {
		if stream == "" || r.stream == stream {
			out = append(out, r.text)
		}
	}
	return out
}

// logConfig returns a Config that logs into a new directory.
func logConfig(t *testing.T) (Config, string) {
	dir := t.TempDir()
	return Config{LogDir: openFile(t, dir, os.O_RDONLY|syscall.O_DIRECTORY), LogMaxSize: 10 << 20, LogMaxFiles: 3}, dir
}

func TestLogLines(t *testing.T) {
	cfg, dir := logConfig(t)
	script := `
		printf 'one\ntwo\n'
		echo 'err one' >&2
		echo
		head -c 40000 /dev/zero | tr '\0' a; echo
		head -c 16384 /dev/zero | tr '\0' b; echo
		echo 'err two' >&2
		printf 'no newline'`
	start := time.Now().UTC().Truncate(time.Microsecond)
	r := runInit(t, cfg, sh(script)...)
	end := time.Now().UTC()
	if r.code != 0 || r.stdout != "" || r.stderr != "" {
		t.Errorf("exit %d, stdout %q, stderr %q; want 0 and nothing", r.code, r.stdout, r.stderr)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != "output.log" {
		t.Errorf("log dir holds %v, want output.log", entries)
	}
	records := readLog(t, filepath.Join(dir, "output.log"))
	for _, rec := range records {
		if rec.when.Before(start) || rec.when.After(end) {
			t.Errorf("record time %v not within the run, %v to %v", rec.when, start, end)
		}
	}
	a, b := strings.Repeat("a", 16384), strings.Repeat("b", 16384)
	wantOut := []string{"one", "two", "", a, a, strings.Repeat("a", 40000-2*16384), b, "no newline"}
	if got := texts(records, "stdout"); !slices.Equal(got, wantOut) {
		t.Errorf("stdout records:\n%.300q\nwant\n%.300q", got, wantOut)
	}
	if got, want := texts(records, "stderr"), []string{"err one", "err two"}; !slices.Equal(got, want) {
		t.Errorf("stderr records %q, want %q", got, want)
	}
	if fi, err := os.Stat(filepath.Join(dir, "output.log")); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("output.log mode %v (%v), want 0640", fi.Mode(), err)
	}
}

func TestLogPartialLineAfterIdle(t *testing.T) {
	cfg, dir := logConfig(t)
	r := runInit(t, cfg, sh("printf 'prompt> '; sleep 0.5; echo answer; exit 4")...)
	got := texts(readLog(t, filepath.Join(dir, "output.log")), "")
	if want := []string{"prompt> ", "answer"}; !slices.Equal(got, want) || r.code != 4 {
		t.Errorf("exit %d, records %q, want 4, %q", r.code, got, want)
	}
}

func TestLogDoesNotWaitForBackground(t *testing.T) {
	cfg, dir := logConfig(t)
	start := time.Now()
	// The sleep keeps both log pipes open after the shell exits.
	r := runInit(t, cfg, sh("/bin/sleep 10 & echo $!; echo done >&2")...)
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("the init took %v: it waited for the background process", elapsed)
	}
	records := readLog(t, filepath.Join(dir, "output.log"))
	if len(records) != 2 || texts(records, "stderr")[0] != "done" || r.code != 0 {
		t.Fatalf("exit %d, records %+v", r.code, records)
	}
}

// Each record of "line NNN" is 44 bytes: with logmax 200, four fit in a
// file, so lines 1-4, 5-8, ..., 45-48 fill files and 49-50 start one.
const rotateScript = `
	i=1; while [ $i -le 50 ]; do printf 'line %03d\n' $i; i=$((i+1)); done
	head -c 300 /dev/zero | tr '\0' x; echo
	echo last`

func TestLogRotation(t *testing.T) {
	tests := []struct {
		files int
		want  map[string][]string
	}{
		{3, map[string][]string{
			"output.log":   {"last"},
			"output.log.1": {strings.Repeat("x", 300)}, // larger than logmax: alone in its file
			"output.log.2": {"line 049", "line 050"},   // 1-4, 5-8, ... 45-48 before
		}},
		{1, map[string][]string{"output.log": {"last"}}},
		{5, map[string][]string{
			"output.log":   {"last"},
			"output.log.1": {strings.Repeat("x", 300)},
			"output.log.2": {"line 049", "line 050"},
			"output.log.3": {"line 045", "line 046", "line 047", "line 048"},
			"output.log.4": {"line 041", "line 042", "line 043", "line 044"},
		}},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d files", tt.files), func(t *testing.T) {
			cfg, dir := logConfig(t)
			cfg.LogMaxSize, cfg.LogMaxFiles = 200, tt.files
			if r := runInit(t, cfg, sh(rotateScript)...); r.code != 0 {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != len(tt.want) {
				t.Errorf("log dir holds %v, want %d files", entries, len(tt.want))
			}
			for name, want := range tt.want {
				got := texts(readLog(t, filepath.Join(dir, name)), "stdout")
				if !slices.Equal(got, want) {
					t.Errorf("%s holds %.100q, want %.100q", name, got, want)
				}
				if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || (fi.Size() > 200 && len(want) > 1) {
					t.Errorf("%s: size %d (%v), logmax 200", name, fi.Size(), err)
				}
			}
		})
	}
}

func TestLogAppends(t *testing.T) {
	cfg, dir := logConfig(t)
	cfg.LogMaxSize = 200
	old := strings.Repeat("o", 149) + "\n"
	path := filepath.Join(dir, "output.log")
	if err := os.WriteFile(path, []byte(old), 0o600); err != nil {
		t.Fatal(err)
	}
	// "first" (41 bytes) still fits after the 150 there; "second" does not.
	if r := runInit(t, cfg, sh("echo first; echo second")...); r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	rotated := readFile(t, path+".1")
	if !strings.HasPrefix(rotated, old) {
		t.Fatalf("output.log.1 = %q, want the old content first", rotated)
	}
	if got := texts(parseLog(t, "output.log.1", strings.TrimPrefix(rotated, old)), ""); !slices.Equal(got, []string{"first"}) {
		t.Errorf("appended records %q, want first", got)
	}
	if got := texts(readLog(t, path), ""); !slices.Equal(got, []string{"second"}) {
		t.Errorf("output.log records %q, want second", got)
	}
}

func TestLogDropped(t *testing.T) {
	cfg, dir := logConfig(t)
	// With a file size limit of 200 bytes on the init, "first" (41 bytes)
	// is written, the 336-byte record fails with EFBIG and is dropped whole,
	// then the notice (85 bytes) and "last" fit.
	script := `read go; echo first; head -c 300 /dev/zero | tr '\0' x; echo; echo last`
	p := newInit(t, os.Args[0], cfg, sh(script)...)
	stdin, err := p.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	limit := unix.Rlimit{Cur: 200, Max: 200}
	if err := unix.Prlimit(p.Process.Pid, unix.RLIMIT_FSIZE, &limit, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := stdin.Write([]byte("go\n")); err != nil {
		t.Fatal(err)
	}
	r := p.wait(t)
	records := readLog(t, filepath.Join(dir, "output.log"))
	want := []record{
		{stream: "stdout", text: "first"},
		{stream: "stderr", text: "corral-init: 1 log lines dropped (File too large)"},
		{stream: "stdout", text: "last"},
	}
	for i := range records {
		records[i].when = time.Time{}
	}
	if r.code != 0 || !slices.Equal(records, want) {
		t.Errorf("exit %d, records %+v, want %+v; stderr %q", r.code, records, want, r.stderr)
	}
}

// fill writes a file in dir until the filesystem is full. It closes the
// file: removing it then frees the space.
func fill(t *testing.T, dir, name string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	page := make([]byte, 4096)
	for {
		_, err := f.Write(page)
		if errors.Is(err, syscall.ENOSPC) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// waitStatus waits for a status record that cond accepts.
func waitStatus(t *testing.T, path string, cond func(Status) bool) Status {
	t.Helper()
	var s Status
	var err error
	waitFor(t, func() bool { s, err = ReadStatus(path); return err == nil && cond(s) })
	return s
}

// TestLogLostInStatus fills the log's filesystem while the command prints:
// the status record says that lines are lost and why, then that writing
// works again, and the final record keeps the count.
func TestLogLostInStatus(t *testing.T) {
	testenv.NeedRoot(t, "mounts a small tmpfs for the log")
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatalf("mount a tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	cfg := Config{LogDir: openFile(t, dir, os.O_RDONLY|syscall.O_DIRECTORY), LogMaxSize: 10 << 20, LogMaxFiles: 3}
	fill(t, dir, "filler")

	// The last record is larger than a page: it needs a new one even if
	// output.log's last page has room.
	script := `
		printf 'full 1\nfull 2\nfull 3\nfull 4\nfull 5\n'
		read go
		echo after 1; echo after 2
		read go
		printf '%5000s\n' x`
	p := newInit(t, os.Args[0], cfg, sh(script)...)
	stdin, err := p.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	next := func() {
		t.Helper()
		if _, err := stdin.Write([]byte("go\n")); err != nil {
			t.Fatal(err)
		}
	}

	// Lines are lost. The record changed at the first one only: it is not
	// rewritten for each line lost.
	s := waitStatus(t, p.statusPath, func(s Status) bool { return s.LogErrno != 0 })
	if s.State != StateRunning || s.LogLost != 1 || s.LogErrno != int(syscall.ENOSPC) {
		t.Errorf("while the log is full: status %+v, want running, 1 lost, ENOSPC", s)
	}

	// Room again: the next write is the note, then the line.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	next()
	s = waitStatus(t, p.statusPath, func(s Status) bool { return s.LogErrno == 0 })
	records := readLog(t, filepath.Join(dir, "output.log"))
	// The init may have read some "full" lines only once there was room
	// again: the note counts those it lost, a prefix, and the rest follow.
	var lost int
	if len(records) > 0 {
		fmt.Sscanf(records[0].text, "corral-init: %d log lines dropped", &lost)
	}
	want := []string{fmt.Sprintf("corral-init: %d log lines dropped (No space left on device)", lost)}
	for i := lost + 1; i <= 5; i++ {
		want = append(want, fmt.Sprintf("full %d", i))
	}
	want = append(want, "after 1", "after 2")
	waitFor(t, func() bool { return len(readLog(t, filepath.Join(dir, "output.log"))) >= len(want) })
	records = readLog(t, filepath.Join(dir, "output.log"))
	if got := texts(records, ""); lost < 1 || !slices.Equal(got, want) {
		t.Errorf("output.log records %q, want %q", got, want)
	}
	if records[0].stream != "stderr" {
		t.Errorf("the note is on %s, want stderr", records[0].stream)
	}
	if s.State != StateRunning || s.LogLost != uint64(lost) {
		t.Errorf("once writing works again: status %+v, want running, %d lost, errno 0", s, lost)
	}

	// Full again when the command ends: the final record says so.
	fill(t, dir, "filler2")
	next()
	r := p.wait(t)
	want2 := Status{State: StateExited, LogLost: uint64(lost) + 1, LogErrno: int(syscall.ENOSPC)}
	if r.code != 0 || r.status != want2 || r.stderr != "" {
		t.Errorf("exit %d, status %+v (%v), stderr %q; want 0, %+v", r.code, r.status, r.statusErr, r.stderr, want2)
	}
	if got := texts(readLog(t, filepath.Join(dir, "output.log")), ""); !slices.Equal(got, want) {
		t.Errorf("output.log records at the end %q, want %q", got, want)
	}
}

// seccompProgram returns a raw program that fails mkdir and mkdirat with
// EPERM and allows everything else.
func seccompProgram(t *testing.T) []byte {
	t.Helper()
	var arch uint32
	var nrs []uint32
	switch runtime.GOARCH {
	case "amd64":
		arch, nrs = 0xc000003e, []uint32{83, 258} // AUDIT_ARCH_X86_64; mkdir, mkdirat
	case "arm64":
		arch, nrs = 0xc00000b7, []uint32{34} // AUDIT_ARCH_AARCH64; mkdirat
	default:
		t.Skipf("no syscall numbers for %s in this test", runtime.GOARCH)
	}
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: 4, Size: 4}, // seccomp_data.arch
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: arch, SkipTrue: uint8(len(nrs) + 1)},
		bpf.LoadAbsolute{Off: 0, Size: 4}, // seccomp_data.nr
	}
	for i, nr := range nrs {
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: nr, SkipTrue: uint8(len(nrs) - i)})
	}
	prog = append(prog,
		bpf.RetConstant{Val: unix.SECCOMP_RET_ALLOW},
		bpf.RetConstant{Val: unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)},
	)
	raw, err := bpf.Assemble(prog)
	if err != nil {
		t.Fatal(err)
	}
	return rawProgram(raw)
}

// rawProgram lays out instructions as an array of struct sock_filter.
func rawProgram(raw []bpf.RawInstruction) []byte {
	var b []byte
	for _, ins := range raw {
		b = binary.NativeEndian.AppendUint16(b, ins.Op)
		b = append(b, ins.Jt, ins.Jf)
		b = binary.NativeEndian.AppendUint32(b, ins.K)
	}
	return b
}

// programFile writes a program to a file and opens it for reading.
func programFile(t *testing.T, prog []byte) *os.File {
	t.Helper()
	path := filepath.Join(t.TempDir(), "seccomp.bpf")
	if err := os.WriteFile(path, prog, 0o600); err != nil {
		t.Fatal(err)
	}
	return openFile(t, path, os.O_RDONLY)
}

func TestSeccomp(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Seccomp: programFile(t, seccompProgram(t))}
	r := runInit(t, cfg, sh(`grep NoNewPrivs /proc/self/status; exec mkdir "$1/x"`, dir)...)
	if r.code != 1 || !strings.Contains(r.stderr, "Operation not permitted") {
		t.Errorf("exit %d, stderr %q; want mkdir to fail with EPERM", r.code, r.stderr)
	}
	if r.stdout != "NoNewPrivs:\t1\n" {
		t.Errorf("stdout %q, want no_new_privs set", r.stdout)
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("mkdir went through: %v", err)
	}
	// The program is for the command only: the init reads it with pread.
	if r.status != (Status{State: StateExited, Code: 1}) {
		t.Errorf("status %+v (%v)", r.status, r.statusErr)
	}
}

func TestSeccompBadProgram(t *testing.T) {
	invalid := rawProgram([]bpf.RawInstruction{{Op: 0xffff}})
	tests := []struct {
		name    string
		prog    []byte
		message string
	}{
		{"empty", nil, "seccomp: program is 0 bytes, not a positive multiple of 8"},
		{"13 bytes", make([]byte, 13), "seccomp: program is 13 bytes, not a positive multiple of 8"},
		{"too long", make([]byte, 4097*8), "seccomp: program has 4097 instructions, more than 4096"},
		{"invalid", invalid, "seccomp: load program: Invalid argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := runInit(t, Config{Seccomp: programFile(t, tt.prog)}, "/bin/true")
			want := Status{State: StateExecFailed, Errno: int(syscall.EINVAL), Message: tt.message}
			if r.code != 126 || r.status != want || r.stderr != "corral-init: "+tt.message+"\n" {
				t.Errorf("exit %d, status %+v (%v), stderr %q; want 126, %+v", r.code, r.status, r.statusErr, r.stderr, want)
			}
		})
	}
}

// TestStaticBinary builds the init the way corral is built (static, cgo,
// external linking) and runs the main cases with it.
func TestStaticBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a static binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	if out, err := exec.Command("gcc", "-print-file-name=libc.a").Output(); err != nil || !filepath.IsAbs(strings.TrimSpace(string(out))) {
		t.Skip("no static libc (libc6-dev) for gcc")
	}
	bin := filepath.Join(t.TempDir(), "staticinit")
	build := exec.Command(goBin, "build", "-tags", "seccomp netgo osusergo",
		"-ldflags", "-linkmode external -extldflags -static", "-o", bin, "./testdata/staticinit")
	build.Env = append(os.Environ(), "CGO_ENABLED=1")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	if out, err := exec.Command("file", bin).Output(); err == nil && !bytes.Contains(out, []byte("statically linked")) {
		t.Fatalf("not a static binary: %s", out)
	}

	run := func(cfg Config, command ...string) result {
		p := newInit(t, bin, cfg, command...)
		if err := p.Start(); err != nil {
			t.Fatal(err)
		}
		return p.wait(t)
	}
	// Without EnvVar, main runs.
	if out, err := exec.Command(bin).CombinedOutput(); !bytes.Contains(out, []byte("started without")) {
		t.Errorf("without %s: %v %q", EnvVar, err, out)
	}
	if r := run(Config{}, sh("exit 3")...); r.code != 3 || r.status != (Status{State: StateExited, Code: 3}) {
		t.Errorf("exit 3: exit %d, status %+v (%v)", r.code, r.status, r.statusErr)
	}
	if r := run(Config{}, "corral-no-such-command"); r.code != 127 || r.status.Errno != int(syscall.ENOENT) {
		t.Errorf("no command: exit %d, status %+v (%v)", r.code, r.status, r.statusErr)
	}
	cfg, dir := logConfig(t)
	cfg.Seccomp = programFile(t, seccompProgram(t))
	r := run(cfg, sh(`echo out; env; mkdir "$1/x"`, dir)...)
	records := readLog(t, filepath.Join(dir, "output.log"))
	if r.code != 1 || len(records) < 2 || records[0].text != "out" ||
		!strings.Contains(strings.Join(texts(records, "stderr"), "\n"), "Operation not permitted") ||
		strings.Contains(strings.Join(texts(records, ""), "\n"), EnvVar) {
		t.Errorf("log and seccomp: exit %d, records %q", r.code, texts(records, ""))
	}
}
