package link

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// EnsureBridge makes the bridge name with the address gw (the gateway of
// its subnet, e.g. 10.88.0.1/16) and sets it up, unless corral made it
// already for owner. A link of that name that is not a bridge marked for
// owner is refused (ErrForeignLink): it may be the host's, or another
// corral's. So is a subnet that overlaps a route of the namespace other
// than the bridge's own (ErrSubnetOverlap): the sandboxes would shadow,
// or be shadowed by, a network the host reaches.
func EnsureBridge(name string, gw netip.Prefix, owner string) error {
	if err := checkName("bridge", name); err != nil {
		return err
	}
	if !gw.Addr().Is4() || gw.Bits() > 30 || gw.Addr() == gw.Masked().Addr() {
		return fmt.Errorf("bridge %s: address %s: want a host address of an IPv4 subnet of at most /30", name, gw)
	}
	alias := ownerAlias(owner)
	if owner == "" || len(alias) > maxAlias {
		return fmt.Errorf("bridge %s: owner %q: want 1 to %d bytes", name, owner, maxAlias-len(ownerAlias("")))
	}
	// Twice at most: a link made by someone else between our look and
	// our rename is looked at again.
	for try := 0; ; try++ {
		l, err := netlink.LinkByName(name)
		var made bool
		if errors.As(err, &netlink.LinkNotFoundError{}) {
			if err := checkOverlap(name, owner, gw.Masked()); err != nil {
				return err
			}
			l, err = makeBridge(name, alias)
			if errors.Is(err, unix.EEXIST) && try == 0 {
				continue
			}
			made = true
		}
		if err != nil {
			return fmt.Errorf("bridge %s: %w", name, err)
		}
		err = setUpBridge(l, gw, owner)
		if err != nil && made {
			// Not half made: the next try starts from nothing.
			_ = netlink.LinkDel(l)
		}
		return err
	}
}

// makeBridge makes the bridge under a temporary name, marks it, and only
// then gives it its name: the kernel ignores an alias given at creation,
// and a bridge seen under name without its mark would be taken for
// somebody else's forever after. A crash in between leaves a down bridge
// with a temporary name, in nobody's way.
//
// The bridge is given its MAC address: one it only inherits, the kernel
// changes to the lowest of its ports' as sandboxes come and go, and every
// sandbox's ARP entry for the gateway goes stale.
func makeBridge(name, alias string) (netlink.Link, error) {
	var id [6]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, err
	}
	mac := net.HardwareAddr(id[:])
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	tmp := VethPrefix + "t" + hex.EncodeToString(id[:])[:ifNameSize-len(VethPrefix)-1]
	br := &netlink.Bridge{LinkAttrs: netlink.NewLinkAttrs()}
	br.Name, br.HardwareAddr = tmp, mac
	if err := netlink.LinkAdd(br); err != nil {
		return nil, fmt.Errorf("create: %w", err)
	}
	if err := netlink.LinkSetAlias(br, alias); err != nil {
		_ = netlink.LinkDel(br)
		return nil, fmt.Errorf("mark: %w", err)
	}
	if err := netlink.LinkSetName(br, name); err != nil {
		_ = netlink.LinkDel(br)
		return nil, err
	}
	return netlink.LinkByName(name)
}

// setUpBridge checks that l is corral's bridge for owner, that its
// subnet overlaps no other route, gives it the address gw, and sets it
// up.
func setUpBridge(l netlink.Link, gw netip.Prefix, owner string) error {
	a := l.Attrs()
	if l.Type() != "bridge" || a.Alias != ownerAlias(owner) {
		marked := "not marked as corral's"
		if a.Alias != "" {
			marked = fmt.Sprintf("alias %q", a.Alias)
		}
		return fmt.Errorf("%w: %s is a %s (%s), not corral's bridge for %s: pick another daemon.bridge name",
			ErrForeignLink, a.Name, l.Type(), marked, owner)
	}
	if err := checkOverlap(a.Name, owner, gw.Masked()); err != nil {
		return err
	}
	var addrs []netlink.Addr
	err := retryDump(func() (err error) { addrs, err = netlink.AddrList(l, netlink.FAMILY_V4); return err })
	if err != nil {
		return fmt.Errorf("bridge %s: addresses: %w", a.Name, err)
	}
	has := false
	for _, ad := range addrs {
		if p, ok := prefixOf(ad.IPNet); ok && p == gw {
			has = true
		}
	}
	if !has && len(addrs) > 0 {
		// Its sandboxes, if any still run, are on the old subnet.
		return fmt.Errorf("bridge %s has the address %s, not %s: stop its sandboxes and remove the bridge (the subnet changed), or pick another daemon.bridge name",
			a.Name, addrs[0].IPNet, gw)
	}
	if !has {
		addr := &netlink.Addr{IPNet: ipNet(gw)}
		if err := netlink.AddrAdd(l, addr); err != nil && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("bridge %s: add address %s: %w", a.Name, gw, err)
		}
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return fmt.Errorf("bridge %s: set up: %w", a.Name, err)
	}
	return nil
}

