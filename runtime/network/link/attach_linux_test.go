package link

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// bridgeHost is a test host with corral's bridge on 10.214.0.0/16.
func bridgeHost(t *testing.T) {
	t.Helper()
	hostNS(t)
	if err := EnsureBridge(testBridge, testGW, testOwner); err != nil {
		t.Fatal(err)
	}
}

func TestAttachedSandboxesReachEachOtherAndTheGateway(t *testing.T) {
	bridgeHost(t)
	br, _ := netlink.LinkByName(testBridge)
	mac := br.Attrs().HardwareAddr.String()
	dir := tempDir(t)
	gw := testGW.Addr()
	a := attach(t, dir, testBridge, "a", netip.MustParsePrefix("10.214.0.2/16"), gw)
	b := attach(t, dir, testBridge, "b", netip.MustParsePrefix("10.214.0.3/16"), gw)

	// A listener in b's namespace, at b's address, on a privileged port
	// (root binds it anyway; the sysctl is checked below).
	var lb net.Listener
	if err := inNS(t, b.nsPath, func() (err error) { lb, err = net.Listen("tcp", "10.214.0.3:80"); return err }); err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	go echo(lb)
	// One at the gateway's address, in the host's namespace.
	lgw, err := net.Listen("tcp", net.JoinHostPort(gw.String(), "0"))
	if err != nil {
		t.Fatal(err)
	}
	defer lgw.Close()
	go echo(lgw)

	rxA, txA := counters(t, a.veth)
	rxB, txB := counters(t, b.veth)
	const size = 1 << 20
	roundTrip(t, a, lb.Addr().String(), size)
	roundTrip(t, a, lgw.Addr().String(), 1000)
	// From b, back to a's address: both ways across the bridge.
	var la net.Listener
	if err := inNS(t, a.nsPath, func() (err error) { la, err = net.Listen("tcp", "10.214.0.2:0"); return err }); err != nil {
		t.Fatal(err)
	}
	defer la.Close()
	go echo(la)
	roundTrip(t, b, la.Addr().String(), 1000)

	// a sent and received the megabyte; so did b.
	rxA2, txA2 := counters(t, a.veth)
	rxB2, txB2 := counters(t, b.veth)
	for _, c := range []struct {
		what          string
		before, after uint64
	}{
		{"a's rx", rxA, rxA2}, {"a's tx", txA, txA2}, {"b's rx", rxB, rxB2}, {"b's tx", txB, txB2},
	} {
		if c.after-c.before < size {
			t.Errorf("%s grew by %d bytes, want at least %d", c.what, c.after-c.before, size)
		}
	}
	// The bridge keeps its own MAC address as ports join it.
	if br, _ := netlink.LinkByName(testBridge); br.Attrs().HardwareAddr.String() != mac {
		t.Errorf("the bridge's MAC changed from %s to %s", mac, br.Attrs().HardwareAddr)
	}
}

// echo sends back what each connection sends, until l closes.
func echo(l net.Listener) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_, _ = io.Copy(c, c)
		}()
	}
}

// roundTrip connects from s's namespace to addr, sends size bytes and
// checks they come back.
func roundTrip(t *testing.T, s sandbox, addr string, size int) {
	t.Helper()
	var c net.Conn
	err := inNS(t, s.nsPath, func() (err error) {
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	})
	if err != nil {
		t.Fatalf("from %s, connect to %s: %v", s.addr, addr, err)
	}
	defer c.Close()
	if got := c.LocalAddr().(*net.TCPAddr).IP.String(); got != s.addr.Addr().String() {
		t.Errorf("connection from %s, want from %s", got, s.addr.Addr())
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	data := bytes.Repeat([]byte("corral"), size/6+1)[:size]
	go func() { _, _ = c.Write(data) }()
	got := make([]byte, size)
	if _, err := io.ReadFull(c, got); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("from %s to %s: echo of %d bytes: %v", s.addr, addr, size, err)
	}
}

func counters(t *testing.T, veth string) (rx, tx uint64) {
	t.Helper()
	rx, tx, err := Counters(veth)
	if err != nil {
		t.Fatal(err)
	}
	return rx, tx
}

