package isolation_test

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	rspec "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/corral-dev/corral/isolation"
	"github.com/corral-dev/corral/spec"
)

// base is the spec Harden is given in corral: the service's own part plus
// a root.
func base(t *testing.T) *rspec.Spec {
	t.Helper()
	s := spec.RuntimeSpec(&spec.Service{
		Name:    "web",
		Command: []string{"/bin/true"},
		Mounts:  []spec.Mount{{Source: "/srv/data", Destination: "/data", ReadOnly: true}},
	})
	s.Root = &rspec.Root{Path: "/var/lib/corral/roots/web"}
	return s
}

func harden(t *testing.T, sec spec.Security) *rspec.Spec {
	t.Helper()
	s := base(t)
	if err := isolation.Harden(s, sec); err != nil {
		t.Fatalf("Harden(%+v): %v", sec, err)
	}
	return s
}

func TestHardenDefaultCapabilities(t *testing.T) {
	caps := harden(t, spec.Security{}).Process.Capabilities
	if caps == nil {
		t.Fatal("capabilities = nil, want an empty set: nil would leave the runtime's defaults")
	}
	for name, set := range map[string][]string{
		"bounding": caps.Bounding, "effective": caps.Effective, "permitted": caps.Permitted,
		"inheritable": caps.Inheritable, "ambient": caps.Ambient,
	} {
		if len(set) != 0 {
			t.Errorf("%s capabilities = %q, want none", name, set)
		}
	}
}

func TestHardenCapAdd(t *testing.T) {
	for _, tc := range []struct {
		desc string
		add  []string
		want []string
	}{
		{"one", []string{"NET_BIND_SERVICE"}, []string{"CAP_NET_BIND_SERVICE"}},
		{"spellings", []string{"cap_chown", "KILL", "CAP_SETUID"}, []string{"CAP_CHOWN", "CAP_KILL", "CAP_SETUID"}},
		{"duplicates removed, first order kept", []string{"chown", "CAP_CHOWN", "kill", "Cap_Chown", "KILL"}, []string{"CAP_CHOWN", "CAP_KILL"}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			caps := harden(t, spec.Security{CapAdd: tc.add}).Process.Capabilities
			for name, set := range map[string][]string{"bounding": caps.Bounding, "effective": caps.Effective, "permitted": caps.Permitted} {
				if !slices.Equal(set, tc.want) {
					t.Errorf("%s = %q, want %q", name, set, tc.want)
				}
			}
			if len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 {
				t.Errorf("inheritable = %q, ambient = %q, want both empty", caps.Inheritable, caps.Ambient)
			}
		})
	}
}

func TestHardenCapAddAll(t *testing.T) {
	caps := harden(t, spec.Security{CapAdd: []string{"ALL", "CHOWN", "all"}}).Process.Capabilities
	all, err := spec.ParseCapability("ALL")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(caps.Bounding, all) {
		t.Errorf("bounding = %q, want every capability once: %q", caps.Bounding, all)
	}
	if len(caps.Inheritable) != 0 || len(caps.Ambient) != 0 {
		t.Errorf("inheritable = %q, ambient = %q, want both empty", caps.Inheritable, caps.Ambient)
	}
}

func TestHardenUnknownCapability(t *testing.T) {
	s := base(t)
	err := isolation.Harden(s, spec.Security{CapAdd: []string{"NET_BIND_SERVICE", "FOO"}})
	if err == nil || !strings.Contains(err.Error(), `"FOO"`) {
		t.Errorf("Harden with capability FOO: error %v, want one naming \"FOO\"", err)
	}
}

func TestHardenProcessAndRoot(t *testing.T) {
	for _, tc := range []struct {
		writable     bool
		wantReadonly bool
	}{
		{false, true},
		{true, false},
	} {
		s := harden(t, spec.Security{WritableRoot: tc.writable})
		if !s.Process.NoNewPrivileges {
			t.Errorf("WritableRoot %v: NoNewPrivileges = false, want true", tc.writable)
		}
		if s.Root.Readonly != tc.wantReadonly {
			t.Errorf("WritableRoot %v: Root.Readonly = %v, want %v", tc.writable, s.Root.Readonly, tc.wantReadonly)
		}
		if s.Root.Path != "/var/lib/corral/roots/web" {
			t.Errorf("Root.Path changed to %q", s.Root.Path)
		}
	}
}

