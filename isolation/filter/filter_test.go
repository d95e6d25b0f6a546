//go:build linux && cgo && seccomp

package filter

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/opencontainers/runc/libcontainer/specconv"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
	"github.com/corral-dev/corral/isolation"
)

// Verdicts, as the kernel reads a seccomp program's return value.
const (
	allow      = unix.SECCOMP_RET_ALLOW
	killThread = unix.SECCOMP_RET_KILL_THREAD
)

func errno(e unix.Errno) uint32 { return unix.SECCOMP_RET_ERRNO | uint32(e) }

// verdictName makes failures readable.
func verdictName(v uint32) string {
	switch {
	case v == allow:
		return "ALLOW"
	case v == killThread:
		return "KILL_THREAD"
	case v&unix.SECCOMP_RET_ACTION_FULL == unix.SECCOMP_RET_ERRNO:
		return "ERRNO(" + unix.ErrnoName(unix.Errno(v&unix.SECCOMP_RET_DATA)) + ")"
	}
	return fmt.Sprintf("%#x", v)
}

// abi describes the native syscall ABI and a foreign one the sandbox must
// not reach, for the architectures corral writes an ENOSYS stub for.
type abi struct {
	native, foreign uint32
	// foreignGetpid is getpid's number in the foreign ABI.
	foreignGetpid uint32
}

func nativeABI(t *testing.T) abi {
	t.Helper()
	switch runtime.GOARCH {
	case "amd64":
		return abi{native: unix.AUDIT_ARCH_X86_64, foreign: unix.AUDIT_ARCH_I386, foreignGetpid: 20}
	case "arm64":
		return abi{native: unix.AUDIT_ARCH_AARCH64, foreign: unix.AUDIT_ARCH_ARM, foreignGetpid: 20}
	}
	t.Skipf("no ENOSYS stub for GOARCH %s, so no expectations either", runtime.GOARCH)
	return abi{}
}

// defaultProfile is the profile corral gives a sandbox with the given
// capabilities (none by default): moby's, native architecture only.
func defaultProfile(t testing.TB, caps ...string) *rspec.LinuxSeccomp {
	t.Helper()
	s := &rspec.Spec{Process: &rspec.Process{Capabilities: &rspec.LinuxCapabilities{
		Bounding: caps, Effective: caps, Permitted: caps,
	}}}
	p, err := isolation.DefaultSeccomp(s)
	if err != nil {
		t.Fatalf("DefaultSeccomp: %v", err)
	}
	return p
}

func compileOK(t testing.TB, p *rspec.LinuxSeccomp) []byte {
	t.Helper()
	prog, err := Compile(p)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return prog
}

// program disassembles a compiled program and checks that it only loads
// seccomp_data the way the kernel allows (aligned 32-bit words inside the
// 64-byte struct). That is also what makes the emulation below faithful.
func program(t testing.TB, prog []byte) []bpf.Instruction {
	t.Helper()
	raw, err := decode(prog)
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	insns, ok := bpf.Disassemble(raw)
	if !ok {
		t.Fatal("program has instructions x/net/bpf cannot decode")
	}
	for i, in := range insns {
		switch in := in.(type) {
		case bpf.LoadAbsolute:
			if in.Size != 4 || in.Off%4 != 0 || in.Off >= 64 {
				t.Fatalf("instruction %d: %v: seccomp only allows aligned 32-bit loads inside seccomp_data", i, in)
			}
		case bpf.LoadIndirect, bpf.LoadMemShift, bpf.LoadExtension:
			t.Fatalf("instruction %d: %v: not allowed in a seccomp program", i, in)
		}
	}
	return insns
}

// vm is an emulated seccomp program.
type vm struct {
	t  testing.TB
	vm *bpf.VM
}

func newVM(t testing.TB, prog []byte) vm {
	t.Helper()
	v, err := bpf.NewVM(program(t, prog))
	if err != nil {
		t.Fatalf("NewVM: %v", err)
	}
	return vm{t, v}
}

// seccompData lays out struct seccomp_data { int nr; u32 arch; u64
// instruction_pointer; u64 args[6]; } as the kernel does (native byte
// order), then re-encodes it for x/net/bpf's VM, which loads words in
// network byte order: every 32-bit word is rewritten big-endian in place.
// Seccomp programs can only load aligned 32-bit words (checked by
// program), so this gives the VM exactly the values the kernel's loads
// give, including the order of the two halves of a 64-bit argument.
func seccompData(arch, nr uint32, args ...uint64) []byte {
	b := make([]byte, 64)
	binary.NativeEndian.PutUint32(b[0:], nr)
	binary.NativeEndian.PutUint32(b[4:], arch)
	for i, a := range args {
		binary.NativeEndian.PutUint64(b[16+8*i:], a)
	}
	for i := 0; i < len(b); i += 4 {
		binary.BigEndian.PutUint32(b[i:], binary.NativeEndian.Uint32(b[i:]))
	}
	return b
}

func (v vm) run(arch, nr uint32, args ...uint64) uint32 {
	v.t.Helper()
	r, err := v.vm.Run(seccompData(arch, nr, args...))
	if err != nil {
		v.t.Fatalf("run nr %d arch %#x: %v", nr, arch, err)
	}
	return uint32(r)
}

