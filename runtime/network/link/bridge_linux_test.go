package link

import (
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	testOwner  = "/var/lib/corral-test"
	testBridge = "crltest0"
)

var testGW = netip.MustParsePrefix("10.214.0.1/16")

func TestEnsureBridgeIsIdempotent(t *testing.T) {
	hostNS(t)
	for i := 0; i < 2; i++ {
		if err := EnsureBridge(testBridge, testGW, testOwner); err != nil {
			t.Fatalf("EnsureBridge #%d: %v", i+1, err)
		}
	}
	l, err := netlink.LinkByName(testBridge)
	if err != nil {
		t.Fatal(err)
	}
	if l.Type() != "bridge" || l.Attrs().Alias != "corral:"+testOwner || l.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("bridge: type %s, alias %q, flags %v; want an up bridge marked corral:%s", l.Type(), l.Attrs().Alias, l.Attrs().Flags, testOwner)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	if len(addrs) != 1 || addrs[0].IPNet.String() != testGW.String() {
		t.Errorf("bridge addresses %v, want only %s", addrs, testGW)
	}
	// Only the bridge: no temporary one left behind.
	if names := linkNames(t); strings.Join(names, " ") != "lo "+testBridge {
		t.Errorf("links %v, want lo and %s", names, testBridge)
	}
	// A bridge that lost its address (made, then cut short) gets it.
	if err := netlink.AddrDel(l, &addrs[0]); err != nil {
		t.Fatal(err)
	}
	if err := EnsureBridge(testBridge, testGW, testOwner); err != nil {
		t.Fatal(err)
	}
	if addrs, _ := netlink.AddrList(l, netlink.FAMILY_V4); len(addrs) != 1 {
		t.Errorf("after a third EnsureBridge: addresses %v, want %s", addrs, testGW)
	}
	if err := RemoveBridge(testBridge, testOwner); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(testBridge); err == nil {
		t.Error("the bridge is still there after RemoveBridge")
	}
	if err := RemoveBridge(testBridge, testOwner); err != nil {
		t.Errorf("RemoveBridge of a missing bridge: %v", err)
	}
}

// Concurrent EnsureBridges (a daemon and `corral run` starting at once)
// all succeed, on one bridge, and leave no temporary one.
func TestConcurrentEnsureBridgesAgree(t *testing.T) {
	host := hostNS(t)
	for round := 0; round < 10; round++ {
		const n = 4
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			go func() {
				errs <- inHandle(host, func() error { return EnsureBridge(testBridge, testGW, testOwner) })
			}()
		}
		for i := 0; i < n; i++ {
			if err := <-errs; err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
		if names := linkNames(t); strings.Join(names, " ") != "lo "+testBridge {
			t.Fatalf("round %d: links %v, want lo and %s", round, names, testBridge)
		}
		if err := RemoveBridge(testBridge, testOwner); err != nil {
			t.Fatal(err)
		}
	}
}

