//go:build cgo && seccomp

package filter

import (
	"fmt"

	"github.com/opencontainers/runc/libcontainer/configs"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Offsets in struct seccomp_data, the input of every seccomp program.
const (
	offNr   = 0 // int nr
	offArch = 4 // u32 arch (AUDIT_ARCH_*)
)

// x32Bit marks an x32-ABI syscall number on x86_64 (__X32_SYSCALL_BIT).
const x32Bit = 0x40000000

// retENOSYS is the verdict of the stub: fail with ENOSYS.
const retENOSYS = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)

// bpfLdWAbs is "ld [k]": load a 32-bit word of seccomp_data into A.
const bpfLdWAbs = 0x20

// enosysStub returns the instructions to put in front of libseccomp's
// program so that a native syscall numbered above every syscall the
// profile names fails with ENOSYS instead of getting the default action.
//
// Why: a profile (and the libseccomp that compiled it) knows the syscalls
// of its time. A later libc tries a newer syscall first (clone3, faccessat2,
// openat2, ...) and falls back to the old one only on ENOSYS. The default
// action, usually EPERM, would make it give up instead. A number above the
// profile's largest is, as far as the profile can tell, a syscall it has
// never heard of, so ENOSYS is the honest answer. libcontainer's patchbpf
// does the same; this is a smaller version of it for one architecture.
//
// The stub is, on x86_64 (aarch64 has no x32 line):
//
//	ld  [4]                     ; arch
//	jeq #AUDIT_ARCH_X86_64, 0, 4 ; other ABIs: straight to the program
//	ld  [0]                     ; nr
//	jset #0x40000000, 2, 0      ; x32: straight to the program
//	jgt #max, 0, 1              ; above the largest known: ENOSYS
//	ret #ERRNO(ENOSYS)
//	                            ; the program
//
// It returns nil when the stub would change nothing or is not wanted.
func enosysStub(config *configs.Seccomp) ([]bpf.Instruction, error) {
	switch {
	case config.DefaultAction == configs.Errno && config.DefaultErrnoRet != nil && *config.DefaultErrnoRet == uint(unix.ENOSYS):
		// The default already says ENOSYS.
		return nil, nil
	case config.DefaultAction == configs.Allow, config.DefaultAction == configs.Log, config.DefaultAction == configs.Trace:
		// A permissive default already lets new syscalls through (a
		// tracer is trusted to handle them); ENOSYS would be stricter
		// than the profile. libcontainer skips these too.
		return nil, nil
	}

	native, err := libseccomp.GetNativeArch()
	if err != nil {
		return nil, fmt.Errorf("seccomp native architecture: %w", err)
	}
	var auditArch uint32
	switch native {
	case libseccomp.ArchAMD64:
		auditArch = unix.AUDIT_ARCH_X86_64
	case libseccomp.ArchARM64:
		auditArch = unix.AUDIT_ARCH_AARCH64
	default:
		return nil, fmt.Errorf("%w: no ENOSYS stub for native architecture %v", ErrUnsupported, native)
	}

	largest, ok := largestSyscall(config, native)
	if !ok {
		// The profile names no syscall this architecture knows: there is
		// no line to draw.
		return nil, nil
	}

	tail := []bpf.Instruction{bpf.LoadAbsolute{Off: offNr, Size: 4}}
	if native == libseccomp.ArchAMD64 {
		// x32 numbers are all above any x86_64 one; without this test the
		// stub would answer ENOSYS to all of them. They are the program's
		// business (it kills them unless the profile lists x32).
		tail = append(tail, bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: x32Bit, SkipTrue: 2})
	}
	tail = append(tail,
		bpf.JumpIf{Cond: bpf.JumpGreaterThan, Val: largest, SkipFalse: 1},
		bpf.RetConstant{Val: retENOSYS},
	)
	return append([]bpf.Instruction{
		bpf.LoadAbsolute{Off: offArch, Size: 4},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: auditArch, SkipFalse: uint8(len(tail))},
	}, tail...), nil
}

// largestSyscall is the largest number, on arch, of any syscall the
// profile names. Like libcontainer it counts every rule, including those
// whose action is the default and so add nothing to the program: the
// profile knows about them all the same.
func largestSyscall(config *configs.Seccomp, arch libseccomp.ScmpArch) (uint32, bool) {
	var largest libseccomp.ScmpSyscall
	for _, call := range config.Syscalls {
		if call == nil {
			continue
		}
		// Unknown names are skipped; names of syscalls that exist only on
		// other architectures resolve to negative pseudo-numbers and lose.
		nr, err := libseccomp.GetSyscallFromNameByArch(call.Name, arch)
		if err == nil && nr > largest {
			largest = nr
		}
	}
	return uint32(largest), largest > 0
}
