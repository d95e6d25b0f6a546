//go:build !linux

package link

import (
	"net/netip"
	"time"
)

func EnsureBridge(string, netip.Prefix, string) error { return ErrUnsupported }
func RemoveBridge(string, string) error               { return ErrUnsupported }

func Attach(string, string, string, netip.Prefix, netip.Addr) error { return ErrUnsupported }
func Detach(string, string) error                                   { return ErrUnsupported }
func Release(string, string, time.Duration) error                   { return ErrUnsupported }

func ForgetConntrack(netip.Addr) error                  { return ErrUnsupported }
func Counters(string) (rx, tx uint64, err error)        { return 0, 0, ErrUnsupported }
func Orphans(string, map[string]bool) ([]string, error) { return nil, ErrUnsupported }
