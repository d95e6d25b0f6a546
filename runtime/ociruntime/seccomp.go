package ociruntime

import (
	"slices"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// The one statx the runtime's own init makes between loading the
// container's seccomp filter and exec'ing its process: libcontainer
// (runc 1.4 and later) checks, before closing its file descriptors, that
// /proc/thread-self is not overmounted, by the mount ID statx gives
// (pathrs-lite's fd.GetMountID: dirfd, path, AT_EMPTY_PATH |
// AT_SYMLINK_NOFOLLOW, STATX_MNT_ID_UNIQUE | STATX_MNT_ID).
const (
	runtimeStatxFlags = 0x1000 | 0x100  // AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW
	runtimeStatxMask  = 0x4000 | 0x1000 // STATX_MNT_ID_UNIQUE | STATX_MNT_ID
)

// allowRuntimeStatx lets the runtime's init make that statx under a
// profile that never names statx (written before it existed, or before
// runtimes used it: runtime-tools' default, old Docker ones). Without it
// every such container fails to start, the check failing with ENOSYS or
// EPERM (runc issue 5059). Only those exact flags and mask get through:
// what they return (a file's stat and mount ID) the container can
// already read with newfstatat and /proc/self/fdinfo, which any such
// profile allows. A profile that names statx is left as it is: its
// author decided.
func allowRuntimeStatx(s *rspec.LinuxSeccomp) {
	if s == nil || s.DefaultAction == rspec.ActAllow || s.DefaultAction == rspec.ActLog {
		return
	}
	for _, sc := range s.Syscalls {
		if slices.Contains(sc.Names, "statx") {
			return
		}
	}
	s.Syscalls = append(s.Syscalls, rspec.LinuxSyscall{
		Names:  []string{"statx"},
		Action: rspec.ActAllow,
		Args: []rspec.LinuxSeccompArg{
			{Index: 2, Value: runtimeStatxFlags, Op: rspec.OpEqualTo},
			{Index: 3, Value: runtimeStatxMask, Op: rspec.OpEqualTo},
		},
	})
}
