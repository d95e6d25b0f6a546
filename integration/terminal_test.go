package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/api"
)

// The hostile text the services below print: a window title (OSC 0), a
// clear screen, the same with a C1 CSI (U+009B, in UTF-8), a bell. Their
// sd_notify STATUS= is the same again.
const (
	hostileEvil = "evil \x1b]0;pwned\x07 \x1b[2J \xc2\x9b2J \x07 bell"
	hostileSick = "check \x1b]0;pwned\x07 \x1b[2J \xc2\x9b2J \x07"
)

// How corral shows the hostile text, escaped.
const (
	escapedEvil = `evil \x1b]0;pwned\x07 \x1b[2J \u009b2J \x07 bell`
	escapedSick = `check \x1b]0;pwned\x07 \x1b[2J \u009b2J \x07`
	escapedNote = `status \x1b]0;pwned\x07 \x1b[2J \u009b2J \x07`
)

// TestHostileServiceTextIsEscapedOnTheTerminal: what a service prints,
// its health check's output and its sd_notify STATUS= reach the
// operator's terminal escaped through status, ps, events and logs; logs
// --raw and logs into a pipe pass its bytes through; --json carries them
// as JSON escapes.
func TestHostileServiceTextIsEscapedOnTheTerminal(t *testing.T) {
	scripts := t.TempDir()
	writeScript(t, scripts, "evil.sh", `printf 'evil \033]0;pwned\007 \033[2J \302\2332J \007 bell\n'
printf 'evil \033]52;c;aGk=\007 to stderr\n' >&2
exit 3
`)
	writeScript(t, scripts, "check.sh", `printf 'check \033]0;pwned\007 \033[2J \302\2332J \007\n'
exit 1
`)
	writeScript(t, scripts, "sick.py", `import os, socket, sys, time
sys.stdout.buffer.write(b"sick started\n"); sys.stdout.flush()
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.sendto(b"READY=1\nSTATUS=status \x1b]0;pwned\x07 \x1b[2J \xc2\x9b2J \x07", os.environ["NOTIFY_SOCKET"])
time.sleep(1000)
`)
	// sick fails its check at once, again and again: every round is an
	// unhealthy event and an exit whose reason quotes the check.
	d := newDaemon(t, `
  evil:
    command: ["/bin/sh", "/scripts/evil.sh"]
    mounts: ["`+scripts+`:/scripts:ro"]
    restart: no
  sick:
    command: ["/usr/bin/python3", "/scripts/sick.py"]
    mounts: ["`+scripts+`:/scripts:ro"]
    notify: true
    health: {exec: ["/bin/sh", "/scripts/check.sh"], interval: 1s, timeout: 1s, retries: 1}
    restart: {policy: always, backoff: {initial: 200ms, max: 1s}}
`).start()
	evil := d.waitFor("evil", 20*time.Second, "ended", func(st *api.ServiceDetail) bool { return len(st.Exits) > 0 })
	if !containsLine(evil.Exits[0].LastLines, hostileEvil) {
		t.Fatalf("evil's last lines %q; want %q", evil.Exits[0].LastLines, hostileEvil)
	}
	d.waitFor("sick", 30*time.Second, "stopped for its check", func(st *api.ServiceDetail) bool {
		return len(st.Exits) > 0 && st.Exits[len(st.Exits)-1].Kind == api.ExitUnhealthy
	})

	r := d.ctlOnTerminal("status", "evil")
	assertEscapedOutput(t, "status evil", r, escapedEvil)
	// sick's sd_notify status and its failed check show at times of
	// its round: look until both have been seen.
	var sawNote, sawCheck bool
	for deadline := time.Now().Add(30 * time.Second); !sawNote || !sawCheck; {
		r = d.ctlOnTerminal("status", "sick")
		if !assertEscapedOutput(t, "status sick", r, "[unhealthy] ") {
			t.FailNow()
		}
		sawNote = sawNote || strings.Contains(r.stdout, "status:    "+escapedNote+" (sd_notify)")
		sawCheck = sawCheck || strings.Contains(r.stdout, escapedSick+")\n")
		if time.Now().After(deadline) {
			t.Fatalf("status sick: sd_notify status seen %t, failed check seen %t; last:\n%s", sawNote, sawCheck, r.stdout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	assertEscapedOutput(t, "ps", d.ctlOnTerminal("ps"), escapedSick)

	ev := d.startOnTerminal("events")
	ev.waitOutput(t, "health: unhealthy", 30*time.Second)
	ev.cmd.Process.Signal(syscall.SIGINT)
	assertEscapedOutput(t, "events", ev.wait(t), escapedSick)

	r = d.ctlOnTerminal("logs", "evil")
	assertEscapedOutput(t, "logs", r, "stdout "+escapedEvil+"\n")
	wantContains(t, "logs", r.stdout, `stderr evil \x1b]52;c;aGk=\x07 to stderr`+"\n")
	r = d.ctlOnTerminal("logs", "--raw", "evil")
	wantContains(t, "logs --raw on a terminal", r.stdout, "stdout "+hostileEvil+"\n")
	r = d.ctl("logs", "evil")
	wantContains(t, "logs into a pipe", r.stdout, "stdout "+hostileEvil+"\n")

	var st api.ServiceDetail
	r = d.ctl("status", "--json", "evil")
	assertJSON(t, "status --json", r, &st)
	if len(st.Exits) == 0 || !containsLine(st.Exits[0].LastLines, hostileEvil) {
		t.Errorf("status --json: exits %+v; want last lines ending %q", st.Exits, hostileEvil)
	}
	var list []api.Service
	assertJSON(t, "ps --json", d.ctl("ps", "--json"), &list)
	for _, s := range list {
		if s.Name == "sick" && (s.LastExit == nil || !strings.Contains(s.LastExit.Reason, hostileSick)) {
			t.Errorf("ps --json: sick's last exit %+v; want its reason to quote %q", s.LastExit, hostileSick)
		}
	}
	ev = d.startOnTerminal("events", "--json")
	ev.waitOutput(t, `"health":"unhealthy"`, 30*time.Second)
	ev.cmd.Process.Signal(syscall.SIGINT)
	r = ev.wait(t)
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var e api.Event
		assertJSON(t, "events --json", result{stdout: line}, &e)
	}
	d.stop()
}

// TestPsFitsTheTerminal: on an 80-column terminal every row of ps fits,
// a long reason cut with '…'; status has the whole reason; into a pipe
// the rows are whole.
func TestPsFitsTheTerminal(t *testing.T) {
	long := "/no/such/program/" + strings.Repeat("very-long-directory-name/", 6) + "server"
	d := newDaemon(t, `
  broken:
    command: ["`+long+`"]
  sleeper:
    command: ["/bin/sleep", "1000"]
`).start()
	d.waitFor("broken", 10*time.Second, "failed", func(st *api.ServiceDetail) bool { return st.State == "failed" })
	d.waitRunning("sleeper")
	r := d.startOnTerminalOf(80, "ps").wait(t)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("ps on a terminal: want a header and 2 rows; got %s", r)
	}
	for _, line := range lines {
		if n := utf8.RuneCountInString(line); n > 80 {
			t.Errorf("a row of %d characters on an 80-column terminal: %q", n, line)
		}
	}
	if !strings.HasPrefix(lines[1], "broken") || !strings.HasSuffix(lines[1], "…") {
		t.Errorf("the failed service's row is not cut with '…': %q", lines[1])
	}
	if r := d.ctlOnTerminal("status", "broken"); !strings.Contains(r.stdout, long) {
		t.Errorf("status does not show the whole reason with %s:\n%s", long, r.stdout)
	}
	if r := d.ctl("ps"); !strings.Contains(r.stdout, long) {
		t.Errorf("ps into a pipe cut the row:\n%s", r.stdout)
	}
	d.stop()
}

func writeScript(t *testing.T, dir, name, body string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// assertEscapedOutput checks that a command printed want, and nothing
// that drives a terminal: only UTF-8, with no control character but
// newline and tab. It reports whether all was well.
func assertEscapedOutput(t *testing.T, what string, r result, want string) bool {
	t.Helper()
	ok := true
	if r.code != 0 {
		t.Errorf("%s: %s", what, r)
		ok = false
	}
	if bad := terminalControls(r.stdout); bad != "" {
		t.Errorf("%s printed %s:\n%q", what, bad, r.stdout)
		ok = false
	}
	if !strings.Contains(r.stdout, want) {
		t.Errorf("%s: want it to contain %q; got:\n%s", what, want, r.stdout)
		ok = false
	}
	return ok
}

// terminalControls describes the first control character of s (other
// than newline and tab) or byte that is not UTF-8, or is "".
func terminalControls(s string) string {
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			return fmt.Sprintf("the byte %#x, not UTF-8, at %d", s[i], i)
		case r < 0x20 && r != '\n' && r != '\t', r == 0x7f, r >= 0x80 && r <= 0x9f:
			return fmt.Sprintf("the control character %U at %d", r, i)
		}
	}
	return ""
}

