package firewall

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/corral-dev/corral/internal/testenv"
)

// The world of these tests lives in network namespaces they make, never
// in the host's:
//
//	outside ns                host ns                        sandbox ns a, b, c
//	eth0 198.51.100.2/24 ---- vout 198.51.100.1/24
//	lo 203.0.113.10,20,53,54  corral0 10.213.0.1/16 --+-- vs-a ---- eth0 10.213.0.2/16
//	                          ip_forward=1            +-- vs-b ---- eth0 10.213.0.3/16
//	                                                  +-- vs-c ---- eth0 10.213.0.4/16
//
// Servers answer a TCP connection with their name and a newline, and a
// UDP datagram with their name.

const (
	testTable  = "corral-test"
	testBridge = "corral0"
	hostAddr   = "198.51.100.1"
	outAddr    = "198.51.100.2"
	gateway    = "10.213.0.1"
	allowedIP  = "203.0.113.10"
	deniedIP   = "203.0.113.20"
	dnsIP      = "203.0.113.53"
	otherDNSIP = "203.0.113.54"
)

var sandboxAddrs = map[string]string{"a": "10.213.0.2", "b": "10.213.0.3", "c": "10.213.0.4"}

type world struct {
	t       *testing.T
	host    netns.NsHandle
	outside netns.NsHandle
	sb      map[string]netns.NsHandle
}

// inNS runs fn on a thread in ns. The thread is never unlocked: it ends
// with its goroutine, so no other goroutine can ever run in ns by chance.
// A socket made by fn stays in ns, wherever it is used afterwards.
func inNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("enter netns: %w", err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// newNS makes a network namespace, held by the returned handle only.
func newNS(t *testing.T) netns.NsHandle {
	t.Helper()
	var ns netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // the thread dies with the namespace it moved into
		var err error
		ns, err = netns.New()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { ns.Close() })
	return ns
}

func handle(t *testing.T, ns netns.NsHandle) *netlink.Handle {
	t.Helper()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle: %v", err)
	}
	t.Cleanup(h.Close)
	return h
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func addr(t *testing.T, h *netlink.Handle, link netlink.Link, cidr string) {
	t.Helper()
	a, err := netlink.ParseAddr(cidr)
	must(t, "parse "+cidr, err)
	must(t, "add address "+cidr, h.AddrAdd(link, a))
}

func up(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	must(t, "find link "+name, err)
	must(t, "set up "+name, h.LinkSetUp(l))
	return l
}

func sysctl(t *testing.T, ns netns.NsHandle, path, value string) {
	t.Helper()
	must(t, "write "+path, inNS(ns, func() error {
		return os.WriteFile(path, []byte(value), 0o644)
	}))
}

// newWorld builds the namespaces, links and servers drawn above. With
// callIptables false, the host namespace's bridge-nf-call-iptables is 0,
// as on a machine where nothing asked for br_netfilter.
func newWorld(t *testing.T, callIptables bool) *world {
	t.Helper()
	testenv.NeedRoot(t, "makes network namespaces, links and nftables tables")
	w := &world{t: t, host: newNS(t), outside: newNS(t), sb: map[string]netns.NsHandle{}}

	hh := handle(t, w.host)
	oh := handle(t, w.outside)
	up(t, hh, "lo")
	up(t, oh, "lo")
	sysctl(t, w.host, "/proc/sys/net/ipv4/ip_forward", "1")
	if !callIptables {
		sysctl(t, w.host, brNetfilterSysctl, "0")
	}

	// host <-> outside
	must(t, "add veth vout", hh.LinkAdd(&netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "vout"}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(w.outside)),
	}))
	addr(t, hh, up(t, hh, "vout"), hostAddr+"/24")
	oeth := up(t, oh, "eth0")
	addr(t, oh, oeth, outAddr+"/24")
	olo, err := oh.LinkByName("lo")
	must(t, "find outside lo", err)
	for _, ip := range []string{allowedIP, deniedIP, dnsIP, otherDNSIP} {
		addr(t, oh, olo, ip+"/32")
	}
	must(t, "route to TEST-NET-3", hh.RouteAdd(&netlink.Route{
		Dst: mustCIDR("203.0.113.0/24"), Gw: net.ParseIP(outAddr),
	}))
	// Only for the test that sends to a sandbox's address from outside:
	// the outside knows the way, the firewall must still say no.
	must(t, "route to the bridge's subnet", oh.RouteAdd(&netlink.Route{
		Dst: mustCIDR("10.213.0.0/16"), Gw: net.ParseIP(hostAddr),
	}))

	// The bridge and its sandboxes.
	must(t, "add bridge", hh.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: testBridge}}))
	br := up(t, hh, testBridge)
	addr(t, hh, br, gateway+"/16")
	for _, name := range []string{"a", "b", "c"} {
		ns := newNS(t)
		w.sb[name] = ns
		sh := handle(t, ns)
		up(t, sh, "lo")
		veth := "vs-" + name
		must(t, "add veth "+veth, hh.LinkAdd(&netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: veth}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns)),
		}))
		hv, err := hh.LinkByName(veth)
		must(t, "find "+veth, err)
		must(t, "attach "+veth, hh.LinkSetMaster(hv, br))
		up(t, hh, veth)
		eth := up(t, sh, "eth0")
		addr(t, sh, eth, sandboxAddrs[name]+"/16")
		must(t, "default route of "+name, sh.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: net.ParseIP(gateway)}))
	}

	// Servers.
	w.serveTCP(w.outside, allowedIP+":80", "allowed")
	w.serveTCP(w.outside, allowedIP+":81", "allowed-81")
	w.serveTCP(w.outside, deniedIP+":80", "denied")
	w.serveUDP(w.outside, deniedIP+":5353", "denied-udp")
	w.serveUDP(w.outside, otherDNSIP+":5353", "other-udp")
	w.serveUDP(w.outside, dnsIP+":53", "dns")
	w.serveTCP(w.outside, dnsIP+":53", "dns")
	w.serveUDP(w.outside, otherDNSIP+":53", "other-dns")
	w.serveTCP(w.outside, otherDNSIP+":53", "other-dns")
	w.serveTCP(w.host, ":9000", "host")
	for name, ns := range w.sb {
		w.serveTCP(ns, ":8080", name)
		w.serveUDP(ns, ":5300", name)
	}
	t.Cleanup(func() { Remove(testTable, int(w.host)) })
	return w
}