func TestHardenMaskedAndReadonlyPaths(t *testing.T) {
	s := harden(t, spec.Security{})
	for _, p := range []string{"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug", "/proc/acpi", "/proc/scsi", "/sys/firmware", "/sys/kernel/security"} {
		if !slices.Contains(s.Linux.MaskedPaths, p) {
			t.Errorf("masked paths lack %s: %q", p, s.Linux.MaskedPaths)
		}
	}
	for _, p := range []string{"/proc/sys", "/proc/sysrq-trigger", "/proc/bus", "/proc/fs", "/proc/irq"} {
		if !slices.Contains(s.Linux.ReadonlyPaths, p) {
			t.Errorf("read-only paths lack %s: %q", p, s.Linux.ReadonlyPaths)
		}
	}
	// The spec gets copies: changing it must not change the package's lists.
	s.Linux.MaskedPaths[0] = "/changed"
	s.Linux.ReadonlyPaths[0] = "/changed"
	if isolation.MaskedPaths[0] == "/changed" || isolation.ReadonlyPaths[0] == "/changed" {
		t.Error("the spec's masked or read-only paths share the package's slice")
	}
}

func TestHardenDevices(t *testing.T) {
	d := harden(t, spec.Security{}).Linux.Resources.Devices
	want := []rspec.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}
	if len(d) != 1 || d[0].Allow != want[0].Allow || d[0].Access != want[0].Access || d[0].Type != "" || d[0].Major != nil || d[0].Minor != nil {
		t.Errorf("devices = %+v, want only a deny-all rule %+v", d, want)
	}
}

func mountAt(mounts []rspec.Mount, dst string) (rspec.Mount, int) {
	for i, m := range mounts {
		if m.Destination == dst {
			return m, i
		}
	}
	return rspec.Mount{}, -1
}

func TestHardenStandardMounts(t *testing.T) {
	s := harden(t, spec.Security{})
	for _, tc := range []struct {
		dst, typ string
		opts     []string // each must be present
		notOpts  []string // none may be present
	}{
		{"/proc", "proc", []string{"nosuid", "noexec", "nodev"}, nil},
		{"/dev", "tmpfs", []string{"nosuid", "mode=755"}, nil},
		{"/dev/pts", "devpts", []string{"nosuid", "noexec", "newinstance"}, nil},
		{"/dev/shm", "tmpfs", []string{"nosuid", "noexec", "nodev"}, nil},
		{"/dev/mqueue", "mqueue", []string{"nosuid", "noexec", "nodev"}, nil},
		{"/sys", "sysfs", []string{"nosuid", "noexec", "nodev", "ro"}, []string{"rw"}},
		{"/sys/fs/cgroup", "cgroup", []string{"nosuid", "noexec", "nodev", "ro"}, []string{"rw"}},
		{"/tmp", "tmpfs", []string{"nosuid", "nodev", "mode=1777", "size=67108864"}, []string{"ro"}},
		{"/run", "tmpfs", []string{"nosuid", "nodev", "mode=755", "size=8388608"}, []string{"ro"}},
	} {
		m, i := mountAt(s.Mounts, tc.dst)
		if i < 0 {
			t.Errorf("no mount at %s in %+v", tc.dst, s.Mounts)
			continue
		}
		if m.Type != tc.typ {
			t.Errorf("mount %s type = %q, want %q", tc.dst, m.Type, tc.typ)
		}
		for _, o := range tc.opts {
			if !slices.Contains(m.Options, o) {
				t.Errorf("mount %s options %q lack %q", tc.dst, m.Options, o)
			}
		}
		for _, o := range tc.notOpts {
			if slices.Contains(m.Options, o) {
				t.Errorf("mount %s options %q hold %q", tc.dst, m.Options, o)
			}
		}
	}
}

func TestHardenMountOrder(t *testing.T) {
	s := harden(t, spec.Security{})
	// A mount must come after the one it is mounted on top of.
	for _, pair := range [][2]string{{"/dev", "/dev/pts"}, {"/dev", "/dev/shm"}, {"/sys", "/sys/fs/cgroup"}, {"/proc", "/data"}, {"/tmp", "/data"}} {
		_, before := mountAt(s.Mounts, pair[0])
		_, after := mountAt(s.Mounts, pair[1])
		if before < 0 || after < 0 || before >= after {
			t.Errorf("mount %s at %d, %s at %d: want the first before the second", pair[0], before, pair[1], after)
		}
	}
	// The service's own bind stays, last and unchanged.
	last := s.Mounts[len(s.Mounts)-1]
	if last.Destination != "/data" || last.Source != "/srv/data" || !slices.Contains(last.Options, "ro") {
		t.Errorf("last mount = %+v, want the service's /data bind", last)
	}
	if n := len(s.Mounts); n != 10 {
		t.Errorf("%d mounts, want 9 standard and 1 of the service", n)
	}
}