// Inside: lo and eth0 up, eth0's address, one default route via the
// gateway, the sysctls, no IPv6. Outside: the veth up on the bridge.
func TestAttachConfiguresTheNamespace(t *testing.T) {
	bridgeHost(t)
	dir := tempDir(t)
	s := attach(t, dir, testBridge, "web", netip.MustParsePrefix("10.214.0.9/16"), testGW.Addr())

	host, err := netlink.LinkByName(s.veth)
	if err != nil {
		t.Fatal(err)
	}
	br, _ := netlink.LinkByName(testBridge)
	if host.Type() != "veth" || host.Attrs().MasterIndex != br.Attrs().Index || host.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("host side: %s, master %d, flags %v; want an up veth on the bridge (%d)", host.Type(), host.Attrs().MasterIndex, host.Attrs().Flags, br.Attrs().Index)
	}
	if _, err := netlink.LinkByName("eth0"); err == nil {
		t.Error("an eth0 in the host's namespace")
	}

	var got []string
	err = inNS(t, s.nsPath, func() error {
		links, err := netlink.LinkList()
		if err != nil {
			return err
		}
		for _, l := range links {
			got = append(got, fmt.Sprintf("link %s up=%v", l.Attrs().Name, l.Attrs().Flags&net.FlagUp != 0))
		}
		addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, a := range addrs {
			got = append(got, "addr "+a.IPNet.String())
		}
		routes, err := netlink.RouteList(nil, netlink.FAMILY_ALL)
		if err != nil {
			return err
		}
		for _, r := range routes {
			got = append(got, fmt.Sprintf("route %v via %v", r.Dst, r.Gw))
		}
		for _, k := range []string{"net/ipv4/ip_unprivileged_port_start", "net/ipv4/ping_group_range",
			"net/ipv6/conf/all/disable_ipv6", "net/ipv6/conf/eth0/disable_ipv6", "net/ipv6/conf/lo/disable_ipv6"} {
			v, err := os.ReadFile(filepath.Join("/proc/sys", k))
			if err != nil {
				return err
			}
			got = append(got, k+"="+strings.Join(strings.Fields(string(v)), " "))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"link lo up=true", "link eth0 up=true",
		"addr 127.0.0.1/8", "addr 10.214.0.9/16",
		"route 0.0.0.0/0 via 10.214.0.1", "route 10.214.0.0/16 via <nil>",
		"net/ipv4/ip_unprivileged_port_start=0",
		"net/ipv4/ping_group_range=0 2147483647",
		"net/ipv6/conf/all/disable_ipv6=1",
		"net/ipv6/conf/eth0/disable_ipv6=1",
		"net/ipv6/conf/lo/disable_ipv6=1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("inside the namespace:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Outside, in the test's host, the setting is the default.
	if v, err := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start"); err != nil || strings.TrimSpace(string(v)) != "1024" {
		t.Errorf("ip_unprivileged_port_start outside the sandbox: %q, %v; want 1024", v, err)
	}
}

// Detach leaves no veth, no mount and no file; again, it is a no-op.
func TestDetachLeavesNothing(t *testing.T) {
	bridgeHost(t)
	dir := tempDir(t)
	before := linkNames(t)
	p, veth := filepath.Join(dir, "ns"), VethName(testBridge, "x")
	if err := Attach(p, testBridge, veth, netip.MustParsePrefix("10.214.0.4/16"), testGW.Addr()); err != nil {
		t.Fatal(err)
	}
	if m := mountsUnder(t, dir); len(m) != 1 || m[0] != p {
		t.Fatalf("mounts after Attach %v, want %s", m, p)
	}
	for i := 0; i < 2; i++ {
		if err := Detach(p, veth); err != nil {
			t.Fatalf("Detach #%d: %v", i+1, err)
		}
		checkNothingLeft(t, dir, before)
	}
}

func TestDetachNeverFollowsASymlink(t *testing.T) {
	bridgeHost(t)
	dir := tempDir(t)
	target := attach(t, dir, testBridge, "target", netip.MustParsePrefix("10.214.0.5/16"), testGW.Addr())
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target.nsPath, link); err != nil {
		t.Fatal(err)
	}
	if err := Detach(link, VethName(testBridge, "nobody")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(link); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the symlink is still there: %v", err)
	}
	if m := mountsUnder(t, dir); len(m) != 1 || m[0] != target.nsPath {
		t.Errorf("mounts %v, want the symlink's target's still there", m)
	}
}

func TestDetachLeavesALinkThatIsNotAVethAlone(t *testing.T) {
	bridgeHost(t)
	err := Detach(filepath.Join(tempDir(t), "ns"), testBridge)
	if err == nil || !strings.Contains(err.Error(), "is a bridge") {
		t.Fatalf("Detach of the bridge = %v, want a refusal", err)
	}
	if _, err := netlink.LinkByName(testBridge); err != nil {
		t.Errorf("the bridge is gone: %v", err)
	}
}

