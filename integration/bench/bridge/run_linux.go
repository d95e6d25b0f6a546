package bridge

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/child"
	"github.com/corral-dev/corral/integration/bench/scratch"
)

// Config is what the bridge part is told.
type Config struct {
	Corral string // the corral binary, an absolute path
	// Rounds and Warmup are the start's measured and unmeasured rounds.
	Rounds, Warmup int
	// Services is the number of services of the scale's daemons.
	Services int
	// TrafficRounds are the rounds of the throughput and RTT.
	TrafficRounds int
}

// MaxServices is how many sandboxes the bridge's /24 holds (less the
// gateway's address), with room for the traffic's sandbox.
const MaxServices = 250

// cgroupParent holds the sandboxes of the part's daemons, which remove
// it as they exit, and runCgroupParent those of its `corral run`s (as in
// the cold part).
const (
	cgroupParent    = cgroupfs.Parent + "/bridge"
	runCgroupParent = cgroupfs.Parent
)

type bench struct {
	cfg   Config
	sc    *scratch.Dir
	g     *child.Group
	w     *world
	dir   string
	state string // corral's state dir: one for the part, one owner of the bridge
	self  string // the bench's own binary, copied where sandboxes can run it
}

func (b *bench) path(elem ...string) string {
	return filepath.Join(append([]string{b.dir}, elem...)...)
}

// corralArgs is a corral command line in the namespace: global flags,
// then the subcommand's arguments.
func (b *bench) corralArgs(args ...string) []string {
	return append(append(b.w.wrap(), b.cfg.Corral, "--state-dir", b.state), args...)
}

// bridgeFlags are `corral run`'s flags for the part's bridge.
func bridgeFlags() []string {
	return []string{"--network", "bridge", "--bridge", bridgeName, "--subnet", subnet, "--dns", dns}
}

// Run makes the namespace, measures the start, the scale and the traffic
// in it, and removes it however it ends; long-running processes are
// started in g, progress lines go to w.
func Run(ctx context.Context, cfg Config, sc *scratch.Dir, g *child.Group, w io.Writer) (rep *Report, err error) {
	if cfg.Services < 1 || cfg.Services > MaxServices {
		return nil, fmt.Errorf("bridge: %d services: the bridge's subnet %s holds 1 to %d", cfg.Services, subnet, MaxServices)
	}
	b := &bench{cfg: cfg, sc: sc, g: g, dir: sc.Path("bridge")}
	if err := os.MkdirAll(b.path("bin"), 0o755); err != nil {
		return nil, fmt.Errorf("make bridge scratch dir: %w", err)
	}
	if b.state, err = sc.StateDir("bridge", "state"); err != nil {
		return nil, err
	}
	if b.self, err = copySelf(b.path("bin")); err != nil {
		return nil, err
	}
	if b.w, err = newWorld(b.path("netns")); err != nil {
		return nil, err
	}
	// The namespace goes once corral's processes in it have gone too:
	// the checks below stop them first, and whatever a failure left is
	// the bench's clean-up's (its child group).
	defer func() { err = errors.Join(err, b.w.close()) }()
	rep = &Report{Bridge: bridgeName, Subnet: subnet, HostAddr: hostAddr}
	fmt.Fprintf(w, "\nbridge: in network namespace %s (bridge %s, subnet %s, the host's address %s)\n", b.w.path, bridgeName, subnet, hostAddr)
	fmt.Fprintf(w, "bridge start: %d warm-up + %d measured rounds of `corral run -- /bin/true`, --network none and bridge\n", cfg.Warmup, cfg.Rounds)
	if rep.Start, err = b.start(ctx); err != nil {
		return nil, err
	}
	if err := b.checkClean(); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "bridge scale: %d services, %d repetitions of each network, alternating\n", cfg.Services, scaleReps)
	if rep.Scale, err = b.scale(ctx); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "bridge traffic: %d rounds, each path %s of sending and %d ping-pongs\n", cfg.TrafficRounds, window, pingPongs)
	if rep.Traffic, err = b.traffic(ctx); err != nil {
		return nil, err
	}
	if err := b.checkClean(); err != nil {
		return nil, err
	}
	return rep, nil
}

// checkClean checks that corral left nothing of its sandboxes' networks:
// no veth in the namespace, no record of the bridge's.
func (b *bench) checkClean() error {
	left, err := b.w.veths()
	if err != nil {
		return err
	}
	recs, _ := filepath.Glob(filepath.Join(b.state, "net", bridgeName, "records", "*"))
	left = append(left, recs...)
	if len(left) > 0 {
		return fmt.Errorf("corral left %s once its bridge sandboxes were gone", strings.Join(left, ", "))
	}
	return nil
}

// copySelf copies the bench's binary into dir, which sandboxes are given
// read-only at /bench: a sandbox's private user namespace may read and
// run it there (and not in bin/, beside corral's binary, which corral
// refuses to bind).
func copySelf(dir string) (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("the bench's binary: %w", err)
	}
	data, err := os.ReadFile(exe)
	if err != nil {
		return "", fmt.Errorf("the bench's binary: %w", err)
	}
	dst := filepath.Join(dir, filepath.Base(exe))
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		return "", fmt.Errorf("copy the bench's binary: %w", err)
	}
	return dst, nil
}
