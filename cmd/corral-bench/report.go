package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// goalRatio is the target for corral's median start-to-exit time as a
// fraction of runc's with the same isolation and Docker's profile.
const goalRatio = 0.50

type toolVersion struct {
	Tool    string `json:"tool"`
	Version string `json:"version"`
}

type machine struct {
	CPUs       int           `json:"nproc"`
	CPUModel   string        `json:"cpu_model"`
	MemoryMB   int64         `json:"memory_mb"`
	Kernel     string        `json:"kernel"`
	CgroupMode string        `json:"cgroup_mode"`
	Load       string        `json:"loadavg"`
	Scratch    string        `json:"scratch"`
	Versions   []toolVersion `json:"versions"`
}

func describeMachine(o *options, sc *scratch) machine {
	var uts unix.Utsname
	kernel := "unknown"
	if unix.Uname(&uts) == nil {
		kernel = unix.ByteSliceToString(uts.Release[:])
	}
	return machine{
		CPUs:       runtime.NumCPU(),
		CPUModel:   cpuModel(),
		MemoryMB:   memTotalMB(),
		Kernel:     kernel,
		CgroupMode: cgroupMode(),
		Load:       loadAvg(),
		// Every state dir is in the scratch dir: corral writes its
		// records there with fsync, so its filesystem matters.
		Scratch: sc.dir + " (" + fsType(sc.dir) + ")",
		Versions: []toolVersion{
			{"corral", versionOf(o.corral, "--version")},
			{"runc", runcVersion(o.runc)},
			{"crun", versionOf(o.crun, "--version")},
			{"unshare", versionOf("unshare", "--version")},
			{"busybox", versionOf("busybox")},
			{"supervisord", versionOf("supervisord", "--version")},
			{"s6", debianVersion("s6")},
			{"corral-bench", runtime.Version()},
		},
	}
}

// cpuModel is the first "model name" of /proc/cpuinfo.
func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for _, l := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotalMB() int64 {
	var si unix.Sysinfo_t
	if unix.Sysinfo(&si) != nil {
		return 0
	}
	return int64(si.Totalram) * int64(si.Unit) >> 20
}

// loadAvg is the 1, 5 and 15 minute load averages when the bench began:
// a busy machine shows here.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// printLoad shows how much CPU other processes on the machine used during
// a part (since the snapshot since, taken at its start) and the load
// averages after it, and returns that share of the machine's CPU. since
// becomes the snapshot for the next part.
func printLoad(part string, since *othersSnapshot) float64 {
	now := snapshotOthers()
	used := othersCPU(*since, now)
	avail := now.at.Sub(since.at).Seconds() * float64(runtime.NumCPU())
	fmt.Printf("(during the %s part other processes used %.1f CPU-s of %.0f (%.0f%%); load average after it: %s)\n",
		part, used, avail, 100*used/avail, loadAvg())
	*since = now
	return used / avail
}

// fsType names the filesystem holding path, as the mount table does.
func fsType(path string) string {
	mounts, err := mountinfo.GetMounts(nil)
	if err != nil {
		return "unknown"
	}
	best, typ := "", "unknown"
	for _, m := range mounts {
		if within(path, m.Mountpoint) && len(m.Mountpoint) >= len(best) {
			best, typ = m.Mountpoint, m.FSType
		}
	}
	return typ
}

// debianVersion is the installed version of a Debian package, for tools
// that print none (s6's programs have no --version).
func debianVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil || len(out) == 0 {
		return "unknown (not a Debian package here)"
	}
	return string(out)
}

// cgroupMode names the host's cgroup layout from the filesystem types
// mounted at /sys/fs/cgroup and /sys/fs/cgroup/unified.
func cgroupMode() string {
	var st unix.Statfs_t
	if unix.Statfs("/sys/fs/cgroup", &st) != nil {
		return "unknown"
	}
	if st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v2 (unified)"
	}
	if unix.Statfs(unifiedMount, &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC {
		return "v1 (hybrid)"
	}
	return "v1"
}

// versionOf is the first line `tool args...` prints, or why there is none.
func versionOf(tool string, args ...string) string {
	if tool == "" {
		return "skipped"
	}
	out, err := exec.Command(tool, args...).CombinedOutput()
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	switch {
	case first != "":
		return first
	case err != nil:
		return "unavailable (" + err.Error() + ")"
	}
	return "unknown"
}

