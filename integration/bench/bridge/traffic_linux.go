package bridge

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/corral-dev/corral/integration/bench/child"
	"github.com/corral-dev/corral/integration/bench/stats"
)

const (
	// window is how long a throughput measurement sends.
	window = 2 * time.Second
	// pingPongs are a round trip measurement's one-byte exchanges.
	pingPongs = 5000
	// sandboxPort is the server's port in its sandbox, published as
	// publishedPort; loopbackPort the same server's without a sandbox.
	sandboxPort   = 80
	publishedPort = 8080
	loopbackPort  = 9090
	// readyTimeout bounds the wait for a server to answer.
	readyTimeout = 30 * time.Second
)

// trafficPaths are the ways to the server, the baseline first.
func trafficPaths() []Path {
	return []Path{
		{Name: "loopback, no sandbox", Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(loopbackPort))},
		{Name: "published, host address (DNAT)", Addr: net.JoinHostPort(hostAddr, strconv.Itoa(publishedPort))},
		{Name: "published, 127.0.0.1 (proxy)", Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(publishedPort))},
	}
}

// traffic starts the bench's own binary as a server twice, in a sandbox
// on the bridge publishing its port and on the namespace's loopback
// without a sandbox, and measures each path's throughput, then its round
// trips, in interleaved rounds; then stops both servers.
func (b *bench) traffic(ctx context.Context) (t *Traffic, err error) {
	env, err := exec.LookPath("env")
	if err != nil {
		return nil, err
	}
	direct, err := b.g.Start("loopback server",
		append(b.w.wrap(), env, fmt.Sprintf("%s=127.0.0.1:%d", ServeEnv, loopbackPort), b.self),
		b.path("loopback-server.log"))
	if err != nil {
		return nil, err
	}
	run := append([]string{"run"}, bridgeFlags()...)
	run = append(run, "--name", "bench-server", "--publish", fmt.Sprintf("%d:%d", publishedPort, sandboxPort),
		"--mount", filepath.Dir(b.self)+":/bench", "--env", fmt.Sprintf("%s=:%d", ServeEnv, sandboxPort),
		"--cgroup-parent", runCgroupParent, "--", "/bench/"+filepath.Base(b.self))
	sandbox, err := b.g.Start("sandbox server (corral run)", b.corralArgs(run...), b.path("sandbox-server.log"))
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, p := range []*child.Proc{sandbox, direct} {
			if !p.Exited() {
				if _, serr := p.Stop(); serr != nil {
					err = errors.Join(err, serr)
				}
			}
		}
	}()
	t = &Traffic{Rounds: b.cfg.TrafficRounds, WindowS: window.Seconds(), PingPongs: pingPongs, Paths: trafficPaths(),
		GoalRatio: ThroughputGoal, GoalRTTUS: RTTGoalUS}
	for _, p := range t.Paths {
		if err := b.waitServing(ctx, p.Addr, direct, sandbox); err != nil {
			return nil, err
		}
	}
	// One unmeasured round: the first connections through each path
	// warm up what the later ones find ready (conntrack, the proxy's
	// goroutines, the server's).
	for r := -1; r < t.Rounds; r++ {
		for i := range t.Paths {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("interrupted in bridge traffic round %d: %w", r+1, err)
			}
			p := &t.Paths[rotation(r+1, i, len(t.Paths))]
			mbps, err := b.throughput(p.Addr)
			if err != nil {
				return nil, fmt.Errorf("throughput through %s (%s): %w", p.Name, p.Addr, err)
			}
			rtt, err := b.roundTrip(p.Addr)
			if err != nil {
				return nil, fmt.Errorf("round trips through %s (%s): %w", p.Name, p.Addr, err)
			}
			if r >= 0 {
				p.MBps = append(p.MBps, mbps)
				p.RTTUS = append(p.RTTUS, rtt)
			}
		}
	}
	t.compare()
	return t, nil
}

// rotation is the path measured i-th in round r of n.
func rotation(r, i, n int) int { return (r + i) % n }

// waitServing waits until the server at addr answers an echo, while the
// servers' processes live.
func (b *bench) waitServing(ctx context.Context, addr string, procs ...*child.Proc) error {
	deadline := time.Now().Add(readyTimeout)
	for {
		for _, p := range procs {
			if err := p.ExitedErr(); err != nil {
				return fmt.Errorf("wait for %s to answer: %w%s", addr, err, p.LogTail())
			}
		}
		err := b.echoOnce(addr)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer within %s: %w", addr, readyTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (b *bench) echoOnce(addr string) error {
	c, err := b.w.dial(addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	_, err = pingPong(c, 1)
	return err
}

// throughput sends to the sink at addr for window and returns MB/s.
func (b *bench) throughput(addr string) (float64, error) {
	c, err := b.w.dial(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(window + 30*time.Second))
	sent, took, err := sendFor(c, window)
	if err != nil {
		return 0, err
	}
	return float64(sent) / 1e6 / took.Seconds(), nil
}

// roundTrip makes pingPongs exchanges with the echo at addr and returns
// the median round trip, µs.
func (b *bench) roundTrip(addr string) (float64, error) {
	c, err := b.w.dial(addr)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(60 * time.Second))
	rtts, err := pingPong(c, pingPongs)
	if err != nil {
		return 0, err
	}
	us := make([]float64, len(rtts))
	for i, d := range rtts {
		us[i] = float64(d) / float64(time.Microsecond)
	}
	slices.Sort(us)
	return stats.Median(us), nil
}