func TestHardenDefaultSeccomp(t *testing.T) {
	for _, mode := range []string{"", spec.SeccompDefault} {
		t.Run(mode, func(t *testing.T) {
			sc := harden(t, spec.Security{Seccomp: mode}).Linux.Seccomp
			if sc == nil {
				t.Fatal("seccomp = nil, want the default profile")
			}
			if sc.DefaultAction != rspec.ActErrno {
				t.Errorf("defaultAction = %q, want %q", sc.DefaultAction, rspec.ActErrno)
			}
			want := map[string]rspec.Arch{
				"amd64": rspec.ArchX86_64, "arm64": rspec.ArchAARCH64, "386": rspec.ArchX86,
				"arm": rspec.ArchARM, "ppc64le": rspec.ArchPPC64LE, "s390x": rspec.ArchS390X, "riscv64": rspec.ArchRISCV64,
			}[runtime.GOARCH]
			if !slices.Equal(sc.Architectures, []rspec.Arch{want}) {
				t.Errorf("architectures = %q, want only %q", sc.Architectures, want)
			}
			if !allowed(sc, "read") || !allowed(sc, "exit_group") {
				t.Error("default profile does not allow read and exit_group")
			}
			for _, name := range []string{"mount", "kexec_load", "init_module", "bpf"} {
				if allowed(sc, name) {
					t.Errorf("default profile allows %s without any capability", name)
				}
			}
		})
	}
}

func TestHardenSeccompFollowsCapabilities(t *testing.T) {
	// Docker's profile allows mount(2) only to a holder of CAP_SYS_ADMIN:
	// the capabilities must be set before the profile is built.
	sc := harden(t, spec.Security{CapAdd: []string{"SYS_ADMIN"}}).Linux.Seccomp
	if !allowed(sc, "mount") {
		t.Error("with CAP_SYS_ADMIN the default profile does not allow mount")
	}
}

// allowed reports whether the profile has an unconditional allow rule for
// the syscall.
func allowed(sc *rspec.LinuxSeccomp, name string) bool {
	for _, r := range sc.Syscalls {
		if r.Action == rspec.ActAllow && len(r.Args) == 0 && slices.Contains(r.Names, name) {
			return true
		}
	}
	return false
}

func TestHardenUnconfined(t *testing.T) {
	s := base(t)
	s.Linux.Seccomp = &rspec.LinuxSeccomp{DefaultAction: rspec.ActKill}
	if err := isolation.Harden(s, spec.Security{Seccomp: spec.SeccompUnconfined}); err != nil {
		t.Fatal(err)
	}
	if s.Linux.Seccomp != nil {
		t.Errorf("seccomp = %+v, want nil for unconfined", s.Linux.Seccomp)
	}
	// Only seccomp is loosened.
	if !s.Process.NoNewPrivileges || !s.Root.Readonly || len(s.Process.Capabilities.Bounding) != 0 {
		t.Error("unconfined loosened more than seccomp")
	}
}

const profileJSON = `{
	"defaultAction": "SCMP_ACT_ERRNO",
	"defaultErrnoRet": 1,
	"architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"],
	"syscalls": [
		{"names": ["read", "write", "exit_group"], "action": "SCMP_ACT_ALLOW"},
		{"names": ["reboot"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_BOOT"]}}
	]
}`

