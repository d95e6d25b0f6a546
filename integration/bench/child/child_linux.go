// Package child runs the bench's long-running processes: corral daemons,
// supervisord and s6-svscan. Each is signalled by its PID only, and is in
// a process group of its own, so that a Ctrl-C at the terminal reaches the
// bench alone, which then stops them in order.
package child

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

// StopTimeout is how long a child gets to stop its services and exit
// after SIGTERM before the bench kills it, and reports that as a failure.
const StopTimeout = 30 * time.Second

// Proc is a long-running process the bench started.
type Proc struct {
	Name    string
	LogPath string    // its stdout and stderr
	Started time.Time // just before the fork
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has been reaped
	exitErr error         // Wait's result, set before done is closed
	exitAt  time.Time
}

// Group is the bench's long-running processes, so that clean-up can stop
// whichever a failed or interrupted measurement left running.
type Group struct {
	mu   sync.Mutex
	list []*Proc
}

// Start starts argv with stdin on /dev/null and stdout and stderr appended
// to logPath.
func (g *Group) Start(name string, argv []string, logPath string) (*Proc, error) {
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	defer logf.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Proc{Name: name, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	p.Started = time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	g.mu.Lock()
	g.list = append(g.list, p)
	g.mu.Unlock()
	go func() {
		p.exitErr = cmd.Wait()
		p.exitAt = time.Now()
		close(p.done)
	}()
	return p, nil
}

// PID is the process's ID.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has ended and been reaped.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// ExitedErr is an error once the process has exited, naming how it
// ended; nil while it runs.
func (p *Proc) ExitedErr() error {
	if p.Exited() {
		return fmt.Errorf("%s exited: %v", p.Name, p.exitErr)
	}
	return nil
}

// Stop sends SIGTERM to the process and waits until it has exited, and
// returns the time from the signal to its exit. A process that does not
// exit within StopTimeout is killed and that is an error, as is a non-zero
// exit status.
func (p *Proc) Stop() (time.Duration, error) {
	if p.Exited() {
		return 0, fmt.Errorf("%s had already exited: %v%s", p.Name, p.exitErr, p.LogTail())
	}
	t0 := time.Now()
	if err := unix.Kill(p.PID(), unix.SIGTERM); err != nil {
		return 0, fmt.Errorf("stop %s (pid %d): %w", p.Name, p.PID(), err)
	}
	select {
	case <-p.done:
	case <-time.After(StopTimeout):
		_ = unix.Kill(p.PID(), unix.SIGKILL)
		<-p.done
		return 0, fmt.Errorf("%s (pid %d) did not exit within %s of SIGTERM; killed", p.Name, p.PID(), StopTimeout)
	}
	d := p.exitAt.Sub(t0)
	if p.exitErr != nil {
		return d, fmt.Errorf("%s exited after SIGTERM: %w%s", p.Name, p.exitErr, p.LogTail())
	}
	return d, nil
}

// StopAll stops every process still running, for clean-up.
func (g *Group) StopAll() error {
	g.mu.Lock()
	list := append([]*Proc(nil), g.list...)
	g.mu.Unlock()
	var errs []error
	for _, p := range list {
		if p.Exited() {
			continue
		}
		if _, err := p.Stop(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// LogTail is the end of the process's log file, indented for an error
// message ("" if there is none).
func (p *Proc) LogTail() string {
	data, err := os.ReadFile(p.LogPath)
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
	return "\n\tlog " + p.LogPath + ":\n\t" + strings.ReplaceAll(text, "\n", "\n\t")
}
