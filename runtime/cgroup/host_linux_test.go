package cgroup

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// writeTree writes files (path relative to root -> content) under root.
func writeTree(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// v1Host is a hybrid host whose v1 hierarchies are mounted at
// root/<controller>, as on a real host (/sys/fs/cgroup/memory ...).
func v1Host(root string) *Host {
	h := &Host{Mode: Hybrid, Mounts: map[string]string{}}
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct"} {
		h.Mounts[c] = filepath.Join(root, c)
		h.Roots = append(h.Roots, filepath.Join(root, c))
	}
	h.Roots = append(h.Roots, filepath.Join(root, "unified"))
	return h
}

// v1Files is a v1 sandbox cgroup at cg with the given values.
func v1Files(cg, memLimit, pidsMax, pidsEvents, oomControl string) map[string]string {
	return map[string]string{
		"memory/" + cg + "/memory.stat":               "cache 4096\nrss 1048576\ntotal_rss 1048576\n",
		"memory/" + cg + "/memory.oom_control":        oomControl,
		"memory/" + cg + "/memory.usage_in_bytes":     "5242880\n",
		"memory/" + cg + "/memory.max_usage_in_bytes": "8388608\n",
		"memory/" + cg + "/memory.failcnt":            "17\n",
		"memory/" + cg + "/memory.limit_in_bytes":     memLimit,
		"pids/" + cg + "/pids.current":                "3\n",
		"pids/" + cg + "/pids.max":                    pidsMax,
		"pids/" + cg + "/pids.events":                 pidsEvents,
		"cpuacct/" + cg + "/cpuacct.usage":            "2500000000\n",
		"cpuacct/" + cg + "/cpuacct.stat":             "user 150\nsystem 100\n",
		"cpuacct/" + cg + "/cpuacct.usage_percpu":     "1500000000 1000000000 \n",
		"cpu/" + cg + "/cpu.stat":                     "nr_periods 40\nnr_throttled 7\nthrottled_time 350000000\n",
	}
}

