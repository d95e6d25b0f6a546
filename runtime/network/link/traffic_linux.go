package link

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Counters is the traffic of a sandbox, in bytes, as its host-side veth
// counts it. What the host side sends the sandbox receives: rx is the
// veth's tx, and tx its rx.
func Counters(hostVeth string) (rx, tx uint64, err error) {
	l, err := netlink.LinkByName(hostVeth)
	if err != nil {
		return 0, 0, fmt.Errorf("counters of %s: %w", hostVeth, err)
	}
	s := l.Attrs().Statistics
	if s == nil {
		return 0, 0, fmt.Errorf("counters of %s: the kernel gave none", hostVeth)
	}
	return s.TxBytes, s.RxBytes, nil
}

// ForgetConntrack deletes the connection tracking entries of addr, as
// source or destination, in either direction (a sandbox behind DNAT is
// the reply's source). Without it a new sandbox given a released address
// inherits the old one's entries: a UDP flow that keeps sending (DNS, a
// metrics push) would keep its stale NAT and never reach the new one
// (containernetworking/plugins#123).
func ForgetConntrack(addr netip.Addr) error {
	if !addr.Is4() {
		return fmt.Errorf("forget connections of %s: want an IPv4 address", addr)
	}
	ip := addr.AsSlice()
	var filters []netlink.CustomConntrackFilter
	for _, t := range []netlink.ConntrackFilterType{netlink.ConntrackOrigSrcIP, netlink.ConntrackOrigDstIP, netlink.ConntrackReplyAnyIP} {
		f := &netlink.ConntrackFilter{}
		if err := f.AddIP(t, ip); err != nil {
			return fmt.Errorf("forget connections of %s: %w", addr, err)
		}
		filters = append(filters, f)
	}
	err := retryDump(func() error {
		_, err := netlink.ConntrackDeleteFilters(netlink.ConntrackTable, unix.AF_INET, filters...)
		return err
	})
	if err != nil {
		return fmt.Errorf("forget connections of %s: %w", addr, err)
	}
	return nil
}

// Orphans lists the veths attached to bridge, made by corral (named by
// VethName), whose names are not in keep: after a crash, the veths of
// sandboxes that are gone, for the caller to delete. A missing bridge has
// none.
func Orphans(bridge string, keep map[string]bool) ([]string, error) {
	br, err := netlink.LinkByName(bridge)
	if errors.As(err, &netlink.LinkNotFoundError{}) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("orphans on bridge %s: %w", bridge, err)
	}
	var links []netlink.Link
	if err := retryDump(func() (err error) { links, err = netlink.LinkList(); return err }); err != nil {
		return nil, fmt.Errorf("orphans on bridge %s: %w", bridge, err)
	}
	var out []string
	for _, l := range links {
		a := l.Attrs()
		if a.MasterIndex == br.Attrs().Index && l.Type() == "veth" &&
			strings.HasPrefix(a.Name, VethPrefix) && !keep[a.Name] {
			out = append(out, a.Name)
		}
	}
	slices.Sort(out)
	return out, nil
}
