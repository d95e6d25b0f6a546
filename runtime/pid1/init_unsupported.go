//go:build !linux || !cgo

package pid1

// Supported reports whether the init is built into this binary: it needs
// Linux and cgo. Without it a process started with EnvVar would run the
// binary's main instead.
func Supported() bool { return false }
