//go:build !linux

package proxy

import "syscall"

// control leaves the socket as Go makes it, which on Unix systems is with
// SO_REUSEADDR and without SO_REUSEPORT.
func control(network, address string, c syscall.RawConn) error { return nil }