// RemoveBridge deletes the bridge name if it is corral's for owner; a
// missing one is fine, anybody else's is refused (ErrForeignLink).
func RemoveBridge(name, owner string) error {
	l, err := netlink.LinkByName(name)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("bridge %s: %w", name, err)
	}
	if l.Type() != "bridge" || l.Attrs().Alias != ownerAlias(owner) {
		return fmt.Errorf("%w: %s is a %s with alias %q, not corral's bridge for %s: left alone",
			ErrForeignLink, name, l.Type(), l.Attrs().Alias, owner)
	}
	if err := netlink.LinkDel(l); err != nil {
		return fmt.Errorf("remove bridge %s: %w", name, err)
	}
	return nil
}

// checkOverlap refuses a subnet that overlaps an IPv4 route of any table,
// other than a default route and the bridge's own: the routes of the
// link named bridge if it is corral's for owner. (By name, not by an
// index known beforehand: the bridge may be made, with its route, by a
// concurrent corral between a look and this check.)
func checkOverlap(bridge, owner string, subnet netip.Prefix) error {
	var routes []netlink.Route
	err := retryDump(func() (err error) {
		routes, err = netlink.RouteListFiltered(netlink.FAMILY_V4,
			&netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		return err
	})
	if err != nil {
		return fmt.Errorf("bridge %s: list routes: %w", bridge, err)
	}
	for _, r := range routes {
		dst, ok := prefixOf(r.Dst)
		if !ok || dst.Bits() == 0 || !dst.Overlaps(subnet) || viaOnly(r, bridge, owner) {
			continue
		}
		return fmt.Errorf("%w: subnet %s of bridge %s overlaps the route %s: pick another subnet",
			ErrSubnetOverlap, subnet, bridge, describe(r))
	}
	return nil
}

// viaOnly reports whether every hop of r goes out of corral's bridge
// for owner named bridge.
func viaOnly(r netlink.Route, bridge, owner string) bool {
	hops := []int{r.LinkIndex}
	if len(r.MultiPath) > 0 {
		hops = hops[:0]
		for _, h := range r.MultiPath {
			hops = append(hops, h.LinkIndex)
		}
	}
	for _, index := range hops {
		l, err := netlink.LinkByIndex(index)
		if err != nil || l.Attrs().Name != bridge || l.Type() != "bridge" || l.Attrs().Alias != ownerAlias(owner) {
			return false
		}
	}
	return true
}

// describe names a route as `ip route` would: its destination, gateway,
// device and table.
func describe(r netlink.Route) string {
	s := r.Dst.String()
	if r.Gw != nil {
		s += " via " + r.Gw.String()
	}
	if r.LinkIndex != 0 {
		if l, err := netlink.LinkByIndex(r.LinkIndex); err == nil {
			s += " dev " + l.Attrs().Name
		}
	}
	switch r.Table {
	case unix.RT_TABLE_MAIN:
	case unix.RT_TABLE_LOCAL:
		s += " table local"
	default:
		s += fmt.Sprintf(" table %d", r.Table)
	}
	return s
}

// retryDump runs a netlink dump again while the kernel says the table
// changed under it, so that a busy host gives a whole answer.
func retryDump(dump func() error) error {
	var err error
	for try := 0; try < 10; try++ {
		if err = dump(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return err
		}
	}
	return err
}

// prefixOf converts an IPv4 net.IPNet.
func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := n.Mask.Size()
	if bits == 0 {
		return netip.Prefix{}, false
	}
	if bits == 128 && ip.Is4In6() {
		ones -= 96
	}
	return netip.PrefixFrom(ip.Unmap(), ones), true
}

// ipNet converts a prefix, keeping its address (not masked).
func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