// largestKnown is the largest native syscall number the profile names,
// worked out here with libseccomp directly.
func largestKnown(t testing.TB, p *rspec.LinuxSeccomp) uint32 {
	t.Helper()
	native, err := libseccomp.GetNativeArch()
	if err != nil {
		t.Fatal(err)
	}
	var largest int32
	for _, rule := range p.Syscalls {
		for _, name := range rule.Names {
			if nr, err := libseccomp.GetSyscallFromNameByArch(name, native); err == nil && int32(nr) > largest {
				largest = int32(nr)
			}
		}
	}
	return uint32(largest)
}

func TestDefaultProfileVerdicts(t *testing.T) {
	a := nativeABI(t)
	p := defaultProfile(t)
	v := newVM(t, compileOK(t, p))
	largest := largestKnown(t, p)
	if largest < unix.SYS_CLONE3 {
		t.Fatalf("largest syscall named by the default profile = %d, want at least clone3 (%d)", largest, unix.SYS_CLONE3)
	}
	t.Logf("largest native syscall the default profile names, as %s knows them: %d", backendVersion(), largest)

	const (
		cloneNewUser = unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)
		forkFlags    = uint64(unix.SIGCHLD)
	)
	for _, tc := range []struct {
		desc string
		arch uint32
		nr   uint32
		args []uint64
		want uint32
	}{
		{"read", a.native, unix.SYS_READ, []uint64{0, 0, 0}, allow},
		{"getpid", a.native, unix.SYS_GETPID, nil, allow},
		{"execve", a.native, unix.SYS_EXECVE, nil, allow},
		{"mount without CAP_SYS_ADMIN", a.native, unix.SYS_MOUNT, nil, errno(unix.EPERM)},
		{"unshare without CAP_SYS_ADMIN", a.native, unix.SYS_UNSHARE, []uint64{unix.CLONE_NEWUSER}, errno(unix.EPERM)},
		{"unknown high number", a.native, 1000, nil, errno(unix.ENOSYS)},
		{"largest known + 1", a.native, largest + 1, nil, errno(unix.ENOSYS)},
		{"largest non-x32 number", a.native, x32Bit - 1, nil, errno(unix.ENOSYS)},
		{"foreign ABI", a.foreign, a.foreignGetpid, nil, killThread},
		{"foreign ABI, high number", a.foreign, 1000, nil, killThread},
		{"personality(0)", a.native, unix.SYS_PERSONALITY, []uint64{0}, allow},
		{"personality(PER_LINUX32)", a.native, unix.SYS_PERSONALITY, []uint64{0x0008}, allow},
		{"personality(query)", a.native, unix.SYS_PERSONALITY, []uint64{0xffffffff}, allow},
		{"personality(ADDR_NO_RANDOMIZE)", a.native, unix.SYS_PERSONALITY, []uint64{0x0040000}, errno(unix.EPERM)},
		{"personality(1)", a.native, unix.SYS_PERSONALITY, []uint64{1}, errno(unix.EPERM)},
		{"personality, 0 in the low half only", a.native, unix.SYS_PERSONALITY, []uint64{1 << 32}, errno(unix.EPERM)},
		{"clone for fork", a.native, unix.SYS_CLONE, []uint64{forkFlags}, allow},
		{"clone with CLONE_NEWUSER", a.native, unix.SYS_CLONE, []uint64{cloneNewUser}, errno(unix.EPERM)},
		{"clone with CLONE_NEWNET", a.native, unix.SYS_CLONE, []uint64{unix.CLONE_NEWNET}, errno(unix.EPERM)},
		{"clone3 without CAP_SYS_ADMIN", a.native, unix.SYS_CLONE3, nil, errno(unix.ENOSYS)},
	} {
		if got := v.run(tc.arch, tc.nr, tc.args...); got != tc.want {
			t.Errorf("%s (nr %d, arch %#x, args %#x) = %s, want %s", tc.desc, tc.nr, tc.arch, tc.args, verdictName(got), verdictName(tc.want))
		}
	}

	// The numbers up to the largest known are left to the program: a
	// named one is not turned into ENOSYS.
	if got := v.run(a.native, largest); got == errno(unix.ENOSYS) {
		t.Errorf("largest known syscall %d = ENOSYS, want the profile's verdict", largest)
	}
	if runtime.GOARCH == "amd64" {
		// x32 numbers are above every x86_64 number, but the stub must
		// leave them to the program, which kills them (no x32 in the
		// profile) instead of answering ENOSYS.
		for _, nr := range []uint32{x32Bit | unix.SYS_READ, x32Bit | 1000} {
			if got := v.run(a.native, nr); got != killThread {
				t.Errorf("x32 syscall %#x = %s, want KILL_THREAD", nr, verdictName(got))
			}
		}
		// -1, what a tracer sets to skip a syscall, has the x32 bit set
		// too; libseccomp lets it through to the default action.
		if got := v.run(a.native, 0xffffffff); got != errno(unix.EPERM) {
			t.Errorf("syscall -1 = %s, want ERRNO(EPERM)", verdictName(got))
		}
	}
}