// An Attach that fails at any point leaves nothing behind, and what was
// there before it as it was.
func TestAFailedAttachLeavesNothing(t *testing.T) {
	addr, gw := netip.MustParsePrefix("10.214.0.6/16"), testGW.Addr()
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, nsPath string) (bridge string)
		addr    netip.Prefix
		gw      netip.Addr
		failAt  string
		want    string
	}{
		{name: "no bridge", prepare: func(*testing.T, string) string { return "nobridge0" }, want: "nobridge0"},
		{name: "not a bridge", prepare: func(t *testing.T, _ string) string {
			mustAdd(t, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "notbr0"}, PeerName: "notbr1"})
			return "notbr0"
		}, want: "not a bridge"},
		{name: "veth name taken", prepare: func(t *testing.T, _ string) string {
			mustAdd(t, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: VethName(testBridge, "s")}, PeerName: "taken1"})
			return testBridge
		}, want: "file exists"},
		{name: "ns file exists", prepare: func(t *testing.T, p string) string {
			if err := os.WriteFile(p, []byte("keep"), 0o600); err != nil {
				t.Fatal(err)
			}
			return testBridge
		}, want: "file exists"},
		{name: "ns path is a symlink", prepare: func(t *testing.T, p string) string {
			if err := os.Symlink(filepath.Join(filepath.Dir(p), "elsewhere"), p); err != nil {
				t.Fatal(err)
			}
			return testBridge
		}, want: "file exists"},
		{name: "address not IPv4", addr: netip.MustParsePrefix("fd00::6/64"), want: "IPv4"},
		{name: "gateway outside the subnet", gw: netip.MustParseAddr("192.0.2.1"), want: "one subnet"},
		{name: "gateway is the address", gw: addr.Addr(), want: "one subnet"},
		{name: "fails once the namespace is bound", failAt: "namespace"},
		{name: "fails once the veth is made", failAt: "veth"},
		{name: "fails once on the bridge", failAt: "bridge"},
		{name: "fails once configured inside", failAt: "inside"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bridgeHost(t)
			dir := tempDir(t)
			p := filepath.Join(dir, "ns")
			bridge := testBridge
			if tc.prepare != nil {
				bridge = tc.prepare(t, p)
			}
			a, g := addr, gw
			if tc.addr.IsValid() {
				a = tc.addr
			}
			if tc.gw.IsValid() {
				g = tc.gw
			}
			if tc.failAt != "" {
				failpoint = func(stage string) error {
					if stage == tc.failAt {
						return errors.New("failpoint " + stage)
					}
					return nil
				}
				defer func() { failpoint = func(string) error { return nil } }()
				tc.want = "failpoint " + tc.failAt
			}
			filesBefore := dirEntries(t, dir)
			linksBefore := describeLinks(t)
			err := Attach(p, bridge, VethName(testBridge, "s"), a, g)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Attach = %v, want an error saying %q", err, tc.want)
			}
			if got := dirEntries(t, dir); got != filesBefore {
				t.Errorf("files %s, want %s as before", got, filesBefore)
			}
			if m := mountsUnder(t, dir); len(m) != 0 {
				t.Errorf("mounts left: %v", m)
			}
			if got := describeLinks(t); got != linksBefore {
				t.Errorf("links:\n%s\nwant as before:\n%s", got, linksBefore)
			}
		})
	}
}

func TestOrphansAreCorralsVethsNotKept(t *testing.T) {
	bridgeHost(t)
	dir := tempDir(t)
	gw := testGW.Addr()
	a := attach(t, dir, testBridge, "a", netip.MustParsePrefix("10.214.0.2/16"), gw)
	b := attach(t, dir, testBridge, "b", netip.MustParsePrefix("10.214.0.3/16"), gw)
	c := attach(t, dir, testBridge, "c", netip.MustParsePrefix("10.214.0.4/16"), gw)
	// Not corral's, though on its bridge, and corral's name on no bridge.
	br, _ := netlink.LinkByName(testBridge)
	mustAdd(t, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "admin0", MasterIndex: br.Attrs().Index}, PeerName: "admin1"})
	mustAdd(t, &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: VethName("other", "x")}, PeerName: "other1"})
	for _, tc := range []struct {
		keep map[string]bool
		want []string
	}{
		{map[string]bool{a.veth: true, b.veth: true, c.veth: true}, nil},
		{map[string]bool{a.veth: true}, sorted(b.veth, c.veth)},
		{nil, sorted(a.veth, b.veth, c.veth)},
	} {
		got, err := Orphans(testBridge, tc.keep)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Orphans(keep %v) = %v, want %v", tc.keep, got, tc.want)
		}
	}
	if got, err := Orphans("nobridge0", nil); err != nil || got != nil {
		t.Errorf("Orphans of a missing bridge = %v, %v; want none", got, err)
	}
}

