package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stopTimeout is how long a supervisor gets to stop its services and exit
// after SIGTERM before the bench kills it, and reports that as a failure.
const stopTimeout = 30 * time.Second

// child is a long-running process the bench started: a corral daemon,
// supervisord or s6-svscan. It is signalled by its PID only, and is in a
// process group of its own, so that a Ctrl-C at the terminal reaches the
// bench alone, which then stops it in order.
type child struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	started time.Time
	done    chan struct{} // closed once the process has been reaped
	exitErr error         // Wait's result, set before done is closed
	exitAt  time.Time
}

// children are the bench's long-running processes, so that clean-up can
// stop whichever a failed or interrupted measurement left running.
type children struct {
	mu   sync.Mutex
	list []*child
}

// start starts argv with stdin on /dev/null and stdout and stderr appended
// to logPath. The time it returns with is taken just before the fork.
func (cs *children) start(name string, argv []string, logPath string) (*child, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c := &child{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	c.started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	cs.mu.Lock()
	cs.list = append(cs.list, c)
	cs.mu.Unlock()
	go func() {
		c.exitErr = cmd.Wait()
		c.exitAt = time.Now()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the child and waits until it has exited, and
// returns the time from the signal to its exit. A child that does not exit
// within stopTimeout is killed and that is an error, as is a non-zero exit
// status.
func (c *child) stop() (time.Duration, error) {
	if c.exited() {
		return 0, fmt.Errorf("%s had already exited: %v%s", c.name, c.exitErr, logTail(c.logPath))
	}
	t0 := time.Now()
	if err := unix.Kill(c.pid(), unix.SIGTERM); err != nil {
		return 0, fmt.Errorf("stop %s (pid %d): %w", c.name, c.pid(), err)
	}
	select {
	case <-c.done:
	case <-time.After(stopTimeout):
		_ = unix.Kill(c.pid(), unix.SIGKILL)
		<-c.done
		return 0, fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM; killed", c.name, c.pid(), stopTimeout)
	}
	d := c.exitAt.Sub(t0)
	if c.exitErr != nil {
		return d, fmt.Errorf("%s exited after SIGTERM: %w%s", c.name, c.exitErr, logTail(c.logPath))
	}
	return d, nil
}

// stopAll stops every child still running, for clean-up.
func (cs *children) stopAll() error {
	cs.mu.Lock()
	list := append([]*child(nil), cs.list...)
	cs.mu.Unlock()
	var errs []error
	for _, c := range list {
		if c.exited() {
			continue
		}
		if _, err := c.stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// logTail is the end of a child's log file, indented for an error message.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	text := strings.TrimSpace(string(data))
	if text == "" {
		return ""
	}
	const limit = 3000
	if len(text) > limit {
		text = "..." + text[len(text)-limit:]
	}
	return "\n\tlog " + path + ":\n\t" + strings.ReplaceAll(text, "\n", "\n\t")
}

// waitGone waits until none of pids is alive (a zombie counts as gone) or
// the timeout passes, and returns those still alive.
func waitGone(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		var left []int
		for _, p := range pids {
			if alive(p) {
				left = append(left, p)
			}
		}
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		pids = left
		time.Sleep(5 * time.Millisecond)
	}
}