func TestDefaultProfileWithCapSysAdmin(t *testing.T) {
	a := nativeABI(t)
	v := newVM(t, compileOK(t, defaultProfile(t, "CAP_SYS_ADMIN")))
	for _, tc := range []struct {
		desc string
		nr   uint32
		args []uint64
	}{
		{"mount", unix.SYS_MOUNT, nil},
		{"clone with CLONE_NEWUSER", unix.SYS_CLONE, []uint64{unix.CLONE_NEWUSER}},
		{"clone3", unix.SYS_CLONE3, nil},
		{"unshare", unix.SYS_UNSHARE, []uint64{unix.CLONE_NEWNS}},
	} {
		if got := v.run(a.native, tc.nr, tc.args...); got != allow {
			t.Errorf("%s with CAP_SYS_ADMIN = %s, want ALLOW", tc.desc, verdictName(got))
		}
	}
}

// TestRuleSemantics covers libcontainer's conversion rules one at a time on
// small profiles (fewer than 33 rules, so libseccomp's linear layout).
func TestRuleSemantics(t *testing.T) {
	a := nativeABI(t)
	eperm, enosys, eacces := uint(unix.EPERM), uint(unix.ENOSYS), uint(unix.EACCES)
	arch := []rspec.Arch{nativeSpecArch(t)}
	rule := func(name string, act rspec.LinuxSeccompAction, args ...rspec.LinuxSeccompArg) rspec.LinuxSyscall {
		return rspec.LinuxSyscall{Names: []string{name}, Action: act, Args: args}
	}
	eq := func(i uint, v uint64) rspec.LinuxSeccompArg {
		return rspec.LinuxSeccompArg{Index: i, Value: v, Op: rspec.OpEqualTo}
	}
	type probe struct {
		nr   uint32
		args []uint64
		want uint32
	}
	for _, tc := range []struct {
		desc    string
		profile rspec.LinuxSeccomp
		stub    bool
		probes  []probe
	}{
		{
			desc: "conditions on different arguments must all hold",
			profile: rspec.LinuxSeccomp{DefaultAction: rspec.ActErrno, DefaultErrnoRet: &eperm, Architectures: arch,
				Syscalls: []rspec.LinuxSyscall{rule("personality", rspec.ActAllow, eq(0, 1), eq(1, 2))}},
			stub: true,
			probes: []probe{
				{unix.SYS_PERSONALITY, []uint64{1, 2}, allow},
				{unix.SYS_PERSONALITY, []uint64{1, 3}, errno(unix.EPERM)},
				{unix.SYS_PERSONALITY, []uint64{0, 2}, errno(unix.EPERM)},
			},
		},
		{
			desc: "conditions on the same argument are alternatives",
			profile: rspec.LinuxSeccomp{DefaultAction: rspec.ActErrno, DefaultErrnoRet: &eperm, Architectures: arch,
				Syscalls: []rspec.LinuxSyscall{rule("personality", rspec.ActAllow, eq(0, 1), eq(0, 2))}},
			stub: true,
			probes: []probe{
				{unix.SYS_PERSONALITY, []uint64{1}, allow},
				{unix.SYS_PERSONALITY, []uint64{2}, allow},
				{unix.SYS_PERSONALITY, []uint64{3}, errno(unix.EPERM)},
			},
		},
		{
			desc: "ERRNO without errnoRet is EPERM, and errnoRet is honoured",
			profile: rspec.LinuxSeccomp{DefaultAction: rspec.ActAllow, Architectures: arch,
				Syscalls: []rspec.LinuxSyscall{
					rule("mkdir", rspec.ActErrno),
					{Names: []string{"rmdir"}, Action: rspec.ActErrno, ErrnoRet: &eacces},
				}},
			probes: []probe{
				{unix.SYS_MKDIR, nil, errno(unix.EPERM)},
				{unix.SYS_RMDIR, nil, errno(unix.EACCES)},
				{unix.SYS_GETPID, nil, allow},
				// A permissive default gets no stub: new syscalls stay allowed.
				{1000, nil, allow},
			},
		},
		{
			desc: "default ERRNO(ENOSYS) needs no stub",
			profile: rspec.LinuxSeccomp{DefaultAction: rspec.ActErrno, DefaultErrnoRet: &enosys, Architectures: arch,
				Syscalls: []rspec.LinuxSyscall{rule("getpid", rspec.ActAllow)}},
			probes: []probe{
				{unix.SYS_GETPID, nil, allow},
				{unix.SYS_READ, nil, errno(unix.ENOSYS)},
				{1000, nil, errno(unix.ENOSYS)},
			},
		},
		{
			desc: "no known syscall: no stub",
			profile: rspec.LinuxSeccomp{DefaultAction: rspec.ActErrno, Architectures: arch,
				Syscalls: []rspec.LinuxSyscall{rule("no_such_syscall", rspec.ActAllow)}},
			probes: []probe{
				{unix.SYS_GETPID, nil, errno(unix.EPERM)},
				{1000, nil, errno(unix.EPERM)},
			},
		},
		{
			desc: "the stub's line counts rules that equal the default",
			profile: rspec.LinuxSeccomp{DefaultAction: rspec.ActKillProcess, Architectures: arch,
				Syscalls: []rspec.LinuxSyscall{
					rule("getpid", rspec.ActAllow),
					rule("clone3", rspec.ActKillProcess), // adds nothing, but is known
				}},
			stub: true,
			probes: []probe{
				{unix.SYS_GETPID, nil, allow},
				{unix.SYS_CLONE3, nil, unix.SECCOMP_RET_KILL_PROCESS},
				{unix.SYS_CLONE3 + 1, nil, errno(unix.ENOSYS)},
			},
		},
		{
			desc: "SCMP_ACT_KILL is KILL_THREAD; unknown names are skipped",
			profile: rspec.LinuxSeccomp{DefaultAction: rspec.ActAllow, Architectures: arch,
				Syscalls: []rspec.LinuxSyscall{
					{Names: []string{"no_such_syscall", "mount"}, Action: rspec.ActKill},
				}},
			probes: []probe{
				{unix.SYS_MOUNT, nil, killThread},
				{unix.SYS_GETPID, nil, allow},
			},
		},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			prog := compileOK(t, &tc.profile)
			if got := hasStub(t, prog); got != tc.stub {
				t.Errorf("ENOSYS stub present = %v, want %v", got, tc.stub)
			}
			v := newVM(t, prog)
			for _, p := range tc.probes {
				if got := v.run(a.native, p.nr, p.args...); got != p.want {
					t.Errorf("nr %d args %#x = %s, want %s", p.nr, p.args, verdictName(got), verdictName(p.want))
				}
			}
		})
	}
}

