package scale

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/corral-dev/corral/integration/bench/coldstart"
	"github.com/corral-dev/corral/integration/bench/procfs"
	"github.com/corral-dev/corral/spec"
)

// The scale part's runc side: what a user of runc alone does to start the
// services, `runc run -d` of each one after another, each in its own
// sandbox from a busybox root (the cold part's bundle: corral's sandbox
// with Docker's seccomp profile), with the same limits.

// runcRoot builds the busybox root the runc services share (read-only).
func (b *bench) runcRoot() (string, error) {
	root := b.path("runc-rootfs")
	if _, err := os.Stat(root); err == nil {
		return root, nil
	}
	return root, coldstart.MakeBusyboxRoot(root)
}

// runcOnce writes a bundle per service, then times `runc run -d` of each,
// one after another, until every service's command has exec'd; then
// `runc delete --force` of each, timed as the stop.
func (b *bench) runcOnce(ctx context.Context, rep int) (run Repetition, err error) {
	root, err := b.runcRoot()
	if err != nil {
		return run, err
	}
	state := b.path(fmt.Sprintf("runc-state-%d", rep))
	ids := make([]string, b.cfg.Services)
	bundles := make([]string, b.cfg.Services)
	for i := range ids {
		ids[i] = fmt.Sprintf("corral-bench-scale-%d-%s", rep, name(i))
		if bundles[i], err = b.runcBundle(root, rep, name(i)); err != nil {
			return run, err
		}
	}
	defer func() {
		if err != nil {
			for _, id := range ids {
				_ = exec.Command(b.cfg.Runc, "--root", state, "delete", "--force", id).Run()
			}
		}
	}()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return run, err
	}
	defer null.Close()

	pids := make([]int, len(ids))
	t0 := time.Now()
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return run, err
		}
		pidFile := filepath.Join(bundles[i], "pid")
		cmd := exec.Command(b.cfg.Runc, "--root", state, "run", "-d", "--pid-file", pidFile, "-b", bundles[i], id)
		// Files, not pipes: the detached container keeps its stdio, and
		// Run would wait for a pipe's end until the container ends.
		errPath := filepath.Join(bundles[i], "runc.err")
		stderr, err := os.Create(errPath)
		if err != nil {
			return run, err
		}
		cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, stderr
		err = cmd.Run()
		stderr.Close()
		if err != nil {
			msg, _ := os.ReadFile(errPath)
			return run, fmt.Errorf("runc run -d %s: %w: %s", id, err, strings.TrimSpace(string(msg)))
		}
		if pids[i], err = readPid(pidFile); err != nil {
			return run, err
		}
		if i == 0 {
			run.FirstUpS = time.Since(t0).Seconds()
		}
	}
	// `runc run -d` returns once the container's process is released,
	// which execs the command right after: wait for the last ones.
	deadline := time.Now().Add(timeout)
	for i := 0; i < len(pids); {
		if procfs.Comm(pids[i]) == commandName {
			i++
			continue
		}
		if time.Now().After(deadline) {
			return run, fmt.Errorf("runc container %s: its process %d has not exec'd %s after %s", ids[i], pids[i], commandName, timeout)
		}
		time.Sleep(time.Millisecond)
	}
	run.UpS = time.Since(t0).Seconds()

	t1 := time.Now()
	for _, id := range ids {
		if out, err := exec.Command(b.cfg.Runc, "--root", state, "delete", "--force", id).CombinedOutput(); err != nil {
			return run, fmt.Errorf("runc delete --force %s: %w: %s", id, err, out)
		}
	}
	if left := procfs.WaitGone(pids, 10*time.Second); len(left) > 0 {
		return run, fmt.Errorf("runc containers deleted but %d of their processes live on: %v", len(left), left)
	}
	run.DownS = time.Since(t1).Seconds()
	return run, nil
}

// runcBundle writes the bundle of one service: the cold part's runc
// bundle with the scale part's command and limits, in a cgroup of its
// own below cgroupParent.
func (b *bench) runcBundle(root string, rep int, service string) (string, error) {
	svc := &spec.Service{
		Name:      service,
		Command:   strings.Fields(command),
		Rootfs:    root,
		Resources: spec.Resources{Memory: scaleMemory, Pids: scalePids},
	}
	s, err := coldstart.RuncSpec(svc, fmt.Sprintf("%s/runc-%d-%s", cgroupParent, rep, service))
	if err != nil {
		return "", err
	}
	data, err := json.Marshal(s)
	if err != nil {
		return "", err
	}
	dir := b.path(fmt.Sprintf("runc-%d", rep), service)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	return dir, os.WriteFile(filepath.Join(dir, "config.json"), data, 0o644)
}

func readPid(path string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("runc's pid file: %w", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return 0, errors.New("runc's pid file: not a PID: " + string(data))
	}
	return pid, nil
}