// runcVersion adds the libseccomp version runc was built with: seccomp
// filter compilation is a large part of a start.
func runcVersion(runc string) string {
	out, err := exec.Command(runc, "--version").Output()
	if err != nil {
		return "unavailable (" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	v := lines[0]
	for _, l := range lines[1:] {
		if strings.HasPrefix(l, "libseccomp:") {
			v += ", " + l
		}
	}
	return v
}

func printMachine(w io.Writer, m machine) {
	fmt.Fprintf(w, "machine: nproc %d (%s), %d MiB RAM, kernel %s, cgroups %s, load %s\n", m.CPUs, m.CPUModel, m.MemoryMB, m.Kernel, m.CgroupMode, m.Load)
	fmt.Fprintf(w, "  %-13s %s\n", "scratch:", m.Scratch)
	for _, v := range m.Versions {
		fmt.Fprintf(w, "  %-13s %s\n", v.Tool+":", v.Version)
	}
}

type variantResult struct {
	Name    string   `json:"name"`
	Note    string   `json:"note"`
	Command []string `json:"command"`
	stats
	// VsRunc is the median over runc's median.
	VsRunc    float64   `json:"vs_runc"`
	SamplesMS []float64 `json:"samples_ms"`
}

// results are everything the bench measured, for --json.
type results struct {
	Time    time.Time      `json:"time"`
	Machine machine        `json:"machine"`
	Cold    *report        `json:"cold,omitempty"`
	Restart *restartReport `json:"restart,omitempty"`
	Scale   *scaleReport   `json:"scale,omitempty"`
	// OthersCPU is, for each part, the share of the machine's CPU that
	// processes other than the bench's used while it ran.
	OthersCPU map[string]float64 `json:"others_cpu_share"`
}

// report is the cold start-to-exit part's.
type report struct {
	Warmup   int             `json:"warmup_rounds"`
	Rounds   int             `json:"rounds"`
	Variants []variantResult `json:"variants"`
	Goal     float64         `json:"goal_ratio"`
}

func newReport(o *options, variants []*variant, samples [][]time.Duration) *report {
	r := &report{Warmup: o.warmup, Rounds: o.rounds, Goal: goalRatio}
	for i, v := range variants {
		vr := variantResult{Name: v.name, Note: v.note, Command: v.argv(1), stats: summarize(samples[i])}
		for _, d := range samples[i] {
			vr.SamplesMS = append(vr.SamplesMS, float64(d)/float64(time.Millisecond))
		}
		r.Variants = append(r.Variants, vr)
	}
	runc := r.find("runc")
	for i := range r.Variants {
		if runc != nil && runc.MedianMS > 0 {
			r.Variants[i].VsRunc = r.Variants[i].MedianMS / runc.MedianMS
		}
	}
	return r
}

func (r *report) find(name string) *variantResult {
	for i := range r.Variants {
		if r.Variants[i].Name == name {
			return &r.Variants[i]
		}
	}
	return nil
}

func (r *report) print(w io.Writer) {
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Cold start-to-exit of /bin/true (memory 64M, 0.5 CPU, 64 pids)")
	fmt.Fprintf(w, "%-24s %5s %10s %8s %8s %8s  %s\n", "variant", "runs", "median ms", "p95 ms", "min ms", "vs runc", "notes")
	for _, v := range r.Variants {
		fmt.Fprintf(w, "%-24s %5d %10.2f %8.2f %8.2f %8.2f  %s\n", v.Name, v.Runs, v.MedianMS, v.P95MS, v.MinMS, v.VsRunc, v.Note)
	}
	fmt.Fprintln(w)
	// The goal is judged on the same busybox root as runc's; the built-in
	// root (what `corral run` gives without --rootfs) is shown beside it.
	if v := r.find("corral --rootfs busybox"); v != nil {
		fmt.Fprintf(w, "corral/runc median ratio: %.2f (goal <= %.2f)  [corral --rootfs busybox vs runc, same root]\n", v.VsRunc, r.Goal)
	}
	if v := r.find("corral (host root)"); v != nil {
		fmt.Fprintf(w, "corral (host root)/runc median ratio: %.2f (goal <= %.2f)\n", v.VsRunc, r.Goal)
	}
	fmt.Fprintln(w, "\ncommands (run 1):")
	for _, v := range r.Variants {
		fmt.Fprintf(w, "  %-24s %s\n", v.Name+":", strings.Join(v.Command, " "))
	}
}

func (r *results) writeJSON(path string) error {
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode results: %w", err)
	}
	if err := os.WriteFile(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write results: %w", err)
	}
	return nil
}
