package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func running(name string, pid int, cpu time.Duration) api.Service {
	return api.Service{Name: name, State: "running", PID: pid, StartedAt: t0, CPUUsage: cpu}
}

func TestCPUPercent(t *testing.T) {
	web := running("web", 10, 2*time.Second)
	restarted := running("web", 11, 100*time.Millisecond)
	restarted.StartedAt = t0.Add(time.Minute)
	samePIDNewSandbox := running("web", 10, 3*time.Second)
	samePIDNewSandbox.StartedAt = t0.Add(time.Minute)
	for _, tc := range []struct {
		name      string
		prev, cur api.Service
		elapsed   time.Duration
		want      float64
		ok        bool
	}{
		{"half a CPU", web, running("web", 10, 2500*time.Millisecond), time.Second, 50, true},
		{"idle", web, web, time.Second, 0, true},
		{"two and a half CPUs over 2s", web, running("web", 10, 7*time.Second), 2 * time.Second, 250, true},
		{"not running before", api.Service{Name: "web", State: "backoff"}, web, time.Second, 0, false},
		{"not running now", web, api.Service{Name: "web", State: "backoff"}, time.Second, 0, false},
		{"restarted", web, restarted, time.Second, 0, false},
		{"pid reused by a new sandbox", web, samePIDNewSandbox, time.Second, 0, false},
		{"counter went back", web, running("web", 10, time.Second), time.Second, 0, false},
		{"no time passed", web, running("web", 10, 3*time.Second), 0, 0, false},
	} {
		got, ok := cpuPercent(tc.prev, tc.cur, tc.elapsed)
		if ok != tc.ok || got != tc.want {
			t.Errorf("%s: cpuPercent = %g, %t; want %g, %t", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestStatsRows(t *testing.T) {
	prev := statsSample{at: t0, list: []api.Service{
		running("a", 10, time.Second),
		running("b", 20, 0),
		{Name: "c", State: "backoff"},
	}}
	b := running("b", 20, 250*time.Millisecond)
	b.MemoryUsage, b.MemoryLimit, b.PidsCurrent, b.PidsLimit, b.CPUThrottled = 32<<20, 128<<20, 3, 50, 1500*time.Millisecond
	cur := statsSample{at: t0.Add(500 * time.Millisecond), list: []api.Service{
		running("a", 10, 1100*time.Millisecond),
		b,
		running("c", 30, time.Second), // started within the interval
		running("d", 40, time.Second), // added by a reload
	}}

	rows, err := statsRows(prev, cur, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range rows {
		names = append(names, r.Name)
	}
	if strings.Join(names, " ") != "a b c d" {
		t.Fatalf("rows %v, want a b c d", names)
	}
	if p := rows[0].CPUPercent; p == nil || *p != 20 {
		t.Errorf("a: CPU %% %v, want 20", p)
	}
	if p := rows[1].CPUPercent; p == nil || *p != 50 {
		t.Errorf("b: CPU %% %v, want 50", p)
	}
	if p := rows[1].MemoryPercent; p == nil || *p != 25 {
		t.Errorf("b: MEM %% %v, want 25", p)
	}
	if r := rows[1]; r.PidsCurrent != 3 || r.PidsLimit != 50 || r.CPUThrottled != 1500*time.Millisecond || r.MemoryUsage != 32<<20 {
		t.Errorf("b: %+v", r)
	}
	if rows[0].MemoryPercent != nil {
		t.Errorf("a: MEM %% %v without a limit, want none", *rows[0].MemoryPercent)
	}
	for _, r := range rows[2:] {
		if r.CPUPercent != nil {
			t.Errorf("%s: CPU %% %v, want none: no earlier sample of this sandbox", r.Name, *r.CPUPercent)
		}
	}

	rows, err = statsRows(prev, cur, []string{"c", "a", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Name != "c" || rows[1].Name != "a" {
		t.Errorf("rows for c a c: %+v", rows)
	}

	_, err = statsRows(prev, cur, []string{"a", "nope"})
	if !errors.Is(err, api.ErrNotFound) || err.Error() != `service "nope" not found` {
		t.Errorf("unknown name: %v", err)
	}
	var ee *exitError
	if !errors.As(ctlError(err), &ee) || ee.code != 3 {
		t.Errorf("unknown name: exit %+v, want code 3", ctlError(err))
	}
}

func pct(f float64) *float64 { return &f }

func TestSortByCPU(t *testing.T) {
	rows := []statsRow{
		{Name: "idle", CPUPercent: pct(0)},
		{Name: "down"},
		{Name: "busy", CPUPercent: pct(180)},
		{Name: "b-mid", CPUPercent: pct(12.5)},
		{Name: "a-mid", CPUPercent: pct(12.5)},
		{Name: "also-down"},
	}
	sortByCPU(rows)
	var names []string
	for _, r := range rows {
		names = append(names, r.Name)
	}
	if got, want := strings.Join(names, " "), "busy a-mid b-mid idle also-down down"; got != want {
		t.Errorf("sorted: %s, want %s", got, want)
	}
}

func TestPrintStats(t *testing.T) {
	var b bytes.Buffer
	printStats(&b, []statsRow{
		{Name: "web", State: "running", Running: true, CPUPercent: pct(12.345),
			MemoryUsage: 48 << 20, MemoryLimit: 64 << 20, MemoryPercent: pct(75),
			PidsCurrent: 7, PidsLimit: 100, CPUThrottled: 1234567 * time.Microsecond},
		{Name: "worker", State: "running", Running: true, MemoryUsage: 1536},
		{Name: "db", State: "crashloop"},
	})
	want := `NAME    STATE      CPU %   MEM USAGE / LIMIT  MEM %   PIDS     THROTTLED
web     running    12.35%  48MiB / 64MiB      75.00%  7 / 100  1.235s
worker  running    -       1.5KiB / -         -       0 / -    0s
db      crashloop  -       -                  -       -        -
`
	if got := b.String(); got != want {
		t.Errorf("table:\n%s\nwant:\n%s", got, want)
	}
}

// fakeList answers with the samples in turn, repeating the last.
type fakeList struct {
	mu      sync.Mutex
	samples [][]api.Service
	err     error
	calls   int
}

func (f *fakeList) list(context.Context) ([]api.Service, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.err != nil && f.calls > 1 {
		return nil, f.err
	}
	return f.samples[min(f.calls, len(f.samples))-1], nil
}

func TestRunStatsNoStream(t *testing.T) {
	f := &fakeList{samples: [][]api.Service{
		{running("a", 1, 0), running("b", 2, 0)},
		{running("a", 1, time.Millisecond), running("b", 2, 5*time.Millisecond)},
	}}
	var out bytes.Buffer
	o := statsOptions{interval: minStatsInterval, noStream: true, byCPU: true}
	if err := runStats(context.Background(), f.list, o, &out); err != nil {
		t.Fatal(err)
	}
	if f.calls != 2 {
		t.Errorf("%d samples, want 2", f.calls)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "b ") || !strings.HasPrefix(lines[2], "a ") {
		t.Errorf("one table, busiest first:\n%s", out.String())
	}
	if strings.Contains(out.String(), "\x1b") {
		t.Error("terminal codes when not asked for")
	}
}

func TestRunStatsJSON(t *testing.T) {
	f := &fakeList{samples: [][]api.Service{{running("a", 1, 0), {Name: "z", State: "stopped"}}}}
	var out bytes.Buffer
	o := statsOptions{interval: minStatsInterval, noStream: true, json: true}
	if err := runStats(context.Background(), f.list, o, &out); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.String(), "\n"); n != 1 {
		t.Errorf("%d lines, want 1: %s", n, out.String())
	}
	var rows []map[string]any
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0]["cpu_percent"] != 0.0 || rows[0]["running"] != true {
		t.Errorf("rows: %v", rows)
	}
	if _, ok := rows[1]["cpu_percent"]; ok {
		t.Errorf("stopped service with a CPU %%: %v", rows[1])
	}
}

// TestRunStatsStream: a table each interval, each after a cleared screen
// on a terminal, until the context ends, which is no error.
func TestRunStatsStream(t *testing.T) {
	f := &fakeList{samples: [][]api.Service{{running("a", 1, 0)}}}
	w := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runStats(ctx, f.list, statsOptions{interval: minStatsInterval, clear: true}, w)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for strings.Count(w.String(), "NAME") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no three tables:\n%q", w.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("after Ctrl-C: %v", err)
	}
	if got := w.String(); !strings.HasPrefix(got, clearScreen+"NAME") || strings.Count(got, clearScreen) != strings.Count(got, "NAME") {
		t.Errorf("each table after a cleared screen:\n%q", got)
	}
}

func TestRunStatsErrors(t *testing.T) {
	ctx := context.Background()
	o := statsOptions{interval: minStatsInterval, noStream: true}

	// An unknown name fails at once, before a sample's wait.
	f := &fakeList{samples: [][]api.Service{{running("a", 1, 0)}}}
	o.names = []string{"b"}
	if err := runStats(ctx, f.list, o, &bytes.Buffer{}); !errors.Is(err, api.ErrNotFound) || f.calls != 1 {
		t.Errorf("unknown name: %v after %d samples", err, f.calls)
	}

	// The daemon goes away after the first sample: exit 4.
	gone := errors.Join(api.ErrUnavailable, errors.New("lost connection"))
	f = &fakeList{samples: [][]api.Service{{running("a", 1, 0)}}, err: gone}
	o.names = nil
	err := runStats(ctx, f.list, o, &bytes.Buffer{})
	var ee *exitError
	if !errors.As(ctlError(err), &ee) || ee.code != 4 {
		t.Errorf("daemon gone: %v, want exit 4", err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
