//go:build !linux || !cgo || !seccomp

package filter

import (
	"fmt"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
)

// Compile would turn an OCI seccomp profile into a classic-BPF program, but
// this binary was built without cgo and the seccomp build tag (libseccomp),
// so it returns ErrUnsupported.
func Compile(profile *rspec.LinuxSeccomp) ([]byte, error) {
	return nil, fmt.Errorf("%w: built without cgo and the seccomp build tag", ErrUnsupported)
}

// backendVersion names the compiler behind Compile, for the cache key.
func backendVersion() string { return "none" }
