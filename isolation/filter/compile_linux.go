//go:build cgo && seccomp

package filter

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	libseccomp "github.com/seccomp/libseccomp-golang"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// maxArgs is the number of syscall arguments seccomp_data carries.
const maxArgs = 6

// Compile turns an OCI seccomp profile into a classic-BPF program, ready to load with
// seccomp(SECCOMP_SET_MODE_FILTER): the raw bytes of an array of struct sock_filter
// (8 bytes each, native endian).
//
// The program gives the verdicts libcontainer v1.5.2 would install for the
// same profile with the same libseccomp (see the package documentation for
// the exceptions and for what is left to the loader). It depends on the
// profile, the libseccomp version and the architecture, and on nothing
// else, so it can be cached.
func Compile(profile *rspec.LinuxSeccomp) ([]byte, error) {
	// Convert with libcontainer's own code, so that the defaults, the
	// validation of actions, operators, architectures and flags, and the
	// split of rule groups into one rule per name are exactly its own.
	config, err := specconv.SetupSeccomp(profile)
	if err != nil {
		return nil, fmt.Errorf("convert seccomp profile: %w", err)
	}
	if config == nil {
		return nil, ErrNoProfile
	}
	if err := refuseUnsupported(config); err != nil {
		return nil, err
	}

	body, err := compileBody(config)
	if err != nil {
		return nil, err
	}
	stub, err := enosysStub(config)
	if err != nil {
		return nil, err
	}
	// The stub leaves A holding arch or nr when it falls through, which is
	// harmless only if the program loads A before it reads it. libseccomp's
	// programs all start by loading the arch; check rather than assume.
	if len(stub) > 0 && (len(body) < insnSize || binary.NativeEndian.Uint16(body) != bpfLdWAbs) {
		return nil, errors.New("libseccomp program does not start with a load: cannot put the ENOSYS stub in front of it")
	}
	rawStub, err := bpf.Assemble(stub)
	if err != nil {
		return nil, fmt.Errorf("assemble ENOSYS stub: %w", err)
	}
	// The stub goes in front of libseccomp's bytes, which are kept as they
	// are rather than round-tripped through an assembler: classic BPF
	// jumps are relative and forward only, so none of them moves.
	prog := append(encode(rawStub), body...)
	if n := len(prog) / insnSize; n > maxInsns {
		return nil, fmt.Errorf("seccomp program of %d instructions: the kernel takes at most %d", n, maxInsns)
	}
	if _, err := decode(prog); err != nil {
		return nil, fmt.Errorf("compiled seccomp program: %w", err)
	}
	return prog, nil
}

// refuseUnsupported rejects what only works with the seccomp agent
// protocol: the listener fd it needs would come from loading with
// SECCOMP_FILTER_FLAG_NEW_LISTENER, and corral has no agent to give it to.
func refuseUnsupported(config *configs.Seccomp) error {
	if config.DefaultAction == configs.Notify {
		return fmt.Errorf("%w: SCMP_ACT_NOTIFY as the default action", ErrUnsupportedFeature)
	}
	for _, call := range config.Syscalls {
		if call != nil && call.Action == configs.Notify {
			return fmt.Errorf("%w: SCMP_ACT_NOTIFY for syscall %q", ErrUnsupportedFeature, call.Name)
		}
	}
	if config.ListenerPath != "" {
		return fmt.Errorf("%w: listenerPath %q (seccomp agent)", ErrUnsupportedFeature, config.ListenerPath)
	}
	if config.ListenerMetadata != "" {
		return fmt.Errorf("%w: listenerMetadata (seccomp agent)", ErrUnsupportedFeature)
	}
	return nil
}

