package ociruntime

import (
	"testing"

	"github.com/opencontainers/runc/libcontainer/configs"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestAllowRuntimeStatx(t *testing.T) {
	named := rspec.LinuxSyscall{Names: []string{"statx"}, Action: rspec.ActErrno}
	tests := []struct {
		name    string
		profile *rspec.LinuxSeccomp
		added   bool
	}{
		{"no profile", nil, false},
		{"allow by default", &rspec.LinuxSeccomp{DefaultAction: rspec.ActAllow}, false},
		{"deny by default, statx not named", &rspec.LinuxSeccomp{DefaultAction: rspec.ActErrno}, true},
		{"kill by default, statx not named", &rspec.LinuxSeccomp{DefaultAction: rspec.ActKillProcess}, true},
		{"statx named: its author decided", &rspec.LinuxSeccomp{DefaultAction: rspec.ActErrno, Syscalls: []rspec.LinuxSyscall{named}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := 0
			if tt.profile != nil {
				before = len(tt.profile.Syscalls)
			}
			allowRuntimeStatx(tt.profile)
			if tt.profile == nil {
				return
			}
			added := len(tt.profile.Syscalls) - before
			if (added == 1) != tt.added || added > 1 {
				t.Fatalf("added %d rules, want added=%v", added, tt.added)
			}
			if !tt.added {
				return
			}
			r := tt.profile.Syscalls[len(tt.profile.Syscalls)-1]
			// Only libcontainer's own call: those exact flags and mask.
			want := []rspec.LinuxSeccompArg{
				{Index: 2, Value: unix.AT_EMPTY_PATH | unix.AT_SYMLINK_NOFOLLOW, Op: rspec.OpEqualTo},
				{Index: 3, Value: 0x4000 | unix.STATX_MNT_ID, Op: rspec.OpEqualTo},
			}
			if r.Action != rspec.ActAllow || len(r.Names) != 1 || r.Names[0] != "statx" || len(r.Args) != 2 || r.Args[0] != want[0] || r.Args[1] != want[1] {
				t.Fatalf("rule %+v, want statx allowed only with %+v", r, want)
			}
		})
	}
}

func TestFifoDevices(t *testing.T) {
	l := &rspec.Linux{Devices: []rspec.LinuxDevice{
		{Path: "/dev/f", Type: "p", Major: 8, Minor: 666},
		{Path: "/dev/c", Type: "c", Major: 1, Minor: 3},
	}}
	fifoDevices(l)
	if d := l.Devices[0]; d.Major != 0 || d.Minor != 0 {
		t.Errorf("fifo kept %d:%d", d.Major, d.Minor)
	}
	if d := l.Devices[1]; d.Major != 1 || d.Minor != 3 {
		t.Errorf("char device changed to %d:%d", d.Major, d.Minor)
	}
}

func TestDropBindData(t *testing.T) {
	cfg := &configs.Config{Mounts: []*configs.Mount{
		{Destination: "/b", Device: "bind", Flags: unix.MS_BIND, Data: "mode=755"},
		{Destination: "/t", Device: "tmpfs", Data: "size=1k"},
	}}
	dropped := dropBindData(cfg)
	if len(dropped) != 1 || cfg.Mounts[0].Data != "" {
		t.Errorf("bind: data %q, warnings %q", cfg.Mounts[0].Data, dropped)
	}
	if cfg.Mounts[1].Data != "size=1k" {
		t.Errorf("tmpfs lost its options: %q", cfg.Mounts[1].Data)
	}
}

func TestParseSpecUnknownField(t *testing.T) {
	const base = `{"ociVersion":"1.0.2","root":{"path":"rootfs"},"linux":{},"process":{"args":["/bin/true"],"cwd":"/"}`
	s, unknown, err := ParseSpec([]byte(base + `,"unknown":"x"}`))
	if err != nil || s == nil || unknown != "unknown" {
		t.Fatalf("unknown field: spec %v, unknown %q, err %v; want it ignored and named", s != nil, unknown, err)
	}
	if _, unknown, err = ParseSpec([]byte(base + `}`)); err != nil || unknown != "" {
		t.Fatalf("known fields: unknown %q, err %v", unknown, err)
	}
	if _, _, err = ParseSpec([]byte(`{"ociVersion":1}`)); err == nil {
		t.Fatal("a wrongly typed field was accepted")
	}
}