func TestStatsV1(t *testing.T) {
	const cg = "/corral/web"
	for _, tc := range []struct {
		desc  string
		files map[string]string
		want  Stats
	}{
		{
			desc:  "limits and counters",
			files: v1Files(cg, "67108864\n", "100\n", "max 5\n", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
			want: Stats{
				MemoryUsage: 5 << 20, MemoryMaxUsage: 8 << 20, MemoryLimit: 64 << 20, OOMKills: 2,
				PidsCurrent: 3, PidsLimit: 100, PidsLimitHits: 5,
				CPUUsage: 2500 * time.Millisecond, CPUThrottled: 350 * time.Millisecond, ThrottledPeriods: 7,
			},
		},
		{
			desc:  "no limits",
			files: v1Files(cg, "9223372036854771712\n", "max\n", "max 0\n", "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n"),
			want: Stats{
				MemoryUsage: 5 << 20, MemoryMaxUsage: 8 << 20, MemoryLimit: 0, OOMKills: 0,
				PidsCurrent: 3, PidsLimit: 0, PidsLimitHits: 0,
				CPUUsage: 2500 * time.Millisecond, CPUThrottled: 350 * time.Millisecond, ThrottledPeriods: 7,
			},
		},
		{
			desc: "older kernel: no oom_kill line, no pids.events",
			files: func() map[string]string {
				f := v1Files(cg, "67108864\n", "64\n", "", "oom_kill_disable 0\nunder_oom 0\n")
				delete(f, "pids/"+cg+"/pids.events")
				return f
			}(),
			want: Stats{
				MemoryUsage: 5 << 20, MemoryMaxUsage: 8 << 20, MemoryLimit: 64 << 20,
				PidsCurrent: 3, PidsLimit: 64,
				CPUUsage: 2500 * time.Millisecond, CPUThrottled: 350 * time.Millisecond, ThrottledPeriods: 7,
			},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.files)
			got, err := v1Host(root).Stats(cg)
			if err != nil {
				t.Fatalf("Stats: %v", err)
			}
			if got != tc.want {
				t.Errorf("Stats =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

func TestStatsV1WithSwapAccounting(t *testing.T) {
	// With memsw files present the usage must still be the memory one.
	const cg = "/corral/web"
	root := t.TempDir()
	files := v1Files(cg, "67108864\n", "100\n", "max 1\n", "oom_kill 1\n")
	for _, mod := range []string{"memsw", "kmem", "kmem.tcp"} {
		for name, v := range map[string]string{"usage_in_bytes": "999\n", "max_usage_in_bytes": "999\n", "failcnt": "0\n", "limit_in_bytes": "999\n"} {
			files["memory/"+cg+"/memory."+mod+"."+name] = v
		}
	}
	writeTree(t, root, files)
	got, err := v1Host(root).Stats(cg)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got.MemoryUsage != 5<<20 || got.MemoryMaxUsage != 8<<20 || got.MemoryLimit != 64<<20 || got.OOMKills != 1 || got.PidsLimitHits != 1 {
		t.Errorf("Stats = %+v, want the memory (not memsw/kmem) values, 1 OOM kill, 1 pids hit", got)
	}
}

func TestStatsV1PartlyGone(t *testing.T) {
	// Only the memory cgroup is left: its counters are read, the rest
	// are zero, and that is no error.
	const cg = "/corral/web"
	root := t.TempDir()
	files := v1Files(cg, "67108864\n", "100\n", "max 5\n", "oom_kill 3\n")
	for name := range files {
		if !strings.HasPrefix(name, "memory/") {
			delete(files, name)
		}
	}
	writeTree(t, root, files)
	got, err := v1Host(root).Stats(cg)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	want := Stats{MemoryUsage: 5 << 20, MemoryMaxUsage: 8 << 20, MemoryLimit: 64 << 20, OOMKills: 3}
	if got != want {
		t.Errorf("Stats = %+v, want %+v", got, want)
	}
}

func TestStatsV1EmptyDirs(t *testing.T) {
	// Cgroup directories with no files in them (a controller that does not
	// account for anything): zero counters, no error.
	const cg = "/corral/web"
	root := t.TempDir()
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct"} {
		if err := os.MkdirAll(filepath.Join(root, c, cg), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	got, err := v1Host(root).Stats(cg)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got != (Stats{}) {
		t.Errorf("Stats = %+v, want all zero", got)
	}
}

func TestStatsV1Gone(t *testing.T) {
	root := t.TempDir()
	for _, c := range []string{"memory", "pids", "cpu", "cpuacct"} {
		if err := os.MkdirAll(filepath.Join(root, c), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	_, err := v1Host(root).Stats("/corral/gone")
	if err == nil || !strings.Contains(err.Error(), "/corral/gone") {
		t.Errorf("Stats of a removed v1 cgroup: error %v, want one naming the cgroup", err)
	}
}

func TestStatsV1Malformed(t *testing.T) {
	const cg = "/corral/web"
	for _, tc := range []struct {
		file, content string
	}{
		{"memory/" + cg + "/memory.oom_control", "oom_kill x\n"},
		{"memory/" + cg + "/memory.usage_in_bytes", "lots\n"},
		{"pids/" + cg + "/pids.events", "max many\n"},
		{"pids/" + cg + "/pids.current", "three\n"},
		{"cpu/" + cg + "/cpu.stat", "throttled_time\n"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			root := t.TempDir()
			files := v1Files(cg, "67108864\n", "100\n", "max 5\n", "oom_kill 2\n")
			files[tc.file] = tc.content
			writeTree(t, root, files)
			if got, err := v1Host(root).Stats(cg); err == nil {
				t.Errorf("Stats with %s = %q: %+v, want an error", tc.file, tc.content, got)
			}
		})
	}
}

// v2Files is a v2 sandbox cgroup at cg with the given values.
func v2Files(cg, memMax, pidsMax string) map[string]string {
	cg = strings.TrimPrefix(cg, "/")
	return map[string]string{
		cg + "/memory.stat":    "anon 1048576\nfile 4096\n",
		cg + "/memory.current": "5242880\n",
		cg + "/memory.peak":    "8388608\n",
		cg + "/memory.max":     memMax,
		cg + "/memory.events":  "low 0\nhigh 0\nmax 12\noom 2\noom_kill 1\noom_group_kill 0\n",
		cg + "/pids.current":   "3\n",
		cg + "/pids.max":       pidsMax,
		cg + "/pids.events":    "max 5\n",
		cg + "/cpu.stat":       "usage_usec 2500000\nuser_usec 1500000\nsystem_usec 1000000\nnr_periods 40\nnr_throttled 7\nthrottled_usec 350000\n",
	}
}

func v2Host(root string) *Host {
	h := &Host{Mode: Unified, Mounts: map[string]string{}, Roots: []string{root}}
	for _, c := range []string{"cpuset", "cpu", "io", "memory", "pids"} {
		h.Mounts[c] = root
	}
	return h
}

func TestStatsV2(t *testing.T) {
	const cg = "/corral/web"
	for _, tc := range []struct {
		desc  string
		files map[string]string
		want  Stats
	}{
		{
			desc:  "limits and counters",
			files: v2Files(cg, "67108864\n", "100\n"),
			want: Stats{
				MemoryUsage: 5 << 20, MemoryMaxUsage: 8 << 20, MemoryLimit: 64 << 20, OOMKills: 1,
				PidsCurrent: 3, PidsLimit: 100, PidsLimitHits: 5,
				CPUUsage: 2500 * time.Millisecond, CPUThrottled: 350 * time.Millisecond, ThrottledPeriods: 7,
			},
		},
		{
			desc: "the whole cgroup OOM-killed (memory.oom.group)",
			files: func() map[string]string {
				f := v2Files(cg, "67108864\n", "100\n")
				f["corral/web/memory.events"] = "low 0\nhigh 0\nmax 40\noom 1\noom_kill 3\noom_group_kill 1\n"
				return f
			}(),
			want: Stats{
				MemoryUsage: 5 << 20, MemoryMaxUsage: 8 << 20, MemoryLimit: 64 << 20, OOMKills: 3, OOMGroupKills: 1,
				PidsCurrent: 3, PidsLimit: 100, PidsLimitHits: 5,
				CPUUsage: 2500 * time.Millisecond, CPUThrottled: 350 * time.Millisecond, ThrottledPeriods: 7,
			},
		},
		{
			desc: "no memory limit, no peak (kernel before 5.19), no events",
			files: func() map[string]string {
				f := v2Files(cg, "max\n", "100\n")
				delete(f, "corral/web/memory.peak")
				delete(f, "corral/web/memory.events")
				delete(f, "corral/web/pids.events")
				return f
			}(),
			want: Stats{
				MemoryUsage: 5 << 20, MemoryLimit: 0,
				PidsCurrent: 3, PidsLimit: 100,
				CPUUsage: 2500 * time.Millisecond, CPUThrottled: 350 * time.Millisecond, ThrottledPeriods: 7,
			},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.files)
			got, err := v2Host(root).Stats(cg)
			if err != nil {
				t.Fatalf("Stats: %v", err)
			}
			if got != tc.want {
				t.Errorf("Stats =\n %+v\nwant\n %+v", got, tc.want)
			}
		})
	}
}

func TestStatsV2NoPidsLimit(t *testing.T) {
	const cg = "/corral/web"
	root := t.TempDir()
	writeTree(t, root, v2Files(cg, "max\n", "max\n"))
	got, err := v2Host(root).Stats(cg)
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if got.PidsLimit != 0 {
		t.Errorf("PidsLimit = %d for pids.max \"max\", want 0 (no limit)", got.PidsLimit)
	}
	if got.MemoryLimit != 0 {
		t.Errorf("MemoryLimit = %d for memory.max \"max\", want 0 (no limit)", got.MemoryLimit)
	}
}

func TestStatsV2Gone(t *testing.T) {
	// On v2 the counters of a removed cgroup read as zero, without error.
	got, err := v2Host(t.TempDir()).Stats("/corral/gone")
	if err != nil {
		t.Fatalf("Stats of a removed v2 cgroup: %v", err)
	}
	if got != (Stats{}) {
		t.Errorf("Stats of a removed v2 cgroup = %+v, want all zero", got)
	}
}

func TestStatsV2Malformed(t *testing.T) {
	const cg = "/corral/web"
	for _, tc := range []struct {
		file, content string
	}{
		{"corral/web/memory.events", "oom_kill x\n"},
		{"corral/web/memory.stat", "anon\n"},
		{"corral/web/cpu.stat", "usage_usec lots\n"},
		{"corral/web/pids.events", "max many\n"},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			root := t.TempDir()
			files := v2Files(cg, "67108864\n", "100\n")
			files[tc.file] = tc.content
			writeTree(t, root, files)
			if got, err := v2Host(root).Stats(cg); err == nil {
				t.Errorf("Stats with %s = %q: %+v, want an error", tc.file, tc.content, got)
			}
		})
	}
}

func TestStatsV2BadPath(t *testing.T) {
	// containerd refuses a group path that is not absolute and clean.
	for _, p := range []string{"corral/web", "/corral/../web"} {
		if _, err := v2Host(t.TempDir()).Stats(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Stats(%q): error %v, want one naming the path", p, err)
		}
	}
}

func TestExistsAndMissing(t *testing.T) {
	root := t.TempDir()
	mem := filepath.Join(root, "memory")
	if err := os.MkdirAll(filepath.Join(mem, "corral"), 0o755); err != nil {
		t.Fatal(err)
	}
	// Other hierarchies do not count: only the memory one is asked.
	if err := os.MkdirAll(filepath.Join(root, "pids", "corral", "a"), 0o755); err != nil {
		t.Fatal(err)
	}
	h := &Host{Mode: Hybrid, Mounts: map[string]string{"memory": mem, "pids": filepath.Join(root, "pids")}}
	for _, tc := range []struct {
		path   string
		exists bool
		miss   []string
	}{
		{"/corral/a/b", false, []string{"/corral/a/b", "/corral/a"}},
		{"/corral/a/b/", false, []string{"/corral/a/b", "/corral/a"}},
		{"/corral/a", false, []string{"/corral/a"}},
		{"/corral", true, nil},
		{"/corral/", true, nil},
		{"/", true, nil},
		{"/other/x", false, []string{"/other/x", "/other"}},
	} {
		if got := h.Exists(tc.path); got != tc.exists {
			t.Errorf("Exists(%q) = %v, want %v", tc.path, got, tc.exists)
		}
		if got := h.Missing(tc.path); !slices.Equal(got, tc.miss) {
			t.Errorf("Missing(%q) = %q, want %q", tc.path, got, tc.miss)
		}
	}
}

func TestRemoveEmpty(t *testing.T) {
	base := t.TempDir()
	empty := filepath.Join(base, "memory")    // the cgroup is there, empty
	busy := filepath.Join(base, "pids")       // the cgroup has a child
	absent := filepath.Join(base, "cpu")      // no such cgroup
	missing := filepath.Join(base, "nothing") // not even the root
	for _, d := range []string{
		filepath.Join(empty, "corral", "web"),
		filepath.Join(busy, "corral", "web", "child"),
		absent,
	} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	h := &Host{Mode: Hybrid, Roots: []string{empty, busy, absent, missing}}
	if err := h.RemoveEmpty("/corral/web"); err != nil {
		t.Fatalf("RemoveEmpty: %v", err)
	}
	if _, err := os.Stat(filepath.Join(empty, "corral", "web")); !os.IsNotExist(err) {
		t.Errorf("empty cgroup still there (stat error %v)", err)
	}
	if _, err := os.Stat(filepath.Join(empty, "corral")); err != nil {
		t.Errorf("the parent was removed too: %v", err)
	}
	if _, err := os.Stat(filepath.Join(busy, "corral", "web", "child")); err != nil {
		t.Errorf("a cgroup in use was touched: %v", err)
	}
	// Again: everything gone or busy, still no error.
	if err := h.RemoveEmpty("/corral/web"); err != nil {
		t.Errorf("second RemoveEmpty: %v", err)
	}
}

func TestRemoveEmptyReportsOtherErrors(t *testing.T) {
	base := t.TempDir()
	good := filepath.Join(base, "memory")
	bad := filepath.Join(base, "pids")
	if err := os.MkdirAll(filepath.Join(good, "corral", "web"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A file where the cgroup's parent should be: ENOTDIR.
	writeTree(t, bad, map[string]string{"corral": "not a directory"})
	h := &Host{Mode: Hybrid, Roots: []string{bad, good}}
	err := h.RemoveEmpty("/corral/web")
	if err == nil {
		t.Fatal("RemoveEmpty through a file: no error")
	}
	if !strings.Contains(err.Error(), "/corral/web") || !strings.Contains(err.Error(), bad) {
		t.Errorf("error %q does not name the cgroup and the hierarchy %s", err, bad)
	}
	if strings.Contains(err.Error(), good) {
		t.Errorf("error %q names the hierarchy where removal worked", err)
	}
	// The error did not stop the other hierarchies.
	if _, err := os.Stat(filepath.Join(good, "corral", "web")); !os.IsNotExist(err) {
		t.Errorf("cgroup in %s not removed after an error in %s", good, bad)
	}
}

func TestProcs(t *testing.T) {
	root := t.TempDir()
	pids := filepath.Join(root, "pids")
	writeTree(t, pids, map[string]string{
		"corral/web/cgroup.procs":   "1\n22\n333\n",
		"corral/empty/cgroup.procs": "",
		"corral/odd/cgroup.procs":   "  7 \n\nx\n8\n",
	})
	// The memory hierarchy is not asked.
	writeTree(t, filepath.Join(root, "memory"), map[string]string{"corral/web/cgroup.procs": "999\n"})
	h := &Host{Mode: Hybrid, Mounts: map[string]string{"pids": pids, "memory": filepath.Join(root, "memory")}}
	for _, tc := range []struct {
		path string
		want []int
	}{
		{"/corral/web", []int{1, 22, 333}},
		{"/corral/empty", nil},
		{"/corral/odd", []int{7, 8}},
		{"/corral/gone", nil},
	} {
		got, err := h.Procs(tc.path)
		if err != nil {
			t.Errorf("Procs(%q): %v", tc.path, err)
			continue
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Procs(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
	// cgroup.procs that cannot be read is an error.
	if err := os.MkdirAll(filepath.Join(pids, "corral", "dir", "cgroup.procs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if got, err := h.Procs("/corral/dir"); err == nil {
		t.Errorf("Procs of an unreadable cgroup.procs = %v, want an error", got)
	}
}

func TestCheck(t *testing.T) {
	all := map[string]string{"memory": "/m", "cpu": "/c", "pids": "/p"}
	for _, tc := range []struct {
		desc     string
		h        Host
		mentions []string // nil: no error
	}{
		{"v1 all there", Host{Mode: Hybrid, Mounts: all}, nil},
		{"v2 all there", Host{Mode: Unified, Mounts: map[string]string{"memory": "/", "cpu": "/", "pids": "/", "io": "/"}}, nil},
		{
			"v1 without pids",
			Host{Mode: Hybrid, Mounts: map[string]string{"memory": "/m", "cpu": "/c", "cpuacct": "/c"}},
			[]string{": pids: ", "no v1 hierarchy with it is mounted", "memory, cpu, pids controllers"},
		},
		{
			"v1 legacy without memory and pids",
			Host{Mode: Legacy, Mounts: map[string]string{"cpu": "/c"}},
			[]string{": memory, pids: ", "no v1 hierarchy"},
		},
		{
			"v2 without cpu",
			Host{Mode: Unified, Mounts: map[string]string{"memory": "/", "pids": "/"}},
			[]string{": cpu: ", "not listed in /sys/fs/cgroup/cgroup.controllers"},
		},
		{
			"nothing",
			Host{Mode: Hybrid, Mounts: map[string]string{}},
			[]string{": memory, cpu, pids: "},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			err := tc.h.check()
			if tc.mentions == nil {
				if err != nil {
					t.Errorf("check: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrMissingController) {
				t.Fatalf("check error %v, want ErrMissingController", err)
			}
			for _, m := range tc.mentions {
				if !strings.Contains(err.Error(), m) {
					t.Errorf("check error %q does not mention %q", err, m)
				}
			}
		})
	}
}

func TestStatsV1HugeLimitIsNone(t *testing.T) {
	// A v1 memory.limit_in_bytes can never read as a huge value that is
	// taken for a limit: anything at or above 1<<62 is "none".
	const cg = "/corral/web"
	for _, v := range []string{"4611686018427387904\n", "9223372036854775807\n"} {
		root := t.TempDir()
		writeTree(t, root, v1Files(cg, v, "100\n", "max 0\n", "oom_kill 0\n"))
		got, err := v1Host(root).Stats(cg)
		if err != nil {
			t.Fatal(err)
		}
		if got.MemoryLimit != 0 {
			t.Errorf("limit_in_bytes %q: MemoryLimit = %d, want 0", strings.TrimSpace(v), got.MemoryLimit)
		}
	}
	if limit(math.MaxUint64) != 0 {
		t.Error("limit(MaxUint64) != 0")
	}
}

// TestUsageMatchesStats: the light reader for scrapes gives the same live
// figures as Stats, on v1 and v2, with and without limits, and zeros for
// a cgroup that is gone.
func TestUsageMatchesStats(t *testing.T) {
	const cg = "/corral/web"
	for _, tc := range []struct {
		desc  string
		host  func(root string) *Host
		files map[string]string
	}{
		{"v1 with limits", v1Host, v1Files(cg, "67108864\n", "100\n", "max 5\n", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n")},
		{"v1 without limits", v1Host, v1Files(cg, "9223372036854771712\n", "max\n", "max 0\n", "oom_kill 0\n")},
		{"v2 with limits", v2Host, v2Files(cg, "67108864\n", "100\n")},
		{"v2 without limits", v2Host, v2Files(cg, "max\n", "max\n")},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.files)
			h := tc.host(root)
			want, err := h.Stats(cg)
			if err != nil {
				t.Fatal(err)
			}
			want.MemoryMaxUsage = 0
			got, err := h.Usage(cg)
			if err != nil || got != want {
				t.Errorf("Usage = %+v, %v\nStats = %+v", got, err, want)
			}
			if gone, err := h.Usage("/corral/gone"); err != nil || gone != (Stats{}) {
				t.Errorf("Usage of a cgroup that is gone = %+v, %v", gone, err)
			}
		})
	}
}
