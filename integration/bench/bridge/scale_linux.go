package bridge

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/corral-dev/corral/integration/bench/daemon"
	"github.com/corral-dev/corral/integration/bench/scale"
)

const (
	// scaleReps is how many times each network's daemon starts and
	// stops all its services.
	scaleReps = 3
	// scaleGap separates one daemon's run from the next, so that the
	// kernel has finished tearing the previous one's sandboxes down.
	scaleGap = time.Second
)

// scaleConfig is a daemon's service file: n services running
// scale.Command, all on network, with the limits the scale part gives
// them and the part's bridge.
func (b *bench) scaleConfig(network string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "daemon:\n  cgroup_parent: %s\n  log_dir: %s\n  bridge: %s\n  subnet: %s\n  dns: [%s]\n  defaults:\n    resources: {memory: 32M, pids: 16}\nservices:\n",
		cgroupParent, daemon.YAMLString(b.path("logs")), bridgeName, subnet, dns)
	for i := range b.cfg.Services {
		fmt.Fprintf(&s, "  s%03d: {command: %s, network: %s}\n", i, daemon.YAMLList(strings.Fields(scale.Command)...), network)
	}
	return s.String()
}

// scale starts and stops a daemon of cfg.Services services scaleReps
// times with network none and as many with bridge, alternating.
func (b *bench) scale(ctx context.Context) (*Scale, error) {
	if err := os.MkdirAll(b.path("logs"), 0o755); err != nil {
		return nil, fmt.Errorf("make bridge log dir: %w", err)
	}
	s := &Scale{Services: b.cfg.Services, Reps: scaleReps}
	for r := range scaleReps {
		order := []string{"none", "bridge"}
		if r%2 == 1 {
			order = []string{"bridge", "none"}
		}
		for _, network := range order {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("interrupted in bridge scale repetition %d: %w", r+1, err)
			}
			run, note, err := b.scaleOnce(ctx, network, r)
			if err != nil {
				return nil, fmt.Errorf("bridge scale repetition %d, network %s: %w", r+1, network, err)
			}
			if note != "" {
				s.Notes = append(s.Notes, fmt.Sprintf("%s, repetition %d: %s", network, r+1, note))
			}
			if network == "bridge" {
				s.Bridge = append(s.Bridge, run)
			} else {
				s.None = append(s.None, run)
			}
			time.Sleep(scaleGap)
		}
	}
	return s, nil
}

// scaleOnce runs one daemon until all its services' commands have
// exec'd, then stops it, and checks that nothing of the sandboxes'
// networks is left.
func (b *bench) scaleOnce(ctx context.Context, network string, rep int) (ScaleRun, string, error) {
	var run ScaleRun
	cfg := b.path("corral-" + network + ".yaml")
	if err := os.WriteFile(cfg, []byte(b.scaleConfig(network)), 0o644); err != nil {
		return run, "", fmt.Errorf("write service file: %w", err)
	}
	up, err := scale.StartCorral(ctx, b.cfg.Services, func() (*daemon.Daemon, error) {
		return daemon.StartWrapped(b.g, b.w.wrap(), b.cfg.Corral, b.state, cfg, b.path(fmt.Sprintf("daemon-%s-%d.log", network, rep)))
	})
	if err != nil {
		return run, "", err
	}
	run.FirstUpS, run.UpS, run.StartFailures = up.First.Seconds(), up.All.Seconds(), up.Failures
	down, err := up.Daemon.StopAndCheck(cgroupParent)
	if err != nil {
		return run, "", err
	}
	run.DownS = down.Seconds()
	return run, up.Note, b.checkClean()
}
