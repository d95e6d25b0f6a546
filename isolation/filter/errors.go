package filter

import "errors"

var (
	// ErrNoProfile is returned for a nil profile, or one with neither a
	// default action nor syscalls: libcontainer reads that as "no seccomp",
	// so there is no program to compile. Callers should not load any.
	ErrNoProfile = errors.New("no seccomp profile")

	// ErrUnsupportedFeature is returned for a profile that asks for
	// something a raw program loaded with flags 0 cannot give, such as a
	// seccomp agent. The wrapping error names the feature.
	ErrUnsupportedFeature = errors.New("seccomp feature not supported by corral")

	// ErrUnsupported is returned when this build or architecture cannot
	// compile profiles: the binary was built without cgo and the seccomp
	// tag, or corral does not know how to write the -ENOSYS stub for the
	// native architecture.
	ErrUnsupported = errors.New("seccomp compilation not supported")
)