func nativeSpecArch(t *testing.T) rspec.Arch {
	t.Helper()
	switch runtime.GOARCH {
	case "amd64":
		return rspec.ArchX86_64
	case "arm64":
		return rspec.ArchAARCH64
	}
	t.Skipf("no ENOSYS stub for GOARCH %s", runtime.GOARCH)
	return ""
}

// hasStub tells whether prog starts with the ENOSYS stub: a return of
// ERRNO(ENOSYS) before libseccomp's program begins (its second load of
// the arch).
func hasStub(t testing.TB, prog []byte) bool {
	return stubLen(t, prog) > 0
}

// stubLen is the number of instructions in front of libseccomp's program.
func stubLen(t testing.TB, prog []byte) int {
	t.Helper()
	insns := program(t, prog)
	for i := 1; i < len(insns); i++ {
		if insns[i] == (bpf.LoadAbsolute{Off: offArch, Size: 4}) {
			if insns[i-1] == (bpf.RetConstant{Val: retENOSYS}) {
				return i
			}
			return 0
		}
	}
	return 0
}

func TestCompileIsDeterministic(t *testing.T) {
	p := defaultProfile(t)
	first := compileOK(t, p)
	for range 3 {
		if again := compileOK(t, p); !bytes.Equal(again, first) {
			t.Fatal("two compilations of the same profile differ: the cache would serve one of them for both")
		}
	}
	n := len(first) / insnSize
	if n > maxInsns {
		t.Errorf("%d instructions, the kernel takes at most %d", n, maxInsns)
	}
	t.Logf("default profile: %d instructions (%d bytes), stub %d", n, len(first), stubLen(t, first))
}

func TestCompileRefuses(t *testing.T) {
	eperm := uint(unix.EPERM)
	base := func() *rspec.LinuxSeccomp {
		return &rspec.LinuxSeccomp{
			DefaultAction: rspec.ActErrno, DefaultErrnoRet: &eperm,
			Syscalls: []rspec.LinuxSyscall{{Names: []string{"read", "write"}, Action: rspec.ActAllow}},
		}
	}
	for _, tc := range []struct {
		desc   string
		edit   func(p *rspec.LinuxSeccomp)
		target error // nil: any error
		text   string
	}{
		{"notify for a syscall", func(p *rspec.LinuxSeccomp) {
			p.Syscalls = append(p.Syscalls, rspec.LinuxSyscall{Names: []string{"openat"}, Action: rspec.ActNotify})
		}, ErrUnsupportedFeature, `SCMP_ACT_NOTIFY for syscall "openat"`},
		{"notify as default", func(p *rspec.LinuxSeccomp) { p.DefaultAction = rspec.ActNotify }, ErrUnsupportedFeature, "SCMP_ACT_NOTIFY as the default action"},
		{"listener path", func(p *rspec.LinuxSeccomp) { p.ListenerPath = "/run/agent.sock" }, ErrUnsupportedFeature, "listenerPath"},
		{"listener metadata", func(p *rspec.LinuxSeccomp) { p.ListenerMetadata = "x" }, ErrUnsupportedFeature, "listenerMetadata"},
		{"unknown action", func(p *rspec.LinuxSeccomp) { p.Syscalls[0].Action = "SCMP_ACT_BOGUS" }, nil, "SCMP_ACT_BOGUS"},
		{"unknown operator", func(p *rspec.LinuxSeccomp) {
			p.Syscalls[0].Args = []rspec.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_BOGUS"}}
		}, nil, "SCMP_CMP_BOGUS"},
		{"argument index 6", func(p *rspec.LinuxSeccomp) {
			p.Syscalls[0].Args = []rspec.LinuxSeccompArg{{Index: 6, Op: rspec.OpEqualTo}}
		}, nil, "argument index 6"},
		{"unknown architecture", func(p *rspec.LinuxSeccomp) { p.Architectures = []rspec.Arch{"SCMP_ARCH_PDP11"} }, nil, "SCMP_ARCH_PDP11"},
		{"unknown flag", func(p *rspec.LinuxSeccomp) { p.Flags = []rspec.LinuxSeccompFlag{"SECCOMP_FILTER_FLAG_BOGUS"} }, nil, "SECCOMP_FILTER_FLAG_BOGUS"},
		{"empty syscall name", func(p *rspec.LinuxSeccomp) { p.Syscalls[0].Names = []string{""} }, nil, "empty syscall name"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			p := base()
			tc.edit(p)
			prog, err := Compile(p)
			if err == nil {
				t.Fatalf("Compile = %d bytes, want an error", len(prog))
			}
			if tc.target != nil && !errors.Is(err, tc.target) {
				t.Errorf("error %q is not %v", err, tc.target)
			}
			if !strings.Contains(err.Error(), tc.text) {
				t.Errorf("error %q does not name %q", err, tc.text)
			}
		})
	}

	for _, p := range []*rspec.LinuxSeccomp{nil, {}} {
		if _, err := Compile(p); !errors.Is(err, ErrNoProfile) {
			t.Errorf("Compile(%+v) error = %v, want ErrNoProfile", p, err)
		}
	}
}

