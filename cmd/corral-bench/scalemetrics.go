package main

// The scale part's measurement of what the corral daemon's Prometheus
// endpoint costs it, with every service running: its CPU over an idle
// window without scrapes, and the CPU and latency of scrapes.

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sort"
	"time"

	"golang.org/x/sys/unix"
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
	// scrapeTimeout bounds one scrape.
	scrapeTimeout = 10 * time.Second
	// scrapeAccept is what Prometheus 2 asks for; it also asks for gzip.
	scrapeAccept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
)

// metricsCost is what the daemon's metrics endpoint cost it in one run.
// CPU times are the daemon's, the idle CPU over the window taken away
// from the scrapes'.
type metricsCost struct {
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

// cpuClock reads a process's CPU time. The precise source is its CPU
// clock, CPUCLOCK_SCHED of the whole thread group (what
// clock_getcpuclockid(3) gives): /proc/PID/schedstat would be the main
// thread's alone, and a Go daemon does its work on many. Where that clock
// cannot be read, utime+stime stand in.
type cpuClock struct {
	pid   int
	ticks bool
}

const (
	processClockName = "the process's CPU clock (clock_gettime, ns, all its threads)"
	ticksClockName   = "utime+stime of /proc/PID/stat (10 ms ticks): the process's CPU clock was unreadable"
)

func newCPUClock(pid int) *cpuClock {
	c := &cpuClock{pid: pid}
	var ts unix.Timespec
	c.ticks = unix.ClockGettime(c.id(), &ts) != nil
	return c
}

// id is MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_SCHED).
func (c *cpuClock) id() int32 { return int32((^c.pid)<<3 | 2) }

func (c *cpuClock) name() string {
	if c.ticks {
		return ticksClockName
	}
	return processClockName
}

// read is the process's CPU time so far.
func (c *cpuClock) read() (time.Duration, error) {
	if c.ticks {
		st, err := readStat(c.pid)
		if err != nil {
			return 0, err
		}
		return time.Duration(st.ticks) * time.Second / userHZ, nil
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(c.id(), &ts); err != nil {
		return 0, fmt.Errorf("CPU clock of process %d: %w", c.pid, err)
	}
	return time.Duration(ts.Nano()), nil
}

// scraper fetches /metrics as Prometheus does: one kept-alive
// connection, its Accept header, gzip.
type scraper struct {
	url    string
	tr     *http.Transport
	client *http.Client
}

func newScraper(listen string) *scraper {
	tr := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
	return &scraper{
		url:    "http://" + listen + "/metrics",
		tr:     tr,
		client: &http.Client{Transport: tr, Timeout: scrapeTimeout},
	}
}

// close drops the kept-alive connection, so that the bench's end of it
// is the one that lingers, not the daemon's port.
func (s *scraper) close() { s.tr.CloseIdleConnections() }

// scrape GETs /metrics and reads the body to its end. It returns the time
// that took and the body as sent, with whether it is gzip.
func (s *scraper) scrape(ctx context.Context) (took time.Duration, body []byte, gzipped bool, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return 0, nil, false, err
	}
	req.Header.Set("Accept", scrapeAccept)
	req.Header.Set("Accept-Encoding", "gzip")
	t0 := time.Now()
	resp, err := s.client.Do(req)
	if err != nil {
		return 0, nil, false, fmt.Errorf("scrape %s: %w", s.url, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	took = time.Since(t0)
	if err != nil {
		return took, nil, false, fmt.Errorf("scrape %s: read: %w", s.url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return took, nil, false, fmt.Errorf("scrape %s: %s", s.url, resp.Status)
	}
	return took, body, resp.Header.Get("Content-Encoding") == "gzip", nil
}

// exposition unpacks a scrape's body and counts its samples: the lines
// that are neither blank nor a comment (# HELP, # TYPE, # EOF).
func exposition(body []byte, gzipped bool) (text []byte, series int, err error) {
	text = body
	if gzipped {
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return nil, 0, fmt.Errorf("unpack scrape: %w", err)
		}
		if text, err = io.ReadAll(zr); err != nil {
			return nil, 0, fmt.Errorf("unpack scrape: %w", err)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		if l := sc.Bytes(); len(l) > 0 && l[0] != '#' {
			series++
		}
	}
	return text, series, sc.Err()
}

// metricsCost measures the daemon's endpoint at listen: one unmeasured
// scrape (which also gives the size of an answer), a pause, the daemon's
// CPU over metricsInterval without scrapes, then metricsScrapes scrapes
// back to back and metricsTail after them. The daemon's idle rate is
// taken away from the scrapes' CPU.
func (b *scaleBench) metricsCost(ctx context.Context, d *corralDaemon, listen string) (c metricsCost, err error) {
	s := newScraper(listen)
	defer s.close()
	_, body, gzipped, err := s.scrape(ctx)
	if err != nil {
		return c, fmt.Errorf("%w%s", err, logTail(d.logPath))
	}
	text, series, err := exposition(body, gzipped)
	if err != nil {
		return c, err
	}
	if series < b.o.scale {
		return c, fmt.Errorf("scrape %s: %d series for %d services", s.url, series, b.o.scale)
	}
	c.ScrapeSeries, c.ScrapeWireBytes, c.ScrapeTextBytes = series, int64(len(body)), int64(len(text))
	time.Sleep(scaleSettle)

	clock := newCPUClock(d.pid())
	cpu0, err := clock.read()
	if err != nil {
		return c, err
	}
	t0 := time.Now()
	select {
	case <-time.After(metricsInterval):
	case <-ctx.Done():
		return c, ctx.Err()
	}
	cpu1, err := clock.read()
	if err != nil {
		return c, err
	}
	t1 := time.Now()
	idlePerSecond := (cpu1 - cpu0).Seconds() / t1.Sub(t0).Seconds()
	c.MetricsIdleCPUMS = idlePerSecond * metricsInterval.Seconds() * 1000

	latencies := make([]float64, 0, metricsScrapes)
	for i := 0; i < metricsScrapes; i++ {
		took, _, _, err := s.scrape(ctx)
		if err != nil {
			return c, fmt.Errorf("scrape %d of %d: %w%s", i+1, metricsScrapes, err, logTail(d.logPath))
		}
		latencies = append(latencies, float64(took)/float64(time.Millisecond))
	}
	time.Sleep(metricsTail)
	cpu2, err := clock.read()
	if err != nil {
		return c, err
	}
	t2 := time.Now()
	scrapes := (cpu2 - cpu1).Seconds() - idlePerSecond*t2.Sub(t1).Seconds()
	c.ScrapeCPUMS = scrapes / metricsScrapes * 1000
	sort.Float64s(latencies)
	c.ScrapeP50MS, c.ScrapeP95MS = median(latencies), percentile(latencies, 0.95)
	c.MetricsCPUPct = 100 * (c.MetricsIdleCPUMS + c.ScrapeCPUMS) / 1000 / metricsInterval.Seconds()
	c.MetricsCPUClock = clock.name()
	if err := d.errIfExited(); err != nil {
		return c, err
	}
	if c.ScrapedPSS, err = sumPSS([]int{d.pid()}); err != nil {
		return c, err
	}
	return c, nil
}