// compileBody builds the libseccomp filter the way libcontainer's
// seccomp.InitSeccomp does, and exports it instead of loading it.
func compileBody(config *configs.Seccomp) ([]byte, error) {
	defaultAction, err := scmpAction(config.DefaultAction, config.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("seccomp default action: %w", err)
	}
	filter, err := libseccomp.NewFilter(defaultAction)
	if err != nil {
		return nil, fmt.Errorf("create seccomp filter: %w", err)
	}
	defer filter.Release()

	// The native architecture is always in a new filter; these are added
	// to it. Syscalls from any other ABI get libseccomp's bad-arch action,
	// KILL_THREAD, which libcontainer leaves as it is.
	for _, name := range config.Architectures {
		arch, err := libseccomp.GetArchFromString(name)
		if err != nil {
			return nil, fmt.Errorf("seccomp architecture %q: %w", name, err)
		}
		if err := filter.AddArch(arch); err != nil {
			return nil, fmt.Errorf("add seccomp architecture %q: %w", name, err)
		}
	}

	// Same threshold as libcontainer: with more rules, a binary tree on
	// the syscall number is shorter to run than a linear list. An error
	// only means an older libseccomp, whose linear program is still right
	// (libseccomp's version is part of the cache key).
	if len(config.Syscalls) > 32 {
		_ = filter.SetOptimize(2)
	}

	// libcontainer also clears libseccomp's no_new_privs attribute here;
	// it only matters to libseccomp's own loader, not to the exported
	// program.

	for _, call := range config.Syscalls {
		if err := addRule(filter, call, defaultAction); err != nil {
			return nil, err
		}
	}
	return exportBPF(filter)
}

// addRule adds one syscall rule with libcontainer's matchCall semantics.
func addRule(filter *libseccomp.ScmpFilter, call *configs.Syscall, defaultAction libseccomp.ScmpAction) error {
	if call == nil {
		return errors.New("nil syscall rule in seccomp profile")
	}
	if call.Name == "" {
		return errors.New("seccomp rule with an empty syscall name")
	}
	action, err := scmpAction(call.Action, call.ErrnoRet)
	if err != nil {
		return fmt.Errorf("seccomp rule for syscall %q: %w", call.Name, err)
	}
	// libseccomp refuses a rule whose action is the default one; it would
	// change nothing anyway.
	if action == defaultAction {
		return nil
	}
	// A name this libseccomp does not know is taken to be a syscall this
	// kernel lacks, and skipped rather than failing the whole profile:
	// profiles list syscalls newer than some of the hosts they run on.
	nr, err := libseccomp.GetSyscallFromName(call.Name)
	if err != nil {
		return nil
	}
	if len(call.Args) == 0 {
		if err := filter.AddRule(nr, action); err != nil {
			return fmt.Errorf("add seccomp rule for syscall %q: %w", call.Name, err)
		}
		return nil
	}

	conds := make([]libseccomp.ScmpCondition, 0, len(call.Args))
	var perArg [maxArgs]int
	repeated := false
	for _, arg := range call.Args {
		cond, err := scmpCondition(arg)
		if err != nil {
			return fmt.Errorf("seccomp rule for syscall %q: %w", call.Name, err)
		}
		perArg[arg.Index]++ // Index < maxArgs: checked by scmpCondition.
		repeated = repeated || perArg[arg.Index] > 1
		conds = append(conds, cond)
	}
	// All conditions of a rule must hold (AND). But libseccomp cannot AND
	// two conditions on the same argument, so profiles written for older
	// runtimes, which made each condition its own rule (OR), still get that
	// meaning when an argument repeats. This is what libcontainer does.
	if repeated {
		for _, cond := range conds {
			if err := filter.AddRuleConditional(nr, action, []libseccomp.ScmpCondition{cond}); err != nil {
				return fmt.Errorf("add seccomp rule for syscall %q: %w", call.Name, err)
			}
		}
		return nil
	}
	if err := filter.AddRuleConditional(nr, action, conds); err != nil {
		return fmt.Errorf("add seccomp rule for syscall %q: %w", call.Name, err)
	}
	return nil
}

