// Package isolation is corral's hardening policy: given the runtime-spec a
// service asked for, it adds what every sandbox gets unless the service
// explicitly loosens it — namespaces, an empty capability set,
// no_new_privileges, seccomp, masked and read-only kernel paths, private
// /dev, /tmp and /run, and a read-only root.
package isolation

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"

	mobyseccomp "github.com/moby/profiles/seccomp"
	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/corral-dev/corral/spec"
)

// MaskedPaths are hidden from the sandbox (bound over with /dev/null or an
// empty read-only tmpfs): the union of what Docker, Podman and runc mask,
// because each of these leaks host information or offers kernel attack
// surface to a process that has no business with it.
var MaskedPaths = []string{
	"/proc/acpi",
	"/proc/asound",
	"/proc/interrupts",
	"/proc/kcore",
	"/proc/keys",
	"/proc/latency_stats",
	"/proc/sched_debug",
	"/proc/scsi",
	"/proc/timer_list",
	"/proc/timer_stats",
	"/sys/dev/block",
	"/sys/devices/virtual/powercap",
	"/sys/firmware",
	"/sys/fs/selinux",
	"/sys/kernel/security",
}

// ReadonlyPaths stay visible but cannot be written, as in Docker.
var ReadonlyPaths = []string{
	"/proc/bus",
	"/proc/fs",
	"/proc/irq",
	"/proc/sys",
	"/proc/sysrq-trigger",
}

// ErrNoNativeArch is returned on an architecture whose seccomp name corral
// does not know, so it cannot restrict the profile to it.
var ErrNoNativeArch = errors.New("no native seccomp architecture known for " + runtime.GOARCH)

// nativeArch maps GOARCH to libseccomp's name for it.
var nativeArch = map[string]rspec.Arch{
	"amd64":   rspec.ArchX86_64,
	"arm64":   rspec.ArchAARCH64,
	"386":     rspec.ArchX86,
	"arm":     rspec.ArchARM,
	"ppc64le": rspec.ArchPPC64LE,
	"s390x":   rspec.ArchS390X,
	"riscv64": rspec.ArchRISCV64,
}

// Harden adds corral's hardening to s, keeping only the loosenings that
// sec asks for. s must already have its Process, Root and Linux set.
func Harden(s *rspec.Spec, sec spec.Security) error {
	if s.Process == nil || s.Root == nil || s.Linux == nil {
		return errors.New("harden: spec needs process, root and linux sections")
	}
	caps, err := capabilities(sec.CapAdd)
	if err != nil {
		return err
	}
	s.Process.Capabilities = caps
	s.Process.NoNewPrivileges = true
	s.Root.Readonly = !sec.WritableRoot

	s.Mounts = append(standardMounts(), s.Mounts...)
	s.Linux.MaskedPaths = append([]string(nil), MaskedPaths...)
	s.Linux.ReadonlyPaths = append([]string(nil), ReadonlyPaths...)
	if s.Linux.Resources == nil {
		s.Linux.Resources = &rspec.LinuxResources{}
	}
	// Deny every device; the runtime then allows only its minimal set
	// (null, zero, full, random, urandom, tty, ptmx).
	s.Linux.Resources.Devices = []rspec.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}

	switch sec.Seccomp {
	case "", spec.SeccompDefault:
		s.Linux.Seccomp, err = DefaultSeccomp(s)
	case spec.SeccompUnconfined:
		s.Linux.Seccomp = nil
	default:
		s.Linux.Seccomp, err = seccompFromFile(sec.Seccomp, s)
	}
	return err
}

// DefaultSeccomp is Docker's default profile (moby/profiles) restricted to
// the native architecture. The restriction is deliberate: the 32-bit
// syscall ABIs are a classic way around filters and kernel bugs, and
// compiling rules for three ABIs makes every sandbox start ~25 ms slower.
// A 32-bit syscall from the sandbox then kills the caller with SIGSYS.
func DefaultSeccomp(s *rspec.Spec) (*rspec.LinuxSeccomp, error) {
	arch, ok := nativeArch[runtime.GOARCH]
	if !ok {
		return nil, ErrNoNativeArch
	}
	profile, err := mobyseccomp.GetDefaultProfile(s)
	if err != nil {
		return nil, fmt.Errorf("build default seccomp profile: %w", err)
	}
	profile.Architectures = []rspec.Arch{arch}
	return profile, nil
}

func seccompFromFile(path string, s *rspec.Spec) (*rspec.LinuxSeccomp, error) {
	body, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read seccomp profile: %w", err)
	}
	profile, err := mobyseccomp.LoadProfile(string(body), s)
	if err != nil {
		return nil, fmt.Errorf("seccomp profile %s: %w", path, err)
	}
	// moby reads a profile without a default action (e.g. "{}", or keys
	// misspelt) as "no profile": that must not silently mean unconfined.
	if profile == nil || profile.DefaultAction == "" {
		return nil, fmt.Errorf("seccomp profile %s: no defaultAction: not a seccomp profile in Docker's format (use --seccomp unconfined to run without one)", path)
	}
	return profile, nil
}

// capabilities gives the sandbox exactly the added capabilities, in the
// bounding, effective and permitted sets (as Docker does); never
// inheritable or ambient. The struct is never nil: the seccomp profile
// reads it to decide which capability-guarded syscalls to allow.
func capabilities(add []string) (*rspec.LinuxCapabilities, error) {
	var names []string
	seen := map[string]bool{}
	for _, a := range add {
		caps, err := spec.ParseCapability(a)
		if err != nil {
			return nil, err
		}
		for _, c := range caps {
			if !seen[c] {
				seen[c] = true
				names = append(names, c)
			}
		}
	}
	return &rspec.LinuxCapabilities{
		Bounding:  names,
		Effective: names,
		Permitted: names,
	}, nil
}

// standardMounts are the kernel filesystems and private scratch space of
// every sandbox. /sys and the cgroup tree are read-only; /tmp and /run are
// small private tmpfs so a writable scratch area exists under a read-only
// root without letting the sandbox fill the host's disk.
func standardMounts() []rspec.Mount {
	size := func(n int64) string { return "size=" + strconv.FormatInt(n, 10) }
	return []rspec.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
		{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: []string{"nosuid", "noexec", "nodev", "relatime", "ro"}},
		{Destination: "/tmp", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=1777", size(spec.DefaultTmpSize)}},
		{Destination: "/run", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "nodev", "mode=755", size(spec.DefaultRunSize)}},
	}
}
