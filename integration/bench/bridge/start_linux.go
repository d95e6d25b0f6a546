package bridge

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// probeDir is where the sandbox sees the bench's FIFO.
const probeDir = "/probe"

// start runs `corral run` of `cat FIFO` with --network none and with
// --network bridge, each once a round, the first of the two alternating,
// both through nsenter into the namespace. The bench's open of the FIFO
// for writing returns when cat opens it for reading: the moment the
// sandbox's command runs. Then the bench closes it, cat exits, and so
// does corral, its sandbox torn down.
func (b *bench) start(ctx context.Context) (*Start, error) {
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()
	stderr, err := os.Create(b.path("start-stderr"))
	if err != nil {
		return nil, err
	}
	defer stderr.Close()
	dir := b.path("probe")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fifo := filepath.Join(dir, "fifo")
	if err := unix.Mkfifo(fifo, 0o666); err != nil && !errors.Is(err, unix.EEXIST) {
		return nil, fmt.Errorf("fifo: %w", err)
	}
	// umask aside: the sandbox's root is no host root.
	if err := os.Chmod(fifo, 0o666); err != nil {
		return nil, err
	}
	cmd := []string{"--mount", dir + ":" + probeDir, "--cgroup-parent", runCgroupParent, "--", "/bin/cat", probeDir + "/fifo"}
	argv := map[bool][]string{
		false: b.corralArgs(append([]string{"run", "--network", "none"}, cmd...)...),
		true:  b.corralArgs(append(append([]string{"run"}, bridgeFlags()...), cmd...)...),
	}
	var noneUp, bridgeUp, noneExit, bridgeExit []time.Duration
	for r := 0; r < b.cfg.Warmup+b.cfg.Rounds; r++ {
		for i := range 2 {
			// Stop between runs, never during one.
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("interrupted in bridge start round %d: %w", r+1, err)
			}
			withBridge := (r+i)%2 == 1
			up, exit, err := timeRun(argv[withBridge], fifo, null, stderr)
			if err != nil {
				return nil, fmt.Errorf("bridge start round %d: %w", r+1, err)
			}
			if r < b.cfg.Warmup {
				continue
			}
			if withBridge {
				bridgeUp, bridgeExit = append(bridgeUp, up), append(bridgeExit, exit)
			} else {
				noneUp, noneExit = append(noneUp, up), append(noneExit, exit)
			}
		}
	}
	return newStart(b.cfg.Warmup, noneUp, bridgeUp, noneExit, bridgeExit), nil
}

// timeRun runs argv, whose command opens fifo for reading, to its end,
// stdin and stdout on null, and times it from just before the fork to the
// command's open of the FIFO (up) and to corral's exit (exit). A failure
// carries what it wrote on stderr.
func timeRun(argv []string, fifo string, null, stderr *os.File) (up, exit time.Duration, err error) {
	if err := stderr.Truncate(0); err != nil {
		return 0, 0, err
	}
	if _, err := stderr.Seek(0, 0); err != nil {
		return 0, 0, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, stderr
	t0 := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	opened := make(chan error, 1)
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err == nil {
			up = time.Since(t0)
			err = f.Close()
		}
		opened <- err
	}()
	select {
	case err = <-opened:
		if err == nil {
			err = <-done
		} else {
			<-done
		}
	case err = <-done:
		// corral ended before its command opened the FIFO: open it for
		// reading here to let the writer's open return.
		if r, rerr := os.OpenFile(fifo, os.O_RDONLY|unix.O_NONBLOCK, 0); rerr == nil {
			<-opened
			r.Close()
		}
		if err == nil {
			err = errors.New("corral exited before its command ran")
		}
	}
	exit = time.Since(t0)
	if err != nil {
		text, _ := os.ReadFile(stderr.Name())
		return 0, 0, fmt.Errorf("%s: %w\n\t%s", strings.Join(argv, " "), err, strings.TrimSpace(string(text)))
	}
	return up, exit, nil
}