// scmpAction maps a libcontainer action to libseccomp's, as libcontainer's
// getAction does: KILL means KILL_THREAD, and ERRNO and TRACE without a
// return code mean EPERM.
func scmpAction(act configs.Action, errnoRet *uint) (libseccomp.ScmpAction, error) {
	switch act {
	case configs.Kill, configs.KillThread:
		return libseccomp.ActKillThread, nil
	case configs.KillProcess:
		return libseccomp.ActKillProcess, nil
	case configs.Errno:
		return libseccomp.ActErrno.SetReturnCode(returnCode(errnoRet)), nil
	case configs.Trace:
		return libseccomp.ActTrace.SetReturnCode(returnCode(errnoRet)), nil
	case configs.Trap:
		return libseccomp.ActTrap, nil
	case configs.Allow:
		return libseccomp.ActAllow, nil
	case configs.Log:
		return libseccomp.ActLog, nil
	}
	return libseccomp.ActInvalid, fmt.Errorf("invalid seccomp action %d", act)
}

// returnCode is the errno of an ERRNO or TRACE action. The truncation to
// 16 bits is libcontainer's (SECCOMP_RET_DATA is 16 bits wide).
func returnCode(errnoRet *uint) int16 {
	if errnoRet == nil {
		return int16(unix.EPERM)
	}
	return int16(*errnoRet)
}

// scmpCondition maps one argument condition to libseccomp's.
func scmpCondition(arg *configs.Arg) (libseccomp.ScmpCondition, error) {
	if arg == nil {
		return libseccomp.ScmpCondition{}, errors.New("nil argument condition")
	}
	if arg.Index >= maxArgs {
		return libseccomp.ScmpCondition{}, fmt.Errorf("argument index %d: syscalls have %d arguments", arg.Index, maxArgs)
	}
	var op libseccomp.ScmpCompareOp
	switch arg.Op {
	case configs.EqualTo:
		op = libseccomp.CompareEqual
	case configs.NotEqualTo:
		op = libseccomp.CompareNotEqual
	case configs.GreaterThan:
		op = libseccomp.CompareGreater
	case configs.GreaterThanOrEqualTo:
		op = libseccomp.CompareGreaterEqual
	case configs.LessThan:
		op = libseccomp.CompareLess
	case configs.LessThanOrEqualTo:
		op = libseccomp.CompareLessOrEqual
	case configs.MaskEqualTo:
		op = libseccomp.CompareMaskedEqual
	default:
		return libseccomp.ScmpCondition{}, fmt.Errorf("invalid seccomp operator %d", arg.Op)
	}
	return libseccomp.MakeCondition(arg.Index, op, arg.Value, arg.ValueTwo)
}

// exportBPF returns libseccomp's program for filter. libseccomp before
// 2.6 (Debian 12 has 2.5.4) can only write it to a file descriptor; a
// memfd avoids both a temporary file and the pipe-plus-reader-goroutine
// dance that a pipe, whose buffer can fill up, would need.
func exportBPF(filter *libseccomp.ScmpFilter) ([]byte, error) {
	prog, err := filter.ExportBPFMem()
	var verr *libseccomp.VersionError
	if !errors.As(err, &verr) {
		if err != nil {
			return nil, fmt.Errorf("export seccomp filter: %w", err)
		}
		return prog, nil
	}
	fd, err := unix.MemfdCreate("corral-seccomp", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("export seccomp filter: memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), "corral-seccomp")
	defer f.Close()
	if err := filter.ExportBPF(f); err != nil {
		return nil, fmt.Errorf("export seccomp filter: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("export seccomp filter: %w", err)
	}
	prog, err = io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("export seccomp filter: %w", err)
	}
	return prog, nil
}

// backendVersion names the compiler behind Compile, for the cache key: a
// different libseccomp may emit a different (if equivalent) program.
func backendVersion() string {
	major, minor, micro := libseccomp.GetLibraryVersion()
	return fmt.Sprintf("libseccomp %d.%d.%d", major, minor, micro)
}
