package scale

import (
	"bufio"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/corral-dev/corral/integration/bench/execwatch"
	"github.com/corral-dev/corral/internal/testenv"
)

// A service is up once the one child of its parent runs the command's
// program; a parent with another program, or two children, is not.
func TestExecd(t *testing.T) {
	for _, tc := range []struct {
		script string
		up     bool
	}{
		{"sleep 100 & echo forked; wait", true},
		{"tail -f /dev/null & echo forked; wait", false},
		{"sleep 100 & sleep 100 & echo forked; wait", false},
	} {
		sh := exec.Command("/bin/sh", "-c", tc.script)
		// A group of its own, so that its children end with it.
		sh.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		stdout, err := sh.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := sh.Start(); err != nil {
			t.Fatal(err)
		}
		// Every child is forked (maybe not exec'd yet) once the shell
		// says so.
		if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
			t.Fatal(err)
		}
		ok := false
		for deadline := time.Now().Add(500 * time.Millisecond); !ok && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
			_, ok = execd(sh.Process.Pid)
		}
		if ok != tc.up {
			t.Errorf("%q: up %v, want %v", tc.script, ok, tc.up)
		}
		syscall.Kill(-sh.Process.Pid, syscall.SIGKILL)
		sh.Wait()
	}
}

// service starts, as a child of the test (the supervisor), a shell (the
// service's process) whose one child runs sleep, and returns the shell
// and, once exec'd, the sleep.
func service(t *testing.T) (sh, cmd int) {
	t.Helper()
	c := exec.Command("/bin/sh", "-c", "sleep 100 & echo forked; wait")
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := c.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
		c.Wait()
	})
	if _, err := bufio.NewReader(stdout).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cmd, ok := execd(c.Process.Pid); ok {
			return c.Process.Pid, cmd
		}
	}
	t.Fatal("sleep never exec'd")
	return 0, 0
}

// An exec event of a service's command counts it up at the event's time;
// the later of two execs of one command process counts; a scan sees only
// what no event told.
func TestUpWatchEvents(t *testing.T) {
	sh, cmd := service(t)
	u := newUpWatch(nil, "sh")
	u.supervisor = os.Getpid()
	t0 := time.Now()
	u.exec(execwatch.Event{PID: os.Getpid(), At: t0}) // not a service's
	if len(u.found) != 0 {
		t.Fatalf("the test's own exec counted: %+v", u.found)
	}
	u.exec(execwatch.Event{PID: cmd, At: t0.Add(2 * time.Millisecond)})
	u.exec(execwatch.Event{PID: cmd, At: t0.Add(time.Millisecond)}) // the shell's exec, read late
	u.scan(t0.Add(time.Second))
	got, ok := u.found[sh]
	if !ok || got.cmd != cmd || !got.at.Equal(t0.Add(2*time.Millisecond)) || u.scanned() != 0 {
		t.Errorf("found %+v (scanned %d); want sleep %d at +2ms from its event", u.found, u.scanned(), cmd)
	}
	if tm := u.times(); !tm.first.Equal(got.at) || !tm.last.Equal(got.at) {
		t.Errorf("times %+v", tm)
	}
	// Another supervisor's: not counted.
	v := newUpWatch(nil, "sh")
	v.supervisor = 1
	v.exec(execwatch.Event{PID: cmd, At: t0})
	if len(v.found) != 0 {
		t.Errorf("another supervisor's service counted: %+v", v.found)
	}
}

// Without events, or after a loss, a scan finds the service at its time.
func TestUpWatchScan(t *testing.T) {
	sh, cmd := service(t)
	u := newUpWatch(nil, "sh")
	u.supervisor = os.Getpid()
	at := time.Now()
	u.exec(execwatch.Event{Lost: true, At: at})
	got := u.found[sh]
	if got.cmd != cmd || got.at.Before(at) || got.fromEvent || u.scanned() != 1 || u.lost != 1 {
		t.Errorf("found %+v, scanned %d, lost %d", u.found, u.scanned(), u.lost)
	}
	at = got.at
	// The event, read later, has the exact time.
	u.exec(execwatch.Event{PID: cmd, At: at.Add(-time.Millisecond)})
	if got := u.found[sh]; !got.at.Equal(at.Add(-time.Millisecond)) || !got.fromEvent || u.scanned() != 0 {
		t.Errorf("after the event: %+v", got)
	}
	if scans, stop := u.scans(); scans == nil {
		t.Error("without events, no scans")
	} else {
		stop()
	}
}

// With the kernel's events, the command's exec is seen with no scan.
func TestUpWatchKernelEvents(t *testing.T) {
	testenv.NeedRoot(t, "the proc connector takes CAP_NET_ADMIN")
	w, err := execwatch.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	u := newUpWatch(w, "sh")
	u.supervisor = os.Getpid()
	t0 := time.Now()
	sh, cmd := service(t)
	for deadline := time.After(5 * time.Second); len(u.found) == 0; {
		select {
		case ev := <-u.execs():
			u.exec(ev)
		case <-deadline:
			t.Fatal("no exec event of the service's command")
		}
	}
	if got := u.found[sh]; got.cmd != cmd || !got.fromEvent || got.at.Before(t0) || got.at.After(time.Now()) {
		t.Errorf("found %+v; sleep is %d, started after %s", u.found, cmd, t0)
	}
}