// TestFlagsDoNotChangeTheProgram pins down why Compile may ignore filter
// flags: they change how the kernel loads a program, not the program.
func TestFlagsDoNotChangeTheProgram(t *testing.T) {
	p := defaultProfile(t)
	want := compileOK(t, p)
	p.Flags = []rspec.LinuxSeccompFlag{rspec.LinuxSeccompFlagLog, rspec.LinuxSeccompFlagSpecAllow}
	if got := compileOK(t, p); !bytes.Equal(got, want) {
		t.Error("flags changed the compiled program")
	}
}

// TestMatchesLibcontainer is the reference check: it lets libcontainer
// install its filter for a profile in a child process, reads the installed
// program back from the kernel (PTRACE_SECCOMP_GET_FILTER), and compares it
// with Compile's, instruction for instruction after the stubs and verdict
// for verdict over a grid of syscalls, ABIs and arguments.
func TestMatchesLibcontainer(t *testing.T) {
	a := nativeABI(t)
	testenv.NeedRoot(t, "reading a filter back with ptrace needs CAP_SYS_ADMIN")
	enosys, eacces := uint(unix.ENOSYS), uint(unix.EACCES)
	arch := []rspec.Arch{nativeSpecArch(t)}
	multiArch := defaultProfile(t)
	multiArch.Architectures = []rspec.Arch{rspec.ArchX86_64, rspec.ArchX86, rspec.ArchX32}
	if runtime.GOARCH != "amd64" {
		multiArch.Architectures = []rspec.Arch{rspec.ArchAARCH64, rspec.ArchARM}
	}
	for _, tc := range []struct {
		desc    string
		profile *rspec.LinuxSeccomp
		// nativeOnly: compare verdicts for the native, non-x32 ABI only,
		// where Compile's stub is meant to act. Elsewhere libcontainer's
		// stub also covers the other listed ABIs (a documented difference).
		nativeOnly bool
	}{
		{"default, no capabilities", defaultProfile(t), false},
		{"default, CAP_SYS_ADMIN", defaultProfile(t, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"), false},
		{"default, all listed ABIs", multiArch, true},
		{"small, KILL_PROCESS default", &rspec.LinuxSeccomp{
			DefaultAction: rspec.ActKillProcess, Architectures: arch,
			Syscalls: []rspec.LinuxSyscall{
				{Names: goRuntime, Action: rspec.ActAllow},
				{Names: []string{"personality"}, Action: rspec.ActAllow, Args: []rspec.LinuxSeccompArg{
					{Index: 0, Value: 8, Op: rspec.OpEqualTo}, {Index: 0, Value: 0, Op: rspec.OpEqualTo}}},
				{Names: []string{"clone"}, Action: rspec.ActErrno, ErrnoRet: &eacces, Args: []rspec.LinuxSeccompArg{
					{Index: 0, Value: unix.CLONE_NEWUSER, ValueTwo: unix.CLONE_NEWUSER, Op: rspec.OpMaskedEqual},
					{Index: 1, Value: 0, Op: rspec.OpNotEqual}}},
			},
		}, false},
		{"default ERRNO(ENOSYS)", &rspec.LinuxSeccomp{
			DefaultAction: rspec.ActErrno, DefaultErrnoRet: &enosys, Architectures: arch,
			Syscalls: []rspec.LinuxSyscall{{Names: goRuntime, Action: rspec.ActAllow}},
		}, false},
		{"default ALLOW", &rspec.LinuxSeccomp{
			DefaultAction: rspec.ActAllow, Architectures: arch,
			Syscalls: []rspec.LinuxSyscall{{Names: []string{"mount", "no_such_syscall"}, Action: rspec.ActErrno}},
		}, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ours := compileOK(t, tc.profile)
			theirs := libcontainerProgram(t, tc.profile)

			// libseccomp's part must be the very same bytes.
			body := ours[stubLen(t, ours)*insnSize:]
			if !bytes.HasSuffix(theirs, body) {
				t.Errorf("libseccomp's program differs: ours %d instructions (stub %d), libcontainer's %d",
					len(ours)/insnSize, stubLen(t, ours), len(theirs)/insnSize)
			}

			ov, tv := newVM(t, ours), newVM(t, theirs)
			archs := []uint32{a.native, a.foreign, 0, unix.AUDIT_ARCH_S390X}
			if tc.nativeOnly {
				archs = archs[:1]
			}
			var nrs []uint32
			for nr := uint32(0); nr < 1100; nr++ {
				nrs = append(nrs, nr)
			}
			if runtime.GOARCH == "amd64" && !tc.nativeOnly {
				for nr := uint32(0); nr < 1100; nr++ {
					nrs = append(nrs, x32Bit|nr)
				}
			}
			nrs = append(nrs, 0x7fffffff, 0x80000000, 0x80000001, 0xbfffffff, 0xffffffff)
			argSets := [][]uint64{
				nil,
				{0x0008}, {0x20000}, {0xffffffff}, {1}, {1 << 32}, {0x0040000},
				{uint64(unix.SIGCHLD)}, {unix.CLONE_NEWUSER | uint64(unix.SIGCHLD)}, {unix.CLONE_NEWNS}, {0, 1},
				{^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0), ^uint64(0)},
			}
			diffs := 0
			for _, arch := range archs {
				for _, nr := range nrs {
					if tc.nativeOnly && nr&x32Bit != 0 && runtime.GOARCH == "amd64" {
						continue
					}
					for _, args := range argSets {
						o, l := ov.run(arch, nr, args...), tv.run(arch, nr, args...)
						if o != l && !enosysDefaultCorner(tc.profile, arch, nr, o, l) {
							if diffs++; diffs <= 10 {
								t.Errorf("arch %#x nr %d args %#x: ours %s, libcontainer %s", arch, nr, args, verdictName(o), verdictName(l))
							}
						}
					}
				}
			}
			if diffs > 10 {
				t.Errorf("... %d differences in all", diffs)
			}
		})
	}
}