// Links of the bridge's name that are not corral's for this owner are
// refused, named, and left as they were.
func TestEnsureBridgeRefusesALinkNotItsOwn(t *testing.T) {
	for _, tc := range []struct {
		name   string
		make   func(t *testing.T)
		want   []string
		remove bool // RemoveBridge refuses it too
	}{
		{"a veth", func(t *testing.T) {
			mustAdd(t, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: testBridge}, PeerName: "peer0"})
		}, []string{testBridge, "is a veth", "not marked as corral's", testOwner, "pick another daemon.bridge name"}, true},
		{"a bridge of the host", func(t *testing.T) {
			mustAdd(t, &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: testBridge}})
		}, []string{testBridge, "is a bridge", "not marked as corral's", "pick another daemon.bridge name"}, true},
		{"another corral's bridge", func(t *testing.T) {
			br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: testBridge}}
			mustAdd(t, br)
			if err := netlink.LinkSetAlias(br, "corral:/srv/other-corral"); err != nil {
				t.Fatal(err)
			}
		}, []string{testBridge, "is a bridge", `alias "corral:/srv/other-corral"`, testOwner, "pick another daemon.bridge name"}, true},
		{"our bridge on another subnet", func(t *testing.T) {
			if err := EnsureBridge(testBridge, netip.MustParsePrefix("10.214.0.1/24"), testOwner); err != nil {
				t.Fatal(err)
			}
		}, []string{testBridge, "10.214.0.1/24", "not 10.214.0.1/16", "remove the bridge"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hostNS(t)
			tc.make(t)
			before := describeLink(t, testBridge)
			err := EnsureBridge(testBridge, testGW, testOwner)
			if err == nil {
				t.Fatal("EnsureBridge succeeded")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if tc.remove {
				if !errors.Is(err, ErrForeignLink) {
					t.Errorf("error %v is not ErrForeignLink", err)
				}
				if err := RemoveBridge(testBridge, testOwner); !errors.Is(err, ErrForeignLink) {
					t.Errorf("RemoveBridge = %v, want ErrForeignLink", err)
				}
			}
			if after := describeLink(t, testBridge); after != before {
				t.Errorf("the link changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestEnsureBridgeRefusesASubnetOverlappingARoute(t *testing.T) {
	for _, tc := range []struct {
		gw   string
		want string // "" for no error
	}{
		{"10.214.0.1/16", "10.214.5.0/24 dev lan0"},
		{"10.214.5.129/25", "10.214.5.0/24 dev lan0"},
		{"10.0.0.1/8", "10.214.5.0/24 dev lan0"},
		{"198.51.100.1/28", "198.51.100.0/24 dev lan0 table 100"},
		{"10.214.6.1/24", ""},
	} {
		t.Run(tc.gw, func(t *testing.T) {
			// Each subtest runs on a goroutine (a thread) of its own:
			// each makes its own host.
			lanHost(t)
			err := EnsureBridge(testBridge, netip.MustParsePrefix(tc.gw), testOwner)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrSubnetOverlap) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("EnsureBridge = %v, want ErrSubnetOverlap naming %q", err, tc.want)
			}
			if _, err := netlink.LinkByName(testBridge); err == nil {
				t.Error("the bridge was made anyway")
			}
		})
	}
}

// lanHost is a test host with a network: a link with 10.214.5.0/24, a
// route of another table, and a default route. (A veth for the link:
// this kernel may have no dummy links.)
func lanHost(t *testing.T) {
	t.Helper()
	hostNS(t)
	mustAdd(t, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "lan0"}, PeerName: "lan1"})
	for _, n := range []string{"lan0", "lan1"} {
		l, _ := netlink.LinkByName(n)
		if err := netlink.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	lan, _ := netlink.LinkByName("lan0")
	if err := netlink.AddrAdd(lan, &netlink.Addr{IPNet: ipNet(netip.MustParsePrefix("10.214.5.1/24"))}); err != nil {
		t.Fatal(err)
	}
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lan.Attrs().Index, Dst: ipNet(netip.MustParsePrefix("198.51.100.0/24")), Table: 100}); err != nil {
		t.Fatal(err)
	}
	// A default route overlaps everything, and is not in the way.
	if err := netlink.RouteAdd(&netlink.Route{LinkIndex: lan.Attrs().Index, Gw: net.IPv4(10, 214, 5, 254)}); err != nil {
		t.Fatal(err)
	}
}

func TestEnsureBridgeRefusesBadArguments(t *testing.T) {
	hostNS(t) // should a check be missing
	for _, tc := range []struct {
		name, gw, owner, want string
	}{
		{"", "10.214.0.1/16", testOwner, "bridge name"},
		{"a-name-too-long-for-linux", "10.214.0.1/16", testOwner, "bridge name"},
		{testBridge, "10.214.0.0/16", testOwner, "want a host address"},
		{testBridge, "10.214.0.1/31", testOwner, "want a host address"},
		{testBridge, "fd00::1/64", testOwner, "want a host address"},
		{testBridge, "10.214.0.1/16", "", "owner"},
		{testBridge, "10.214.0.1/16", strings.Repeat("x", 250), "owner"},
	} {
		err := EnsureBridge(tc.name, netip.MustParsePrefix(tc.gw), tc.owner)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("EnsureBridge(%q, %s, %q) = %v, want an error about %s", tc.name, tc.gw, tc.owner, err, tc.want)
		}
	}
}

func mustAdd(t *testing.T, l netlink.Link) {
	t.Helper()
	if err := netlink.LinkAdd(l); err != nil {
		t.Fatalf("add %s: %v", l.Attrs().Name, err)
	}
}

// describeLink is what the tests compare of a link before and after.
func describeLink(t *testing.T, name string) string {
	t.Helper()
	l, err := netlink.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	addrs, err := netlink.AddrList(l, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	a := l.Attrs()
	return strings.Join([]string{l.Type(), a.Alias, a.Flags.String(), a.HardwareAddr.String(), strings.Trim(strings.Join(strings.Fields(strings.Trim(fmtAddrs(addrs), "[]")), " "), " ")}, " | ")
}

func fmtAddrs(addrs []netlink.Addr) string {
	var s []string
	for _, a := range addrs {
		s = append(s, a.IPNet.String())
	}
	return strings.Join(s, ",")
}