func writeProfile(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestHardenSeccompFile(t *testing.T) {
	path := writeProfile(t, profileJSON)
	sc := harden(t, spec.Security{Seccomp: path}).Linux.Seccomp
	if sc == nil {
		t.Fatal("seccomp = nil, want the profile from the file")
	}
	if sc.DefaultAction != rspec.ActErrno {
		t.Errorf("defaultAction = %q, want %q", sc.DefaultAction, rspec.ActErrno)
	}
	if sc.DefaultErrnoRet == nil || *sc.DefaultErrnoRet != 1 {
		t.Errorf("defaultErrnoRet = %v, want 1", sc.DefaultErrnoRet)
	}
	// The file's architectures are the operator's choice: kept as written.
	if want := []rspec.Arch{rspec.ArchX86_64, rspec.ArchAARCH64}; !slices.Equal(sc.Architectures, want) {
		t.Errorf("architectures = %q, want %q", sc.Architectures, want)
	}
	if len(sc.Syscalls) != 1 || !slices.Equal(sc.Syscalls[0].Names, []string{"read", "write", "exit_group"}) {
		t.Errorf("syscalls = %+v, want only the read/write/exit_group rule (reboot needs CAP_SYS_BOOT)", sc.Syscalls)
	}

	sc = harden(t, spec.Security{Seccomp: path, CapAdd: []string{"SYS_BOOT"}}).Linux.Seccomp
	if !allowed(sc, "reboot") {
		t.Errorf("with CAP_SYS_BOOT the profile's reboot rule is missing: %+v", sc.Syscalls)
	}
}

func TestHardenSeccompFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		desc string
		path string
	}{
		{"missing", filepath.Join(dir, "missing.json")},
		{"not JSON", writeProfile(t, "defaultAction: SCMP_ACT_ERRNO\n")},
		{"truncated", writeProfile(t, profileJSON[:40])},
		{"wrong type", writeProfile(t, `{"defaultAction": 3}`)},
		{"a directory", dir},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := base(t)
			err := isolation.Harden(s, spec.Security{Seccomp: tc.path})
			if err == nil {
				t.Fatalf("Harden with profile %s: no error", tc.path)
			}
			if !strings.Contains(err.Error(), tc.path) {
				t.Errorf("error %q does not name the file %s", err, tc.path)
			}
			if !strings.Contains(err.Error(), "seccomp profile") {
				t.Errorf("error %q does not say it is about the seccomp profile", err)
			}
		})
	}
}

func TestHardenSeccompFileWithoutRules(t *testing.T) {
	for _, body := range []string{`{}`, `{"default_action": "SCMP_ACT_ERRNO"}`, `{"architectures": ["SCMP_ARCH_X86_64"]}`} {
		s := base(t)
		err := isolation.Harden(s, spec.Security{Seccomp: writeProfile(t, body)})
		if err == nil && s.Linux.Seccomp == nil {
			t.Errorf("profile %s: no error and no seccomp: the sandbox would run unconfined", body)
		}
	}
}

func TestHardenNeedsSections(t *testing.T) {
	for _, tc := range []struct {
		desc string
		edit func(*rspec.Spec)
	}{
		{"no process", func(s *rspec.Spec) { s.Process = nil }},
		{"no root", func(s *rspec.Spec) { s.Root = nil }},
		{"no linux", func(s *rspec.Spec) { s.Linux = nil }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			s := base(t)
			tc.edit(s)
			err := isolation.Harden(s, spec.Security{})
			if err == nil || !strings.Contains(err.Error(), "process, root and linux") {
				t.Errorf("Harden: error %v, want one naming the sections it needs", err)
			}
		})
	}
}

func TestHardenWithoutResources(t *testing.T) {
	s := base(t)
	s.Linux.Resources = nil
	var err error
	func() {
		defer func() {
			if r := recover(); r != nil {
				t.Fatalf("Harden panicked on a spec without linux.resources: %v", r)
			}
		}()
		err = isolation.Harden(s, spec.Security{})
	}()
	if err == nil && (s.Linux.Resources == nil || len(s.Linux.Resources.Devices) != 1) {
		t.Errorf("Harden without resources: no error and resources %+v, want the deny-all device rule", s.Linux.Resources)
	}
}

func TestDefaultSeccompDoesNotChangeSpec(t *testing.T) {
	s := base(t)
	s.Process.Capabilities = &rspec.LinuxCapabilities{Bounding: []string{"CAP_KILL"}}
	before := len(s.Mounts)
	sc, err := isolation.DefaultSeccomp(s)
	if err != nil {
		t.Fatal(err)
	}
	if sc == nil || len(sc.Architectures) != 1 {
		t.Fatalf("DefaultSeccomp = %+v, want a profile for one architecture", sc)
	}
	if s.Linux.Seccomp != nil || len(s.Mounts) != before {
		t.Error("DefaultSeccomp changed the spec it was given")
	}
}
