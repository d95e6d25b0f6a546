//go:build !linux

package proxy

import "net/netip"

// Owner is "": finding a socket's process needs Linux's /proc.
func Owner(proto string, addr netip.AddrPort) string { return "" }
