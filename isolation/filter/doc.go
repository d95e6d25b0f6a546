// Package filter compiles OCI seccomp profiles to raw classic-BPF programs
// and caches them on disk, so that a sandbox's init can install its filter
// with one seccomp(2) call instead of running libseccomp's compiler in every
// new sandbox (about 6-8 ms of a 35 ms start).
//
// The program Compile returns is the one libcontainer v1.5.2 would install
// for the same profile: the profile goes through specconv.SetupSeccomp, the
// libseccomp filter is built rule for rule as seccomp.InitSeccomp builds it,
// and an -ENOSYS stub is put in front of it, as libcontainer's patchbpf
// does, so that syscalls newer than the profile fail with ENOSYS (and e.g.
// glibc falls back to an older syscall) instead of the default EPERM.
//
// # Loading a program
//
// The init reads the file (or the bytes) and installs it on the thread that
// will exec the service, just before the exec:
//
//	prctl(PR_SET_NO_NEW_PRIVS, 1)                 // unless it has CAP_SYS_ADMIN
//	seccomp(SECCOMP_SET_MODE_FILTER, 0, &sock_fprog{len(prog)/8, prog})
//
// The program is in native byte order and only valid for the architecture
// it was compiled on.
//
// # What is not replicated
//
// Compile produces instructions only. What libcontainer does around them
// when it loads them is the init's job (corral's init loads with flags 0),
// and a few corners differ:
//
//   - Filter flags (SECCOMP_FILTER_FLAG_SPEC_ALLOW, _LOG,
//     _WAIT_KILLABLE_RECV, TSYNC) are checked (an unknown or unsupported flag
//     is an error, as in libcontainer) but not applied. libcontainer sets
//     SPEC_ALLOW by default when the profile has no "flags" key; without it
//     the kernel turns on the Speculative Store Bypass mitigation for the
//     sandbox where its spec_store_bypass_disable is in seccomp mode (the
//     default of older kernels), which slows the service down.
//     None of the flags changes a verdict.
//   - The no_new_privs bit: libcontainer clears libseccomp's NNP attribute and
//     sets NNP from the spec. The init must do the same.
//   - SCMP_ACT_NOTIFY, listenerPath and listenerMetadata (the seccomp agent
//     protocol) are refused with ErrUnsupportedFeature: there is nobody to
//     hand the listener fd to.
//   - The -ENOSYS stub covers the native architecture only (x86_64 on amd64,
//     aarch64 on arm64), and on x86_64 not the x32 ABI. libcontainer also
//     stubs every other architecture the profile lists, so a profile that
//     lists x86 or x32 gets the default action (not ENOSYS) for their new
//     syscalls here. corral's profiles are native-only, where the two agree.
//   - For a profile whose default action is already ERRNO(ENOSYS) there is
//     no stub. libcontainer means to skip it too, but its test compares the
//     errno with the whole action value and never matches, so it adds one.
//     The verdicts differ only for the numbers 0x80000000-0xbfffffff on
//     x86_64 (negative ints, never a real syscall): its stub answers ENOSYS,
//     libseccomp's program here kills the thread.
//   - libcontainer logs the syscall names libseccomp does not know at debug
//     level; Compile skips them silently, as libcontainer does otherwise.
package filter
