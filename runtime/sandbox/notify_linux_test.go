package sandbox

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
	"github.com/corral-dev/corral/runtime/cgroup"
)

// These tests make no cgroup and no sandbox: the sandbox's cgroup is a
// fake pids hierarchy in a temp dir (testManager's), whose cgroup.procs
// says which PIDs are the sandbox's, and its notify socket is one end of
// a socketpair the test process writes to.

// notifySandbox is a Sandbox whose cgroup (in testManager's fake pids
// hierarchy) holds procs, with the manager's log.
func notifySandbox(t *testing.T, procs ...int) (*Sandbox, *bytes.Buffer) {
	t.Helper()
	m, logs := testManager(t)
	sb := &Sandbox{Name: "web", m: m, rec: &record{Name: "web", CgroupPath: "/corral/web"}}
	setProcs(t, sb, procs...)
	return sb, logs
}

// setProcs writes the sandbox's fake cgroup.procs, one PID a line as the
// kernel does.
func setProcs(t *testing.T, sb *Sandbox, procs ...int) {
	t.Helper()
	var b strings.Builder
	for _, p := range procs {
		fmt.Fprintf(&b, "%d\n", p)
	}
	writeProcs(t, sb, b.String())
}

func writeProcs(t *testing.T, sb *Sandbox, text string) {
	t.Helper()
	dir := filepath.Join(sb.m.cgroups.Mounts["pids"], sb.rec.CgroupPath)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// Messages as a sandbox's processes send them.
func TestParseNote(t *testing.T) {
	long := strings.Repeat("x", NotifyStatusMax)
	for _, tc := range []struct {
		desc string
		msg  string
		want Note
		ok   bool
	}{
		{"ready", "READY=1", Note{Ready: true}, true},
		{"ready, newline-terminated", "READY=1\n", Note{Ready: true}, true},
		// sd_notify(3): READY=1 is the only readiness; values are taken
		// exactly, as systemd does.
		{"READY=0", "READY=0", Note{}, false},
		{"READY= empty", "READY=", Note{}, false},
		{"READY=true", "READY=true", Note{}, false},
		{"READY=1 with a trailing space", "READY=1 ", Note{}, false},
		{"READY=1 with a CR (CRLF lines)", "READY=1\r\n", Note{}, false},
		{"READY=1 with a leading space", " READY=1", Note{}, false},
		{"key in lower case", "ready=1", Note{}, false},
		{"READY without =", "READY", Note{}, false},
		{"READY=1=1", "READY=1=1", Note{}, false},

		{"status", "STATUS=serving on :8080", Note{Status: "serving on :8080", HasStatus: true}, true},
		// An empty STATUS= is a message too: it clears the last one.
		{"empty status", "STATUS=", Note{HasStatus: true}, true},
		{"status holding =", "STATUS=a=b", Note{Status: "a=b", HasStatus: true}, true},
		{"status of exactly the bound", "STATUS=" + long, Note{Status: long, HasStatus: true}, true},
		{"status one byte over the bound", "STATUS=" + long + "y", Note{Status: long, HasStatus: true}, true},
		{"status far over the bound", "STATUS=" + long + strings.Repeat("y", notifyMax), Note{Status: long, HasStatus: true}, true},
		// A cut never splits a UTF-8 character: é is 2 bytes, 😀 4.
		{"status cut inside é", "STATUS=" + long[:255] + "é", Note{Status: long[:255], HasStatus: true}, true},
		{"status whose é ends at the bound", "STATUS=" + long[:254] + "éy", Note{Status: long[:254] + "é", HasStatus: true}, true},
		{"status cut after 😀's first byte", "STATUS=" + long[:255] + "😀", Note{Status: long[:255], HasStatus: true}, true},
		{"status cut after 😀's third byte", "STATUS=" + long[:253] + "😀", Note{Status: long[:253], HasStatus: true}, true},
		{"status whose 😀 ends at the bound", "STATUS=" + long[:252] + "😀y", Note{Status: long[:252] + "😀", HasStatus: true}, true},
		// Bytes that are not UTF-8 are cut where they are.
		{"status cut at a stray continuation byte", "STATUS=" + long + "\x80", Note{Status: long, HasStatus: true}, true},
		{"status cut inside bytes that are not UTF-8", "STATUS=" + long[:255] + "\xc3(", Note{Status: long[:255] + "\xc3", HasStatus: true}, true},
		{"status cut inside a lone lead byte run", "STATUS=" + long[:253] + "\xf0\xf0\xf0\xf0", Note{Status: long[:253] + "\xf0\xf0\xf0", HasStatus: true}, true},
		{"the last status wins", "STATUS=one\nSTATUS=two", Note{Status: "two", HasStatus: true}, true},

		{"ready and status", "READY=1\nSTATUS=up", Note{Ready: true, Status: "up", HasStatus: true}, true},
		{"empty lines between", "STATUS=up\n\n\nREADY=1\n", Note{Ready: true, Status: "up", HasStatus: true}, true},
		{"READY=0 after READY=1 does not take it back", "READY=1\nREADY=0", Note{Ready: true}, true},

		{"empty datagram", "", Note{}, false},
		{"only newlines", "\n\n", Note{}, false},
		{"only =", "=", Note{}, false},
		{"empty key", "=1", Note{}, false},
		{"no = at all", "hello", Note{}, false},

		// What corral does not act on says nothing.
		{"WATCHDOG", "WATCHDOG=1", Note{}, false},
		{"RELOADING", "RELOADING=1", Note{}, false},
		{"STOPPING", "STOPPING=1", Note{}, false},
		{"ERRNO", "ERRNO=2", Note{}, false},
		{"FDSTORE", "FDSTORE=1", Note{}, false},
		{"a key of its own", "X_MY_APP=1", Note{}, false},
		{"an unknown key beside READY", "X_MY_APP=1\nREADY=1", Note{Ready: true}, true},

		// MAINPID is ignored, whatever it names: the sandbox's init
		// supervises the command. It spoils nothing else the message says.
		{"MAINPID", "MAINPID=4242", Note{}, false},
		{"MAINPID of the host's init", "MAINPID=1", Note{}, false},
		{"MAINPID not a number", "MAINPID=abc", Note{}, false},
		{"MAINPID beside READY", "MAINPID=1\nREADY=1\nSTATUS=up", Note{Ready: true, Status: "up", HasStatus: true}, true},

		// NUL is no separator: a line holding one is taken whole.
		{"NUL after READY=1", "READY=1\x00", Note{}, false},
		{"NUL between two messages", "READY=1\x00STATUS=x", Note{}, false},
		// STATUS= text is passed on byte for byte, control bytes and
		// all: escaping it is its printer's job (cmd/corral's field).
		{"NUL in a status", "STATUS=a\x00b", Note{Status: "a\x00b", HasStatus: true}, true},
		{"terminal escape in a status", "STATUS=\x1b[31mred\x1b[0m", Note{Status: "\x1b[31mred\x1b[0m", HasStatus: true}, true},
		{"CR in a status", "STATUS=up\r", Note{Status: "up\r", HasStatus: true}, true},
		{"invalid UTF-8 in a status", "STATUS=\xff\xfe", Note{Status: "\xff\xfe", HasStatus: true}, true},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			sb, _ := notifySandbox(t)
			got, ok := sb.parseNote([]byte(tc.msg))
			if got != tc.want || ok != tc.ok {
				t.Errorf("parseNote(%q) = %+v, %v; want %+v, %v", tc.msg, got, ok, tc.want, tc.ok)
			}
		})
	}
}

