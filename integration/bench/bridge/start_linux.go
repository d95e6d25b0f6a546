package bridge

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// start runs `corral run -- /bin/true` with --network none and with
// --network bridge, each once a round, the first of the two alternating,
// both through nsenter into the namespace.
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
	argv := map[bool][]string{
		false: b.corralArgs("run", "--network", "none", "--cgroup-parent", runCgroupParent, "--", "/bin/true"),
		true:  b.corralArgs(append(append([]string{"run"}, bridgeFlags()...), "--cgroup-parent", runCgroupParent, "--", "/bin/true")...),
	}
	var none, bridge []time.Duration
	for r := 0; r < b.cfg.Warmup+b.cfg.Rounds; r++ {
		for i := range 2 {
			// Stop between runs, never during one.
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("interrupted in bridge start round %d: %w", r+1, err)
			}
			withBridge := (r+i)%2 == 1
			d, err := timeRun(argv[withBridge], null, stderr)
			if err != nil {
				return nil, fmt.Errorf("bridge start round %d: %w", r+1, err)
			}
			if r < b.cfg.Warmup {
				continue
			}
			if withBridge {
				bridge = append(bridge, d)
			} else {
				none = append(none, d)
			}
		}
	}
	return newStart(b.cfg.Warmup, none, bridge), nil
}

// timeRun runs argv to its end, stdin and stdout on null, and times it
// from just before the fork to just after the wait. A failure carries
// what it wrote on stderr.
func timeRun(argv []string, null, stderr *os.File) (time.Duration, error) {
	if err := stderr.Truncate(0); err != nil {
		return 0, err
	}
	if _, err := stderr.Seek(0, 0); err != nil {
		return 0, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, stderr
	t0 := time.Now()
	err := cmd.Run()
	d := time.Since(t0)
	if err != nil {
		text, _ := os.ReadFile(stderr.Name())
		return 0, fmt.Errorf("%s: %w\n\t%s", strings.Join(argv, " "), err, strings.TrimSpace(string(text)))
	}
	return d, nil
}