// assertJSON checks that a --json output is JSON with every control
// character escaped (so it is safe on a terminal too), and decodes it.
func assertJSON(t *testing.T, what string, r result, v any) {
	t.Helper()
	if r.code != 0 {
		t.Errorf("%s: %s", what, r)
	}
	if bad := terminalControls(r.stdout); bad != "" {
		t.Errorf("%s printed %s:\n%q", what, bad, r.stdout)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Errorf("%s: %v:\n%s", what, err, r.stdout)
	}
}

// termCmd is a corral client command whose standard output is a
// pseudo-terminal, as an operator's would be.
type termCmd struct {
	cmd    *exec.Cmd
	stderr bytes.Buffer
	mu     sync.Mutex
	out    bytes.Buffer
	read   chan struct{} // closed once the terminal's output is all read
	cancel context.CancelFunc
}

// startOnTerminal starts a corral client command against the daemon with
// its standard output on a new pseudo-terminal (of no known size).
func (d *daemonProc) startOnTerminal(args ...string) *termCmd {
	d.t.Helper()
	return d.startOnTerminalOf(0, args...)
}

// startOnTerminalOf is startOnTerminal on a terminal cols columns wide
// (0: no size known).
func (d *daemonProc) startOnTerminalOf(cols uint16, args ...string) *termCmd {
	t := d.t
	t.Helper()
	master, slave := openTerminal(t)
	if cols > 0 {
		if err := unix.IoctlSetWinsize(int(slave.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: cols}); err != nil {
			t.Fatalf("size the terminal: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	c := &termCmd{read: make(chan struct{}), cancel: cancel}
	c.cmd = exec.CommandContext(ctx, corralBin, append([]string{"--state-dir", d.stateDir}, args...)...)
	c.cmd.Stdout = slave
	c.cmd.Stderr = &c.stderr
	if err := c.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	slave.Close() // the child's copy is the last: its end ends the reads
	go func() {
		defer close(c.read)
		defer master.Close()
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			c.mu.Lock()
			c.out.Write(buf[:n])
			c.mu.Unlock()
			if err != nil { // EIO once the child has closed the terminal
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		if c.cmd.ProcessState == nil {
			_ = c.cmd.Wait()
		}
	})
	return c
}

// ctlOnTerminal runs a corral client command on a pseudo-terminal to
// its end.
func (d *daemonProc) ctlOnTerminal(args ...string) result {
	d.t.Helper()
	return d.startOnTerminal(args...).wait(d.t)
}

func (c *termCmd) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// waitOutput waits (at most timeout) until the command has printed want.
func (c *termCmd) waitOutput(t *testing.T, want string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !strings.Contains(c.output(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("%v did not print %q within %s; printed:\n%q\nstderr: %s", c.cmd.Args, want, timeout, c.output(), c.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// wait waits for the command to end and its output to be read.
func (c *termCmd) wait(t *testing.T) result {
	t.Helper()
	err := c.cmd.Wait()
	c.cancel()
	<-c.read
	r := result{stdout: c.output(), stderr: c.stderr.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %v: %v", c.cmd.Args, err)
	}
	return r
}

// openTerminal opens a new pseudo-terminal: its master, to read, and its
// slave, for a child's output. The slave does no output processing (no
// newline to CR LF), so what is read is what the child wrote.
func openTerminal(t *testing.T) (master, slave *os.File) {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil { // unlockpt
		master.Close()
		t.Fatalf("unlock the terminal: %v", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN) // ptsname
	if err != nil {
		master.Close()
		t.Fatalf("name the terminal: %v", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		master.Close()
		t.Fatal(err)
	}
	tio, err := unix.IoctlGetTermios(int(slave.Fd()), unix.TCGETS)
	if err == nil {
		tio.Oflag &^= unix.OPOST
		err = unix.IoctlSetTermios(int(slave.Fd()), unix.TCSETS, tio)
	}
	if err != nil {
		master.Close()
		slave.Close()
		t.Fatalf("set the terminal's output raw: %v", err)
	}
	return master, slave
}