// SenderInSandbox against the fake cgroup's cgroup.procs as the kernel
// writes it, and when it is missing or unreadable.
func TestSenderInSandbox(t *testing.T) {
	for _, tc := range []struct {
		desc  string
		procs *string // nil: no cgroup.procs (the cgroup is gone)
		pid   int
		want  bool
	}{
		{"listed", ptr("1\n4242\n4343\n"), 4242, true},
		{"the last listed", ptr("4242\n4343\n"), 4343, true},
		{"not listed", ptr("4242\n4343\n"), 4444, false},
		{"a longer PID that starts with it", ptr("42424\n"), 4242, false},
		{"a shorter PID it starts with", ptr("424\n"), 4242, false},
		{"an empty cgroup", ptr(""), 4242, false},
		// senderPid's "no credentials" never matches, even if a line of
		// the file read as 0.
		{"pid 0", ptr("0\n4242\n"), 0, false},
		{"a negative pid", ptr("-1\n"), -1, false},
		{"a line that is no number is skipped", ptr("junk\n4242\n"), 4242, true},
		{"the cgroup is gone", nil, 4242, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			m, _ := testManager(t)
			sb := &Sandbox{Name: "web", m: m, rec: &record{Name: "web", CgroupPath: "/corral/web"}}
			if tc.procs != nil {
				writeProcs(t, sb, *tc.procs)
			}
			if got := sb.SenderInSandbox(tc.pid); got != tc.want {
				t.Errorf("SenderInSandbox(%d) with cgroup.procs %q = %v, want %v", tc.pid, deref(tc.procs), got, tc.want)
			}
		})
	}
	t.Run("cgroup.procs unreadable", func(t *testing.T) {
		m, _ := testManager(t)
		sb := &Sandbox{Name: "web", m: m, rec: &record{Name: "web", CgroupPath: "/corral/web"}}
		// A directory where the file should be: the read fails (as root
		// too), and a failed read never says yes.
		if err := os.MkdirAll(filepath.Join(m.cgroups.Mounts["pids"], "/corral/web/cgroup.procs"), 0o755); err != nil {
			t.Fatal(err)
		}
		if sb.SenderInSandbox(os.Getpid()) {
			t.Error("SenderInSandbox = true when cgroup.procs cannot be read")
		}
	})
}