// enosysDefaultCorner is the one known difference from libcontainer, for a
// profile whose default action is ERRNO(ENOSYS). Compile adds no stub
// there, as libcontainer means to; but libcontainer's test for it compares
// the errno with the whole action value, so it adds its stub anyway. The
// stubs send x32 numbers (bit 30) to libseccomp's program, which on x86_64
// kills every number from 0x40000000 up; numbers with bit 31 but not bit 30
// set (0x80000000-0xbfffffff, negative as the kernel's int) are stopped by
// libcontainer's stub with ENOSYS but reach the program here and are killed.
// No libc issues them; the kernel itself would answer ENOSYS.
func enosysDefaultCorner(p *rspec.LinuxSeccomp, arch, nr, ours, theirs uint32) bool {
	return runtime.GOARCH == "amd64" && arch == unix.AUDIT_ARCH_X86_64 &&
		p.DefaultAction == rspec.ActErrno && p.DefaultErrnoRet != nil && *p.DefaultErrnoRet == uint(unix.ENOSYS) &&
		nr >= 0x80000000 && nr&x32Bit == 0 &&
		ours == killThread && theirs == errno(unix.ENOSYS)
}

// goRuntime is what the Go runtime of libcontainerChild may need once its
// thread is filtered: a test profile that refuses it kills the child
// before its filter can be read.
var goRuntime = []string{
	"read", "write", "exit", "exit_group", "futex", "rt_sigreturn", "rt_sigprocmask", "sigaltstack",
	"sched_yield", "nanosleep", "clock_gettime", "mmap", "munmap", "madvise", "getpid", "gettid", "tgkill",
}

// libcontainerProgram runs a child that installs profile with libcontainer's
// seccomp.InitSeccomp on one thread, and reads the program the kernel holds
// for that thread.
func libcontainerProgram(t *testing.T, profile *rspec.LinuxSeccomp) []byte {
	t.Helper()
	body, err := json.Marshal(profile)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "profile.json")
	if err := os.WriteFile(path, body, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=libcontainer", "CORRAL_FILTER_PROFILE="+path)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The child cannot be asked to exit: under some of the profiles it
	// can hardly make a syscall.
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()
	var line string
	if _, err := fmt.Fscanln(stdout, &line); err != nil {
		t.Fatalf("libcontainer child: %v", err)
	}
	tid, err := strconv.Atoi(line)
	if err != nil {
		t.Fatalf("libcontainer child said %q, want its thread id", line)
	}
	// The child says nothing once filtered (it may not be allowed to
	// write), so watch the thread's seccomp mode instead.
	status := fmt.Sprintf("/proc/%d/task/%d/status", cmd.Process.Pid, tid)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		b, err := os.ReadFile(status)
		if err != nil {
			t.Fatalf("libcontainer child: %v (did InitSeccomp fail?)", err)
		}
		if bytes.Contains(b, []byte("\nSeccomp:\t2\n")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("libcontainer child: no filter installed after 10s")
		}
	}

	// ptrace requests must all come from the thread that attached.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceAttach(tid); err != nil {
		t.Fatalf("ptrace attach %d: %v", tid, err)
	}
	defer unix.PtraceDetach(tid)
	var ws unix.WaitStatus
	if _, err := unix.Wait4(tid, &ws, unix.WALL, nil); err != nil {
		t.Fatalf("wait for ptrace stop: %v", err)
	}
	getFilter := func(buf []unix.SockFilter) int {
		var p unsafe.Pointer
		if len(buf) > 0 {
			p = unsafe.Pointer(&buf[0])
		}
		n, _, e := unix.Syscall6(unix.SYS_PTRACE, unix.PTRACE_SECCOMP_GET_FILTER, uintptr(tid), 0, uintptr(p), 0, 0)
		if e != 0 {
			t.Fatalf("PTRACE_SECCOMP_GET_FILTER: %v", e)
		}
		return int(n)
	}
	insns := make([]unix.SockFilter, getFilter(nil))
	getFilter(insns)
	raw := make([]bpf.RawInstruction, len(insns))
	for i, in := range insns {
		raw[i] = bpf.RawInstruction{Op: in.Code, Jt: in.Jt, Jf: in.Jf, K: in.K}
	}
	return encode(raw)
}

