// Package machine describes where the bench ran: CPUs, memory, kernel,
// cgroup layout, load, the versions of the tools compared, and how much
// CPU other processes on the machine used while each part ran. On a
// shared machine, a part that ran beside a busy job is to be run again.
package machine

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/integration/bench/cgroupfs"
	"github.com/corral-dev/corral/integration/bench/procfs"
)

// ToolVersion is one line of the versions table.
type ToolVersion struct {
	Tool    string `json:"tool"`
	Version string `json:"version"`
}

// Machine is the description, as --json writes it.
type Machine struct {
	CPUs       int           `json:"nproc"`
	CPUModel   string        `json:"cpu_model"`
	MemoryMB   int64         `json:"memory_mb"`
	Kernel     string        `json:"kernel"`
	CgroupMode string        `json:"cgroup_mode"`
	Load       string        `json:"loadavg"`
	Scratch    string        `json:"scratch"`
	Versions   []ToolVersion `json:"versions"`
}

// Tools are the programs compared, as the bench was told to run them.
type Tools struct {
	Corral, Runc, Crun string
}

// Describe describes this machine now. scratch names the scratch dir and
// its filesystem: every state dir is in it, and corral writes its records
// there with fsync.
func Describe(t Tools, scratch string) Machine {
	var uts unix.Utsname
	kernel := "unknown"
	if unix.Uname(&uts) == nil {
		kernel = unix.ByteSliceToString(uts.Release[:])
	}
	return Machine{
		CPUs:       runtime.NumCPU(),
		CPUModel:   cpuModel(),
		MemoryMB:   memTotalMB(),
		Kernel:     kernel,
		CgroupMode: cgroupfs.Mode(),
		Load:       loadAvg(),
		Scratch:    scratch,
		Versions: []ToolVersion{
			{"corral", versionOf(t.Corral, "--version")},
			{"runc", runcVersion(t.Runc)},
			{"crun", versionOf(t.Crun, "--version")},
			{"unshare", versionOf("unshare", "--version")},
			{"busybox", versionOf("busybox")},
			{"supervisord", versionOf("supervisord", "--version")},
			{"s6", debianVersion("s6")},
			{"corral-bench", runtime.Version()},
		},
	}
}

// Print writes the description's lines.
func (m Machine) Print(w io.Writer) {
	fmt.Fprintf(w, "machine: nproc %d (%s), %d MiB RAM, kernel %s, cgroups %s, load %s\n", m.CPUs, m.CPUModel, m.MemoryMB, m.Kernel, m.CgroupMode, m.Load)
	fmt.Fprintf(w, "  %-13s %s\n", "scratch:", m.Scratch)
	for _, v := range m.Versions {
		fmt.Fprintf(w, "  %-13s %s\n", v.Tool+":", v.Version)
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

// loadAvg is the 1, 5 and 15 minute load averages: a busy machine shows
// here.
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

// debianVersion is the installed version of a Debian package, for tools
// that print none (s6's programs have no --version).
func debianVersion(pkg string) string {
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", pkg).Output()
	if err != nil || len(out) == 0 {
		return "unknown (not a Debian package here)"
	}
	return string(out)
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

// Others follows the CPU other processes use: those that are neither the
// bench nor its descendants (its daemons, supervisors, sandboxes).
type Others struct {
	since procfs.OthersSnapshot
}

// WatchOthers starts following them now.
func WatchOthers() *Others { return &Others{since: procfs.SnapshotOthers()} }

// PrintPart shows how much CPU other processes used during a part (since
// WatchOthers or the previous PrintPart) and the load averages after it,
// and returns that share of the machine's CPU.
func (o *Others) PrintPart(w io.Writer, part string) float64 {
	now := procfs.SnapshotOthers()
	used := procfs.OthersCPU(o.since, now).Seconds()
	avail := now.At.Sub(o.since.At).Seconds() * float64(runtime.NumCPU())
	fmt.Fprintf(w, "(during the %s part other processes used %.1f CPU-s of %.0f (%.0f%%); load average after it: %s)\n",
		part, used, avail, 100*used/avail, loadAvg())
	o.since = now
	return used / avail
}