func ptr(s string) *string { return &s }

func deref(s *string) string {
	if s == nil {
		return "<missing>"
	}
	return *s
}

// SenderInSandbox on this machine's real pids hierarchy, read only: the
// test process is in its own cgroup, and not in a cgroup that does not
// exist. Nothing is created.
func TestSenderInSandboxRealCgroup(t *testing.T) {
	host, err := cgroup.Detect()
	testenv.Need(t, err == nil, fmt.Sprintf("needs cgroups: %v", err))
	self, err := ownPidsCgroup(host.Mode)
	testenv.Need(t, err == nil, fmt.Sprintf("needs its own cgroup: %v", err))
	if _, err := os.Stat(filepath.Join(host.Mounts["pids"], self, "cgroup.procs")); err != nil {
		// Inside a cgroup namespace whose root is not the mount's, the
		// path /proc/self/cgroup gives is not under the mount.
		testenv.Need(t, false, fmt.Sprintf("own cgroup %s not found under %s: %v", self, host.Mounts["pids"], err))
	}
	sb := &Sandbox{Name: "self", m: &Manager{cgroups: host}, rec: &record{CgroupPath: self}}
	if !sb.SenderInSandbox(os.Getpid()) {
		t.Errorf("SenderInSandbox(own pid %d) = false in own cgroup %s", os.Getpid(), self)
	}
	absent := filepath.Join(self, fmt.Sprintf("corral-notify-test-absent-%d", os.Getpid()))
	sb.rec.CgroupPath = absent
	if sb.SenderInSandbox(os.Getpid()) {
		t.Errorf("SenderInSandbox(own pid) = true in cgroup %s, which does not exist", absent)
	}
}

// ownPidsCgroup reads the test process's cgroup in the hierarchy that
// Procs reads: the pids controller's on v1, the unified one on v2.
func ownPidsCgroup(mode cgroup.Mode) (string, error) {
	f, err := os.Open("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:path
		id, rest, _ := strings.Cut(sc.Text(), ":")
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if mode == cgroup.Unified && id == "0" && controllers == "" ||
			mode != cgroup.Unified && slices.Contains(strings.Split(controllers, ","), "pids") {
			return path, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("no pids hierarchy in /proc/self/cgroup")
}

func TestSenderPid(t *testing.T) {
	creds := func(pid int32) []byte { return unix.UnixCredentials(&unix.Ucred{Pid: pid, Uid: 0, Gid: 0}) }
	for _, tc := range []struct {
		desc string
		oob  []byte
		want int
	}{
		{"no control message", nil, 0},
		{"bytes that are no control message", []byte{1, 2, 3}, 0},
		{"a cut control message", creds(42)[:unix.CmsgLen(0)+4], 0},
		{"credentials", creds(42), 42},
		{"only fds", unix.UnixRights(0), 0},
		{"fds, then credentials", append(unix.UnixRights(0), creds(42)...), 42},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			if got := senderPid(tc.oob); got != tc.want {
				t.Errorf("senderPid = %d, want %d", got, tc.want)
			}
		})
	}
}