// TestKernel loads compiled programs for real, in a child process, and
// checks what the syscalls return.
func TestKernel(t *testing.T) {
	nativeABI(t) // the probes' expectations are for a stubbed architecture
	p := defaultProfile(t)
	prog := compileOK(t, p)
	path := filepath.Join(t.TempDir(), "default.bpf")
	if err := os.WriteFile(path, prog, 0o600); err != nil {
		t.Fatal(err)
	}
	beyond := largestKnown(t, p) + 1

	filtered := runProbe(t, "CORRAL_FILTER_PROGRAM="+path, "CORRAL_FILTER_BEYOND="+strconv.Itoa(int(beyond)))
	unfiltered := runProbe(t, "CORRAL_FILTER_BEYOND="+strconv.Itoa(int(beyond)))
	t.Logf("under the filter: %v", filtered)
	t.Logf("without it:       %v", unfiltered)

	for _, tc := range []struct {
		probe string
		want  string
		// unfilteredNot, if set, must not be the result without the
		// filter: it shows that the filter is what gives want.
		unfilteredNot string
	}{
		{"getpid", "ok", ""},
		{"mount", "EPERM", "EPERM"},
		{"unshare-newuser", "EPERM", "EPERM"},
		{"nr-1000", "ENOSYS", ""},
		{"beyond-largest", "ENOSYS", ""},
		{"clone3", "ENOSYS", "ENOSYS"},
		{"personality-query", "ok", ""},
		{"personality-addr-no-randomize", "EPERM", "EPERM"},
		{"exec", "exec-ok", ""},
	} {
		if got := filtered[tc.probe]; got != tc.want {
			t.Errorf("%s under the filter = %q, want %q", tc.probe, got, tc.want)
		}
		if tc.unfilteredNot != "" && unfiltered[tc.probe] == tc.unfilteredNot {
			t.Errorf("%s without the filter = %q too: the probe does not test the filter", tc.probe, unfiltered[tc.probe])
		}
	}
	if unfiltered["beyond-largest"] == "ENOSYS" {
		t.Logf("this kernel lacks syscall %d as well, so here beyond-largest does not show the stub at work (TestDefaultProfileVerdicts does)", beyond)
	}
}

// runProbe runs the probe child with env and returns its "probe result"
// lines as a map.
func runProbe(t *testing.T, env ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), childEnv+"=probe"), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("probe child (%v): %v\nstdout:\n%s\nstderr:\n%s", env, err, out, stderr.Bytes())
	}
	results := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "exec-ok" {
			results["exec"] = line
			continue
		}
		name, result, _ := strings.Cut(line, " ")
		results[name] = result
	}
	return results
}

// TestKernelForeignABI checks what libseccomp's bad-arch action does for
// real: a 32-bit syscall (int $0x80) from a process under the native-only
// filter kills it with SIGSYS.
func TestKernelForeignABI(t *testing.T) {
	if runtime.GOARCH != "amd64" {
		t.Skip("the int $0x80 probe is x86_64 code")
	}
	gcc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("gcc not installed: it builds the int $0x80 probe (cgo needs it anyway)")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "int80.c")
	// i386 getpid through int $0x80, then exit(0) through the native ABI
	// if it returned a pid.
	const code = `void _start(void) {
	long r;
	__asm__ volatile ("int $0x80" : "=a"(r) : "a"(20L) : "memory");
	__asm__ volatile ("syscall" :: "a"(60L), "D"(r > 0 ? 0L : 1L) : "rcx", "r11", "memory");
	for (;;) {}
}
`
	if err := os.WriteFile(src, []byte(code), 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "int80")
	if out, err := exec.Command(gcc, "-nostdlib", "-static", "-no-pie", "-fno-stack-protector", "-O1", "-o", bin, src).CombinedOutput(); err != nil {
		t.Fatalf("gcc: %v\n%s", err, out)
	}
	// Machines of one kind differ here: some kernels (or hypervisors) run
	// 32-bit syscalls, others fault on int $0x80 before any filter is
	// asked. On those the kernel refuses the foreign ABI itself; the
	// filter's verdict for it is proven in the BPF VM
	// (TestDefaultProfileVerdicts), and here the probe must still die.
	_, bare := exec.Command(bin).CombinedOutput()
	kernelRefuses := bare != nil
	if kernelRefuses {
		t.Logf("this kernel cannot run 32-bit syscalls (%v without a filter): checking only that the probe dies under the filter", bare)
	}

	path := filepath.Join(dir, "default.bpf")
	if err := os.WriteFile(path, compileOK(t, defaultProfile(t)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), childEnv+"=probe", "CORRAL_FILTER_PROGRAM="+path, "CORRAL_FILTER_EXEC="+bin)
	out, err := cmd.CombinedOutput()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("int $0x80 under the filter: err = %v, want death by SIGSYS\n%s", err, out)
	}
	ws := exitErr.Sys().(syscall.WaitStatus)
	if kernelRefuses {
		if !ws.Signaled() {
			t.Fatalf("int $0x80 under the filter: %v, want death by a signal\n%s", exitErr, out)
		}
		return
	}
	if !ws.Signaled() || ws.Signal() != syscall.SIGSYS {
		t.Fatalf("int $0x80 under the filter: %v, want death by SIGSYS\n%s", exitErr, out)
	}
}