func mustCIDR(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

func (w *world) serveTCP(ns netns.NsHandle, address, name string) {
	w.t.Helper()
	var l net.Listener
	must(w.t, "listen tcp "+address, inNS(ns, func() (err error) {
		l, err = net.Listen("tcp4", address)
		return err
	}))
	w.t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, name)
			c.Close()
		}
	}()
}

func (w *world) serveUDP(ns netns.NsHandle, address, name string) {
	w.t.Helper()
	var pc net.PacketConn
	must(w.t, "listen udp "+address, inNS(ns, func() (err error) {
		pc, err = net.ListenPacket("udp4", address)
		return err
	}))
	w.t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			_, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo([]byte(name), from)
		}
	}()
}

// A denied connection must be refused well within this; one dropped
// instead would hang until it.
const refuseWithin = 2 * time.Second

// dialTCP connects from ns to address (from the given local address if
// any) and returns the server's name.
func dialTCP(ns netns.NsHandle, address, local string, timeout time.Duration) (string, error) {
	var c net.Conn
	err := inNS(ns, func() (err error) {
		d := net.Dialer{Timeout: timeout}
		if local != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(local)}
		}
		c, err = d.Dial("tcp4", address)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(timeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

// askUDP sends a datagram from ns to address over a connected socket,
// and returns the answer: a refusal (ICMP unreachable) comes back as
// ECONNREFUSED.
func askUDP(ns netns.NsHandle, address string) (string, error) {
	var c net.Conn
	err := inNS(ns, func() (err error) {
		c, err = net.Dial("udp4", address)
		return err
	})
	if err != nil {
		return "", err
	}
	defer c.Close()
	if _, err := c.Write([]byte("?")); err != nil {
		return "", err
	}
	c.SetReadDeadline(time.Now().Add(refuseWithin))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

func (w *world) ns(from string) netns.NsHandle {
	switch from {
	case "host":
		return w.host
	case "outside":
		return w.outside
	}
	return w.sb[from]
}

// reaches checks that from reaches the server named want at address.
func (w *world) reaches(from, address, want string) {
	w.t.Helper()
	got, err := dialTCP(w.ns(from), address, "", refuseWithin)
	if err != nil || got != want {
		w.t.Errorf("%s -> tcp %s: got %q, %v; want %q", from, address, got, err, want)
	}
}

// refused checks that a TCP connection from from to address is refused
// at once (a reset), not left to time out.
func (w *world) refused(from, address string) {
	w.t.Helper()
	start := time.Now()
	got, err := dialTCP(w.ns(from), address, "", refuseWithin)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		w.t.Errorf("%s -> tcp %s: got %q, %v after %v; want connection refused", from, address, got, err, time.Since(start).Round(time.Millisecond))
	}
}

func (w *world) reachesUDP(from, address, want string) {
	w.t.Helper()
	got, err := askUDP(w.ns(from), address)
	if err != nil || got != want {
		w.t.Errorf("%s -> udp %s: got %q, %v; want %q", from, address, got, err, want)
	}
}

func (w *world) refusedUDP(from, address string) {
	w.t.Helper()
	got, err := askUDP(w.ns(from), address)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		w.t.Errorf("%s -> udp %s: got %q, %v; want ICMP unreachable (connection refused)", from, address, got, err)
	}
}

// dropped checks that a TCP connection from from to address (from local,
// if given) gets no answer at all within a second.
func (w *world) dropped(from, address, local string) {
	w.t.Helper()
	got, err := dialTCP(w.ns(from), address, local, time.Second)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		w.t.Errorf("%s -> tcp %s: got %q, %v; want no answer (dropped)", from, address, got, err)
	}
}

// config is the network of the world, without sandboxes' policies.
func (w *world) config() Config {
	c := Config{
		Table:   testTable,
		Bridge:  testBridge,
		Subnet:  netip.MustParsePrefix("10.213.0.0/16"),
		Gateway: netip.MustParseAddr(gateway),
		DNS:     []netip.Addr{netip.MustParseAddr(dnsIP)},
		NetNS:   int(w.host),
	}
	for _, name := range []string{"a", "b", "c"} {
		c.Sandboxes = append(c.Sandboxes, Sandbox{
			Name: name, Addr: netip.MustParseAddr(sandboxAddrs[name]), HostVeth: "vs-" + name,
		})
	}
	return c
}

func (w *world) apply(c Config) {
	w.t.Helper()
	if err := Apply(c); err != nil {
		w.t.Fatalf("Apply: %v", err)
	}
}

func prefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