// The rate window on its own, at given times.
func TestNotifyLimit(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	var l notifyLimit
	allowed := func(at time.Time, n int) int {
		got := 0
		for range n {
			if l.allow(at) {
				got++
			}
		}
		return got
	}
	for _, step := range []struct {
		desc string
		at   time.Duration // after t0
		n    int
		want int // of n, allowed
	}{
		{"the first message opens a window", 0, 1, 1},
		{"the rest of the window's quota", 500 * time.Millisecond, notifyRate - 1, notifyRate - 1},
		{"over quota", 500 * time.Millisecond, 50, 0},
		{"still over quota just before the window ends", time.Second - time.Nanosecond, 1, 0},
		// A fixed window: the next opens at its first message once a
		// second has passed, so a burst that spans the boundary gets up
		// to twice notifyRate through in little more than a second.
		{"a new window a second after the last opened", time.Second, notifyRate + 10, notifyRate},
		{"it opened at t0+1s, not where the last one ended", 2*time.Second - time.Nanosecond, 1, 0},
		{"a later message opens the next one itself", 5 * time.Second, notifyRate, notifyRate},
		{"which lasts a second from there", 6*time.Second - time.Nanosecond, 1, 0},
		{"a long flood stays dropped", 6*time.Second - time.Nanosecond, 10000, 0},
		{"and does not hold the next window shut", 6 * time.Second, 1, 1},
	} {
		if got := allowed(t0.Add(step.at), step.n); got != step.want {
			t.Fatalf("%s: %d of %d messages at t0+%v allowed, want %d", step.desc, got, step.n, step.at, step.want)
		}
	}
}

// notifyPair is a socketpair standing in for a sandbox's notify socket:
// recv is the daemon's end (credentials passing on when passcred, as
// makeNotify sets it), send the fd a process of the sandbox (this test
// process) writes to.
func notifyPair(t *testing.T, passcred bool) (recv *net.UnixConn, send int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[1]) })
	f := os.NewFile(uintptr(fds[0]), "notify")
	c, err := net.FileConn(f) // a dup of it
	f.Close()
	if err != nil {
		unix.Close(fds[1])
		t.Fatal(err)
	}
	recv = c.(*net.UnixConn)
	t.Cleanup(func() { recv.Close() })
	if passcred {
		if err := passCredentials(recv); err != nil {
			t.Fatal(err)
		}
	}
	return recv, fds[1]
}

// notifyRun is a readNotify running on a notifyPair, its clock stepped
// by the test: the reader takes one time per datagram it reads, so each
// send says when its datagram was read.
type notifyRun struct {
	t     *testing.T
	send  int
	recv  *net.UnixConn
	clock chan time.Time
	out   chan Note
	ended chan struct{}
}

func startNotify(t *testing.T, sb *Sandbox, passcred bool) *notifyRun {
	t.Helper()
	recv, send := notifyPair(t, passcred)
	r := &notifyRun{
		t: t, send: send, recv: recv,
		clock: make(chan time.Time),
		// Room for every note a test can get: the reader never waits on
		// the test.
		out:   make(chan Note, 4*notifyRate),
		ended: make(chan struct{}),
	}
	go func() {
		defer close(r.ended)
		sb.readNotify(recv, r.out, make(chan struct{}), func() time.Time { return <-r.clock })
	}()
	t.Cleanup(func() {
		recv.Close()
		<-r.ended
	})
	return r
}

// sendAt sends msg and has the reader read it at time at.
func (r *notifyRun) sendAt(msg string, at time.Time) {
	r.t.Helper()
	if _, err := unix.Write(r.send, []byte(msg)); err != nil {
		r.t.Fatalf("send %q: %v", msg, err)
	}
	select {
	case r.clock <- at:
	case <-r.ended:
		r.t.Fatalf("the reader ended before reading %q", msg)
	case <-time.After(10 * time.Second):
		r.t.Fatalf("the reader did not read %q", msg)
	}
}

// notes closes the socket, as Destroy does, and returns what the reader
// delivered: it has taken the time of every datagram sent, so it has
// handled them all once it ends.
func (r *notifyRun) notes() []Note {
	r.t.Helper()
	r.recv.Close()
	select {
	case <-r.ended:
	case <-time.After(10 * time.Second):
		r.t.Fatal("the reader did not end when its socket was closed")
	}
	var got []Note
	for n := range r.out { // closed by the reader
		got = append(got, n)
	}
	return got
}

// A process of the sandbox is heard, message by message, in order;
// messages that say nothing corral acts on are not delivered.
func TestReadNotifyDelivers(t *testing.T) {
	sb, logs := notifySandbox(t, os.Getpid())
	r := startNotify(t, sb, true)
	t0 := time.Now()
	for i, msg := range []string{"STATUS=starting", "WATCHDOG=1", "", "READY=1\nSTATUS=up", "MAINPID=1", "STATUS="} {
		r.sendAt(msg, t0.Add(time.Duration(i)*time.Millisecond))
	}
	want := []Note{
		{Status: "starting", HasStatus: true},
		{Ready: true, Status: "up", HasStatus: true},
		{HasStatus: true},
	}
	if got := r.notes(); !slices.Equal(got, want) {
		t.Errorf("notes %+v, want %+v", got, want)
	}
	if strings.Contains(logs.String(), "outside the sandbox") {
		t.Errorf("a process of the sandbox was taken for an outsider: %s", logs.String())
	}
}

