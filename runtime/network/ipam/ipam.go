// Package ipam gives each sandbox on corral's bridge its own IPv4
// address in the bridge's subnet. An address is sticky: recorded in a
// directory of the state dir, it is kept across restarts of the sandbox
// and of corral, seen by every corral process on that state dir (the
// daemon, `corral run`), and survives any of them being killed; it is
// freed when released.
//
// The subnet's first host address is the gateway (the bridge's own); it,
// the network address and the broadcast address are never handed out.
package ipam

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrExhausted: every address of the subnet is in use.
var ErrExhausted = errors.New("every address of the subnet is in use")

// ErrBadName: the name cannot key a record.
var ErrBadName = errors.New("invalid name for an address record")

// maxName leaves room for the record's prefix in a 255-byte file name.
const maxName = 250

// checkName refuses names that are not one plain file name: the name
// becomes the name of a record in the directory.
func checkName(name string) error {
	if name == "" || name == "." || name == ".." || len(name) > maxName ||
		strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("%w: %q (want 1 to %d bytes, no '/' or NUL)", ErrBadName, name, maxName)
	}
	return nil
}

// hosts is the range of addresses that may be handed out, first to last.
type hosts struct {
	subnet      netip.Prefix
	gateway     netip.Addr
	first, last netip.Addr
}

// hostsOf checks subnet and returns its usable range: it must be IPv4
// with room for the gateway and at least one sandbox (at most /30).
func hostsOf(subnet netip.Prefix) (hosts, error) {
	if !subnet.IsValid() || !subnet.Addr().Is4() {
		return hosts{}, fmt.Errorf("subnet %s: want an IPv4 prefix", subnet)
	}
	if subnet.Bits() > 30 {
		return hosts{}, fmt.Errorf("subnet %s: want at most /30, room for the gateway and a sandbox", subnet)
	}
	subnet = subnet.Masked()
	network := subnet.Addr()
	gateway := network.Next()
	return hosts{subnet: subnet, gateway: gateway, first: gateway.Next(), last: broadcast(subnet).Prev()}, nil
}

// broadcast is the last address of an IPv4 prefix.
func broadcast(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v |= host
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// has reports whether a may be handed out.
func (h hosts) has(a netip.Addr) bool {
	return a.Is4() && h.first.Compare(a) <= 0 && a.Compare(h.last) <= 0
}

// size is the number of addresses that may be handed out.
func (h hosts) size() uint64 {
	return uint64(1)<<(32-h.subnet.Bits()) - 3
}

// parseAddr reads an address written by this package: canonical dotted
// IPv4 and nothing else, so that each address has one record name.
func parseAddr(s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() || a.String() != s {
		return netip.Addr{}, false
	}
	return a, true
}
