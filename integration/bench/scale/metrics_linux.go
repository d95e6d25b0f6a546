package scale

// What the corral daemon's Prometheus endpoint costs it, with every
// service running: its CPU over an idle window without scrapes, and the
// CPU and latency of scrapes.

import (
	"context"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/corral-dev/corral/integration/bench/daemon"
	"github.com/corral-dev/corral/integration/bench/procfs"
	"github.com/corral-dev/corral/integration/bench/scrape"
	"github.com/corral-dev/corral/integration/bench/stats"
)

const (
	// metricsInterval is the idle window without scrapes, and the scrape
	// interval the daemon's CPU share is given for (Prometheus's default
	// scrape_interval).
	metricsInterval = 15 * time.Second
	// metricsScrapes are measured back to back, after one unmeasured
	// scrape.
	metricsScrapes = 20
	// metricsTail is how long after the last scrape its CPU is still
	// counted: work the scrapes left to the Go runtime (the GC's
	// background marking and sweeping) belongs to them.
	metricsTail = time.Second
)

// MetricsCost is what the daemon's metrics endpoint cost it in one run.
// CPU times are the daemon's, the idle CPU over the window taken away
// from the scrapes'.
type MetricsCost struct {
	// MetricsIdleCPUMS is the daemon's CPU over metricsInterval with no
	// scrape.
	MetricsIdleCPUMS float64 `json:"metrics_idle_cpu_ms"`
	// ScrapeCPUMS is the daemon's CPU per scrape.
	ScrapeCPUMS float64 `json:"scrape_cpu_ms"`
	// ScrapeP50MS and ScrapeP95MS are the time from sending a request to
	// having read the whole answer, over the measured scrapes.
	ScrapeP50MS float64 `json:"scrape_p50_ms"`
	ScrapeP95MS float64 `json:"scrape_p95_ms"`
	// ScrapeSeries are the samples in one answer; ScrapeWireBytes its
	// body as sent (gzip), ScrapeTextBytes unpacked.
	ScrapeSeries    int   `json:"scrape_series"`
	ScrapeWireBytes int64 `json:"scrape_wire_bytes"`
	ScrapeTextBytes int64 `json:"scrape_text_bytes"`
	// MetricsCPUPct is the daemon's CPU, as a percentage of one core, at
	// one scrape every metricsInterval: (idle CPU per interval + CPU per
	// scrape) / interval.
	MetricsCPUPct float64 `json:"metrics_cpu_pct"`
	// ScrapedPSS is the daemon's PSS after the scrapes. Bytes.
	ScrapedPSS int64 `json:"scraped_supervisor_pss"`
	// MetricsCPUClock names where the CPU times come from.
	MetricsCPUClock string `json:"metrics_cpu_clock,omitempty"`
}

// freeMetricsListen finds a TCP port free on 127.0.0.1 for the daemon's
// metrics endpoint: the kernel picks one, and the bench lets it go again.
func freeMetricsListen() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port for the metrics endpoint: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", fmt.Errorf("find a free port for the metrics endpoint: %w", err)
	}
	return addr, nil
}

// metricsCost measures the daemon's endpoint at listen: one unmeasured
// scrape (which also gives the size of an answer), a pause, the daemon's
// CPU over metricsInterval without scrapes, then metricsScrapes scrapes
// back to back and metricsTail after them. The daemon's idle rate is
// taken away from the scrapes' CPU.
func (b *bench) metricsCost(ctx context.Context, d *daemon.Daemon, listen string) (c MetricsCost, err error) {
	s := scrape.New(listen)
	defer s.Close()
	_, body, gzipped, err := s.Scrape(ctx)
	if err != nil {
		return c, fmt.Errorf("%w%s", err, d.LogTail())
	}
	text, series, err := scrape.Exposition(body, gzipped)
	if err != nil {
		return c, err
	}
	if series < b.cfg.Services {
		return c, fmt.Errorf("scrape %s: %d series for %d services", s.URL, series, b.cfg.Services)
	}
	c.ScrapeSeries, c.ScrapeWireBytes, c.ScrapeTextBytes = series, int64(len(body)), int64(len(text))
	time.Sleep(settle)

	clock := procfs.NewCPUClock(d.PID())
	cpu0, err := clock.Read()
	if err != nil {
		return c, err
	}
	t0 := time.Now()
	select {
	case <-time.After(metricsInterval):
	case <-ctx.Done():
		return c, ctx.Err()
	}
	cpu1, err := clock.Read()
	if err != nil {
		return c, err
	}
	t1 := time.Now()
	idlePerSecond := (cpu1 - cpu0).Seconds() / t1.Sub(t0).Seconds()
	c.MetricsIdleCPUMS = idlePerSecond * metricsInterval.Seconds() * 1000

	latencies := make([]float64, 0, metricsScrapes)
	for i := 0; i < metricsScrapes; i++ {
		took, _, _, err := s.Scrape(ctx)
		if err != nil {
			return c, fmt.Errorf("scrape %d of %d: %w%s", i+1, metricsScrapes, err, d.LogTail())
		}
		latencies = append(latencies, stats.MS(took))
	}
	time.Sleep(metricsTail)
	cpu2, err := clock.Read()
	if err != nil {
		return c, err
	}
	t2 := time.Now()
	scrapes := (cpu2 - cpu1).Seconds() - idlePerSecond*t2.Sub(t1).Seconds()
	c.ScrapeCPUMS = scrapes / metricsScrapes * 1000
	sort.Float64s(latencies)
	c.ScrapeP50MS, c.ScrapeP95MS = stats.Median(latencies), stats.Percentile(latencies, 0.95)
	c.MetricsCPUPct = 100 * (c.MetricsIdleCPUMS + c.ScrapeCPUMS) / 1000 / metricsInterval.Seconds()
	c.MetricsCPUClock = clock.Name()
	if err := d.ErrIfExited(); err != nil {
		return c, err
	}
	if c.ScrapedPSS, err = procfs.SumPSS([]int{d.PID()}); err != nil {
		return c, err
	}
	return c, nil
}