// A datagram longer than notifyMax is dropped whole, as systemd does:
// its cut text could say what the whole did not.
func TestReadNotifyLongDatagram(t *testing.T) {
	sb, _ := notifySandbox(t, os.Getpid())
	r := startNotify(t, sb, true)
	pad := "X_PAD=" + strings.Repeat("p", notifyMax-len("X_PAD=\nREADY=1")) + "\n"
	r.sendAt(pad+"READY=10", time.Now())                           // one byte too long: cut, it would read READY=1
	r.sendAt("READY=1\n"+pad+strings.Repeat("q", 100), time.Now()) // too long, whatever it starts with
	r.sendAt(pad+"READY=1", time.Now())                            // exactly notifyMax: read
	if got, want := r.notes(), []Note{{Ready: true}}; !slices.Equal(got, want) {
		t.Errorf("notes %+v, want %+v (only the datagram of notifyMax bytes)", got, want)
	}
}

// Whatever a sender that is not a process of the sandbox says is
// dropped, and a flood of it costs one warning per 10 s.
func TestReadNotifyDropsOutsiders(t *testing.T) {
	const outsider = "sd_notify message from outside the sandbox dropped"
	for _, tc := range []struct {
		desc     string
		procs    []int // nil: no cgroup.procs
		passcred bool
		pid      string // the sender_pid the warning names
	}{
		{"a sender not in the sandbox's cgroup", []int{1}, true, fmt.Sprint(os.Getpid())},
		{"the sandbox's cgroup is gone", nil, true, fmt.Sprint(os.Getpid())},
		// Without SO_PASSCRED no datagram has credentials: senderPid is 0.
		{"no credentials", []int{os.Getpid()}, false, "0"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			m, logs := testManager(t)
			sb := &Sandbox{Name: "web", m: m, rec: &record{Name: "web", CgroupPath: "/corral/web"}}
			if tc.procs != nil {
				setProcs(t, sb, tc.procs...)
			}
			r := startNotify(t, sb, tc.passcred)
			t0 := time.Now()
			r.sendAt("READY=1", t0)
			r.sendAt("STATUS=hi", t0.Add(time.Second))
			r.sendAt("READY=1", t0.Add(10*time.Second)) // 10 s since the warning: not yet
			r.sendAt("READY=1", t0.Add(10*time.Second+time.Nanosecond))
			if got := r.notes(); len(got) > 0 {
				t.Errorf("notes %+v, want none", got)
			}
			if n := strings.Count(logs.String(), outsider); n != 2 {
				t.Errorf("%d warnings for 4 messages over 10 s, want 2:\n%s", n, logs.String())
			}
			if !strings.Contains(logs.String(), "sender_pid="+tc.pid) {
				t.Errorf("the warning does not name sender_pid=%s:\n%s", tc.pid, logs.String())
			}
		})
	}
}

// A flood is read and dropped past notifyRate a second, whoever sends it.
func TestReadNotifyRateLimit(t *testing.T) {
	sb, logs := notifySandbox(t, os.Getpid())
	r := startNotify(t, sb, true)
	t0 := time.Now()
	flood := notifyRate + 50
	for i := range flood {
		r.sendAt(fmt.Sprintf("STATUS=%d", i), t0.Add(time.Duration(i)*time.Millisecond))
	}
	r.sendAt("STATUS=late", t0.Add(time.Second-time.Nanosecond))
	r.sendAt("STATUS=next", t0.Add(time.Second))
	var want []Note
	for i := range notifyRate {
		want = append(want, Note{Status: fmt.Sprint(i), HasStatus: true})
	}
	want = append(want, Note{Status: "next", HasStatus: true})
	if got := r.notes(); !slices.Equal(got, want) {
		t.Errorf("%d notes, want the first %d of the flood and the next window's: got %+v", len(got), notifyRate, got)
	}
	if logs.Len() > 0 {
		t.Errorf("a flood of the sandbox's own logged %q, want nothing", logs.String())
	}

	// An outsider's flood counts against the same window: the limit is
	// the socket's, looked at before the sender is.
	setProcs(t, sb, 1)
	r = startNotify(t, sb, true)
	for i := range flood {
		r.sendAt("READY=1", t0.Add(time.Duration(i)*time.Millisecond))
	}
	setProcs(t, sb, os.Getpid())
	r.sendAt("READY=1", t0.Add(time.Second-time.Nanosecond))
	if got := r.notes(); len(got) > 0 {
		t.Errorf("notes %+v after an outsider's flood filled the window, want none", got)
	}
}