const childEnv = "CORRAL_FILTER_TEST_CHILD"

func TestMain(m *testing.M) {
	switch os.Getenv(childEnv) {
	case "":
		os.Exit(m.Run())
	case "probe":
		probeChild()
	case "libcontainer":
		libcontainerChild()
	}
	fmt.Fprintln(os.Stderr, "unknown child mode", os.Getenv(childEnv))
	os.Exit(2)
}

// probeChild loads the program named by CORRAL_FILTER_PROGRAM (if any) on
// its thread, as corral's init will, then either execs
// CORRAL_FILTER_EXEC or makes its probe syscalls from that thread and
// prints one "name result" line each, and finally execs a shell to show
// that exec still works under the filter.
func probeChild() {
	runtime.LockOSThread() // the filter is for this thread only (no TSYNC)
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		os.Exit(3)
	}
	// A process killed by SIGSYS dumps core: not in the test's directory.
	if err := unix.Setrlimit(unix.RLIMIT_CORE, &unix.Rlimit{}); err != nil {
		fail("setrlimit: %v", err)
	}
	if path := os.Getenv("CORRAL_FILTER_PROGRAM"); path != "" {
		prog, err := os.ReadFile(path)
		if err != nil {
			fail("%v", err)
		}
		if err := loadProgram(prog); err != nil {
			fail("load: %v", err)
		}
	}
	if exe := os.Getenv("CORRAL_FILTER_EXEC"); exe != "" {
		fail("exec %s: %v", exe, unix.Exec(exe, []string{exe}, nil))
	}
	beyond, err := strconv.Atoi(os.Getenv("CORRAL_FILTER_BEYOND"))
	if err != nil {
		fail("CORRAL_FILTER_BEYOND: %v", err)
	}

	var keep [][]byte // the strings must outlive the probes
	str := func(s string) uintptr {
		b, err := unix.ByteSliceFromString(s)
		if err != nil {
			fail("%v", err)
		}
		keep = append(keep, b)
		return uintptr(unsafe.Pointer(&b[0]))
	}
	probe := func(name string, nr uintptr, args ...uintptr) {
		var a [6]uintptr
		copy(a[:], args)
		r, _, e := unix.RawSyscall6(nr, a[0], a[1], a[2], a[3], a[4], a[5])
		switch {
		case e != 0:
			fmt.Printf("%s %s\n", name, unix.ErrnoName(e))
		case name == "getpid" && int(r) != os.Getpid():
			fmt.Printf("%s returned %d, not %d\n", name, r, os.Getpid())
		default:
			fmt.Printf("%s ok\n", name)
		}
	}
	probe("getpid", unix.SYS_GETPID)
	probe("mount", unix.SYS_MOUNT, str("none"), str("/nonexistent-corral-filter-test"), str("tmpfs"), 0, 0)
	probe("unshare-newuser", unix.SYS_UNSHARE, unix.CLONE_NEWUSER)
	probe("nr-1000", 1000)
	probe("beyond-largest", uintptr(beyond))
	probe("clone3", unix.SYS_CLONE3, 0, 0)
	probe("personality-query", unix.SYS_PERSONALITY, 0xffffffff)
	probe("personality-addr-no-randomize", unix.SYS_PERSONALITY, 0x0040000)
	runtime.KeepAlive(keep)

	err = unix.Exec("/bin/sh", []string{"sh", "-c", "/bin/true && echo exec-ok"}, os.Environ())
	fail("exec /bin/sh: %v", err)
}

// loadProgram installs prog on the calling thread the way corral's init
// will: no_new_privs, then seccomp(SECCOMP_SET_MODE_FILTER) with flags 0.
func loadProgram(prog []byte) error {
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{
		Len:    uint16(len(prog) / insnSize),
		Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0])),
	}
	_, _, e := unix.RawSyscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, 0, uintptr(unsafe.Pointer(&fprog)))
	runtime.KeepAlive(prog)
	if e != 0 {
		return e
	}
	return nil
}

// libcontainerChild prints the id of its locked thread, then installs the
// profile in CORRAL_FILTER_PROFILE on it with libcontainer's own code, and
// waits to be killed while the parent reads the filter back.
func libcontainerChild() {
	runtime.LockOSThread()
	fail := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, format+"\n", args...)
		os.Exit(3)
	}
	body, err := os.ReadFile(os.Getenv("CORRAL_FILTER_PROFILE"))
	if err != nil {
		fail("%v", err)
	}
	var p rspec.LinuxSeccomp
	if err := json.Unmarshal(body, &p); err != nil {
		fail("%v", err)
	}
	config, err := specconv.SetupSeccomp(&p)
	if err != nil {
		fail("SetupSeccomp: %v", err)
	}
	// libcontainer sets no_new_privs itself, from the spec.
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		fail("no_new_privs: %v", err)
	}
	fmt.Println(unix.Gettid())
	if _, err := seccomp.InitSeccomp(config); err != nil {
		fail("InitSeccomp: %v", err)
	}
	for {
		time.Sleep(time.Hour) // parks the locked thread in futex(2)
	}
}
