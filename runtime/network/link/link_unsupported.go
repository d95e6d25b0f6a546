//go:build !linux

package link

import "net/netip"

func EnsureBridge(string, netip.Prefix, string) error { return ErrUnsupported }
func RemoveBridge(string, string) error               { return ErrUnsupported }
