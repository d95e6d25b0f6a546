package link

import (
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ForgetConntrack deletes the entries with the address on either side,
// in either direction, and no other.
func TestForgetConntrackDeletesTheAddressesEntries(t *testing.T) {
	hostNS(t)
	// Entries as the test host's conntrack would have them: a flow is
	// named by its original source and destination.
	flows := []struct {
		name             string
		origSrc, origDst string
		replySrc         string // its reply's source; DNAT makes it differ from origDst
		gone             bool
	}{
		{"from the sandbox", "10.214.0.7", "192.0.2.53", "192.0.2.53", true},
		{"to the sandbox", "10.214.0.2", "10.214.0.7", "10.214.0.7", true},
		{"published to the sandbox (DNAT)", "198.51.100.9", "192.0.2.1", "10.214.0.7", true},
		{"another sandbox's", "10.214.0.8", "192.0.2.53", "192.0.2.53", false},
		{"a neighbour address", "10.214.0.70", "10.214.0.17", "10.214.0.17", false},
	}
	for i, f := range flows {
		flow := &netlink.ConntrackFlow{
			FamilyType: unix.AF_INET,
			Forward: netlink.IPTuple{SrcIP: net.ParseIP(f.origSrc).To4(), DstIP: net.ParseIP(f.origDst).To4(),
				SrcPort: uint16(40000 + i), DstPort: 53, Protocol: unix.IPPROTO_UDP},
			Reverse: netlink.IPTuple{SrcIP: net.ParseIP(f.replySrc).To4(), DstIP: net.ParseIP(f.origSrc).To4(),
				SrcPort: 53, DstPort: uint16(40000 + i), Protocol: unix.IPPROTO_UDP},
			TimeOut: 300,
		}
		if err := netlink.ConntrackCreate(netlink.ConntrackTable, unix.AF_INET, flow); err != nil {
			t.Fatalf("create the entry %s: %v", f.name, err)
		}
	}
	if err := ForgetConntrack(netip.MustParseAddr("10.214.0.7")); err != nil {
		t.Fatal(err)
	}
	list, err := netlink.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, f := range list {
		left = append(left, f.Forward.SrcIP.String()+">"+f.Forward.DstIP.String())
	}
	slices.Sort(left)
	var want []string
	for _, f := range flows {
		if !f.gone {
			want = append(want, f.origSrc+">"+f.origDst)
		}
	}
	slices.Sort(want)
	if !slices.Equal(left, want) {
		t.Errorf("entries left %v, want %v", left, want)
	}
	// Nothing to forget is fine.
	if err := ForgetConntrack(netip.MustParseAddr("10.214.0.7")); err != nil {
		t.Errorf("second ForgetConntrack: %v", err)
	}
	if err := ForgetConntrack(netip.MustParseAddr("fd00::7")); err == nil || !strings.Contains(err.Error(), "IPv4") {
		t.Errorf("ForgetConntrack of an IPv6 address = %v, want a refusal", err)
	}
}

func TestCountersOfAMissingVeth(t *testing.T) {
	hostNS(t)
	if _, _, err := Counters("crlmissing"); err == nil || !strings.Contains(err.Error(), "crlmissing") {
		t.Errorf("Counters of a missing veth = %v, want an error naming it", err)
	}
}