func sorted(s ...string) []string { slices.Sort(s); return s }

// Attach and Detach, again and again, leak no link, mount, file or fd.
func TestAttachDetachCyclesLeakNothing(t *testing.T) {
	bridgeHost(t)
	dir := tempDir(t)
	links := linkNames(t)
	fds := openFDs(t)
	const cycles = 200
	start := time.Now()
	for i := 0; i < cycles; i++ {
		name := fmt.Sprintf("s%d", i%3)
		p, veth := filepath.Join(dir, name), VethName(testBridge, name)
		addr := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 214, 1, byte(i%250 + 2)}), 16)
		if err := Attach(p, testBridge, veth, addr, testGW.Addr()); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
		if err := Detach(p, veth); err != nil {
			t.Fatalf("cycle %d: %v", i, err)
		}
	}
	t.Logf("%d cycles in %s (%s each)", cycles, time.Since(start).Round(time.Millisecond), (time.Since(start) / cycles).Round(time.Microsecond))
	checkNothingLeft(t, dir, links)
	if n := openFDs(t); n > fds {
		t.Errorf("%d fds open, %d before", n, fds)
	}
}

// checkNothingLeft checks that dir is empty and unmounted and that the
// links are those of before.
func checkNothingLeft(t *testing.T, dir string, links []string) {
	t.Helper()
	if got := dirEntries(t, dir); got != "" {
		t.Errorf("files left: %s", got)
	}
	if m := mountsUnder(t, dir); len(m) != 0 {
		t.Errorf("mounts left: %v", m)
	}
	if got := linkNames(t); !slices.Equal(got, links) {
		t.Errorf("links %v, want %v as before", got, links)
	}
}

func dirEntries(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		info, _ := os.Lstat(filepath.Join(dir, e.Name()))
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		out = append(out, fmt.Sprintf("%s %v %q", e.Name(), info.Mode(), data))
	}
	return strings.Join(out, ", ")
}

// describeLinks is every link of the namespace with its master, state
// and addresses.
func describeLinks(t *testing.T) string {
	t.Helper()
	var out []string
	for _, n := range linkNames(t) {
		l, err := netlink.LinkByName(n)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s master=%d", describeLink(t, n), l.Attrs().MasterIndex))
	}
	return strings.Join(out, "\n")
}

// Release leaves what Detach leaves, the veth gone by the time it
// returns, the kernel having ended the namespace; many released at once
// end together. A namespace something still holds is not ended: Release
// deletes the veth itself once its wait is over.
func TestReleaseLeavesNothing(t *testing.T) {
	bridgeHost(t)
	dir := tempDir(t)
	before := linkNames(t)
	fds := openFDs(t)
	const n = 20
	for i := 0; i < n; i++ {
		p, veth := filepath.Join(dir, fmt.Sprint(i)), VethName(testBridge, fmt.Sprint("r", i))
		if err := Attach(p, testBridge, veth, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 214, 2, byte(i + 2)}), 16), testGW.Addr()); err != nil {
			t.Fatal(err)
		}
	}
	// Each goroutine on a thread of its own, moved into the test's
	// namespace: link acts in the calling thread's.
	testNS, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			if err := netns.Set(testNS); err != nil {
				errs <- err
				return
			}
			errs <- Release(filepath.Join(dir, fmt.Sprint(i)), VethName(testBridge, fmt.Sprint("r", i)), 10*time.Second)
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	testNS.Close()
	t.Logf("%d released at once in %s", n, time.Since(start).Round(time.Millisecond))
	if time.Since(start) > 9*time.Second {
		t.Errorf("released by the deadline's fallback, not the namespaces' end")
	}
	checkNothingLeft(t, dir, before)
	if got := openFDs(t); got > fds {
		t.Errorf("%d fds open, %d before", got, fds)
	}

	// Held: an open handle keeps the namespace, and its veth, alive.
	p, veth := filepath.Join(dir, "held"), VethName(testBridge, "held")
	if err := Attach(p, testBridge, veth, netip.MustParsePrefix("10.214.2.100/16"), testGW.Addr()); err != nil {
		t.Fatal(err)
	}
	holder, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()
	if err := Release(p, veth, 200*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	checkNothingLeft(t, dir, before)
	// Again: nothing there is fine.
	if err := Release(p, veth, time.Second); err != nil {
		t.Errorf("a second Release: %v", err)
	}
}
