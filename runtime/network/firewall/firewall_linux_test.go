package firewall

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// restrictA is the world's config with sandbox a restricted: it may reach
// the allowed server's port 80, b's port 8080, every protocol of the
// other resolver's address (whose port 53 stays denied), and DNS at the
// configured resolver. b and c are not restricted.
func restrictA(w *world) Config {
	c := w.config()
	c.Sandboxes[0].Restricted = true
	c.Sandboxes[0].Egress = []Allow{
		{Prefix: prefix(allowedIP + "/32"), Port: 80, Proto: "tcp"},
		{Prefix: prefix(sandboxAddrs["b"] + "/32"), Port: 8080, Proto: "tcp"},
		{Prefix: prefix(otherDNSIP + "/32")},
	}
	return c
}

func TestRestrictedEgress(t *testing.T) {
	t.Parallel()
	// With the namespace's bridge-nf-call-iptables on (a new namespace's
	// default, and Docker's) and off: the bridge's own option, which
	// Apply sets, must be enough for traffic between sandboxes.
	for _, tc := range []struct {
		name         string
		callIptables bool
	}{{"bridge-nf-call-iptables=1", true}, {"bridge-nf-call-iptables=0", false}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			w := newWorld(t, tc.callIptables)
			w.apply(restrictA(w))
			denials := 0

			t.Run("allowed egress connects", func(t *testing.T) {
				w.t = t
				w.reaches("a", allowedIP+":80", "allowed")
				w.reachesUDP("a", otherDNSIP+":5353", "other-udp")
			})
			t.Run("denied egress is refused at once", func(t *testing.T) {
				w.t = t
				w.refused("a", deniedIP+":80")
				w.refusedUDP("a", deniedIP+":5353")
				w.refused("a", allowedIP+":81") // allowed address, not that port
				denials += 3
			})
			t.Run("sandbox to sandbox only as allowed", func(t *testing.T) {
				w.t = t
				w.reaches("a", sandboxAddrs["b"]+":8080", "b")
				w.refused("a", sandboxAddrs["c"]+":8080")
				w.refusedUDP("a", sandboxAddrs["b"]+":5300") // b allowed on tcp 8080 only
				denials += 2
			})
			t.Run("the host only as allowed", func(t *testing.T) {
				w.t = t
				w.refused("a", gateway+":9000")
				w.refused("a", hostAddr+":9000")
				denials += 2
			})
			t.Run("DNS only to the resolver", func(t *testing.T) {
				w.t = t
				w.reachesUDP("a", dnsIP+":53", "dns")
				w.reaches("a", dnsIP+":53", "dns")
				// Allowed every protocol, yet port 53 is not.
				w.refusedUDP("a", otherDNSIP+":53")
				w.refused("a", otherDNSIP+":53")
				denials += 2
			})
			t.Run("replies of a restricted sandbox pass", func(t *testing.T) {
				w.t = t
				// c connects to a, whose Egress does not name c.
				w.reaches("c", sandboxAddrs["a"]+":8080", "a")
				w.reachesUDP("c", sandboxAddrs["a"]+":5300", "a")
				w.reaches("host", sandboxAddrs["a"]+":8080", "a")
			})
			t.Run("unrestricted sandbox reaches everything", func(t *testing.T) {
				w.t = t
				w.reaches("c", deniedIP+":80", "denied")
				w.reachesUDP("c", deniedIP+":5353", "denied-udp")
				w.reachesUDP("c", otherDNSIP+":53", "other-dns")
				w.reaches("c", sandboxAddrs["b"]+":8080", "b")
				w.reaches("c", gateway+":9000", "host")
			})
			t.Run("denials are counted", func(t *testing.T) {
				w.t = t
				got, err := Denied(testTable, int(w.host))
				if err != nil {
					t.Fatal(err)
				}
				// At least one packet each: a retransmission may add more.
				if got["a"] < uint64(denials) {
					t.Errorf("Denied()[a] = %d, want at least %d", got["a"], denials)
				}
				if n, ok := got["c"]; ok {
					t.Errorf("Denied() has %d for unrestricted c", n)
				}
			})
		})
	}
}

func TestRestrictedGatewayAllowed(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	c := w.config()
	c.Sandboxes[0].Restricted = true
	c.Sandboxes[0].Egress = []Allow{{Prefix: prefix(gateway + "/32"), Port: 9000, Proto: "tcp"}}
	w.apply(c)
	w.reaches("a", gateway+":9000", "host")
	w.refused("a", hostAddr+":9000") // another address of the host
	w.refused("a", allowedIP+":80")
}

func TestPublishedPorts(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	c := w.config()
	c.Sandboxes[1].Publish = []Publish{
		{HostPort: 8081, Port: 8080, Proto: "tcp"},
		{HostPort: 5301, Port: 5300, Proto: "udp"},
	}
	// a is restricted to nothing, yet serves its published port.
	c.Sandboxes[0].Restricted = true
	c.Sandboxes[0].Publish = []Publish{{HostIP: netip.MustParseAddr(hostAddr), HostPort: 8082, Port: 8080, Proto: "tcp"}}
	w.apply(c)

	t.Run("from outside", func(t *testing.T) {
		w.t = t
		w.reaches("outside", hostAddr+":8081", "b")
		w.reachesUDP("outside", hostAddr+":5301", "b")
		w.reaches("outside", hostAddr+":8082", "a")
	})
	t.Run("from the host itself", func(t *testing.T) {
		w.t = t
		w.reaches("host", hostAddr+":8081", "b")
		w.reaches("host", gateway+":8081", "b")
		w.reachesUDP("host", hostAddr+":5301", "b")
		// Loopback is the userland proxy's: nothing listens there here.
		w.refused("host", "127.0.0.1:8081")
	})
	t.Run("hairpin from a sandbox", func(t *testing.T) {
		w.t = t
		w.reaches("c", hostAddr+":8081", "b")
		w.reaches("c", gateway+":8081", "b")
		w.reachesUDP("c", hostAddr+":5301", "b")
	})
	t.Run("hairpin of a restricted sandbox is judged where it lands", func(t *testing.T) {
		w.t = t
		// a may reach nothing, b's port 8080 included.
		w.refused("a", hostAddr+":8081")
		w.refusedUDP("a", hostAddr+":5301")
	})
	t.Run("only on the address asked", func(t *testing.T) {
		w.t = t
		w.refused("host", gateway+":8082") // nothing listens on the host's 8082
	})
	t.Run("nothing else gets in from outside", func(t *testing.T) {
		w.t = t
		// The outside has a route to the subnet, the host forwards, and
		// b listens: only the firewall stands in the way.
		w.dropped("outside", sandboxAddrs["b"]+":8080", "")
	})
	t.Run("without the firewall it would get in", func(t *testing.T) {
		w.t = t
		if err := Remove(testTable, int(w.host)); err != nil {
			t.Fatal(err)
		}
		w.reaches("outside", sandboxAddrs["b"]+":8080", "b")
	})
}

func TestAntiSpoofing(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	w.apply(w.config()) // nobody restricted: anti-spoofing is for every sandbox
	sh := handle(t, w.sb["c"])
	eth, err := sh.LinkByName("eth0")
	must(t, "find c's eth0", err)
	addr(t, sh, eth, "10.213.0.99/32")

	w.reaches("c", allowedIP+":80", "allowed")
	w.dropped("c", allowedIP+":80", "10.213.0.99")
	w.reaches("c", allowedIP+":80", "allowed")
	if n := spoofed(t, w, "c"); n == 0 {
		t.Errorf("spoofed-c counted nothing")
	}
}

// spoofed reads the counter of what sandbox name sent and its port dropped.
func spoofed(t *testing.T, w *world, name string) uint64 {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(int(w.host)))
	must(t, "nftables conn", err)
	o, err := conn.GetObject(&nftables.CounterObj{
		Table: &nftables.Table{Name: testTable, Family: nftables.TableFamilyBridge},
		Name:  spoofedCounter(name),
	})
	must(t, "read counter", err)
	return o.(*nftables.CounterObj).Packets
}

func TestApplyReplacesAndRemoveRemoves(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)

	// A table of someone else's, which corral must leave alone.
	conn, err := nftables.New(nftables.WithNetNSFd(int(w.host)))
	must(t, "nftables conn", err)
	other := conn.AddTable(&nftables.Table{Name: "other", Family: nftables.TableFamilyINet})
	conn.AddChain(&nftables.Chain{Name: "keep", Table: other})
	must(t, "add other table", conn.Flush())

	c := w.config()
	c.Sandboxes[0].Restricted = true
	c.Sandboxes[0].Egress = []Allow{{Prefix: prefix(allowedIP + "/32"), Port: 80, Proto: "tcp"}}
	w.apply(c)
	w.reaches("a", allowedIP+":80", "allowed")
	w.refused("a", deniedIP+":80")

	before, err := Denied(testTable, int(w.host))
	if err != nil || before["a"] == 0 {
		t.Fatalf("Denied() = %v, %v; want a count for a", before, err)
	}

	c.Sandboxes[0].Egress = []Allow{{Prefix: prefix(deniedIP + "/32"), Port: 80, Proto: "tcp"}}
	w.apply(c)
	w.refused("a", allowedIP+":80")
	w.reaches("a", deniedIP+":80", "denied")
	// The count went on from where it was.
	if after, err := Denied(testTable, int(w.host)); err != nil || after["a"] <= before["a"] {
		t.Errorf("Denied() after a second Apply = %v, %v; want more than %d for a", after, err, before["a"])
	}
	if tables := tablesNamed(t, w, testTable); len(tables) != 2 {
		t.Errorf("after two applies: %d tables named %s, want an inet and a bridge one", len(tables), testTable)
	}

	// a, now unrestricted, has no counter any more.
	c.Sandboxes[0].Restricted = false
	w.apply(c)
	w.reaches("a", allowedIP+":80", "allowed")
	got, err := Denied(testTable, int(w.host))
	if err != nil || len(got) != 0 {
		t.Errorf("Denied() = %v, %v; want no counters", got, err)
	}

	for range 2 { // Remove is idempotent
		if err := Remove(testTable, int(w.host)); err != nil {
			t.Fatalf("Remove: %v", err)
		}
		if tables := tablesNamed(t, w, testTable); len(tables) != 0 {
			t.Errorf("after Remove: tables %v", tables)
		}
	}
	if tables := tablesNamed(t, w, "other"); len(tables) != 1 {
		t.Errorf("Remove touched another table: %v", tables)
	}
	if _, err := Denied(testTable, int(w.host)); !errors.Is(err, ErrNotApplied) {
		t.Errorf("Denied after Remove: %v, want ErrNotApplied", err)
	}
}

func tablesNamed(t *testing.T, w *world, name string) []*nftables.Table {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(int(w.host)))
	must(t, "nftables conn", err)
	all, err := conn.ListTables()
	must(t, "list tables", err)
	var named []*nftables.Table
	for _, tb := range all {
		if tb.Name == name {
			named = append(named, tb)
		}
	}
	return named
}

func TestRemoveRefusesOthersTables(t *testing.T) {
	if err := Remove("filter", 0); !errors.Is(err, ErrInvalid) {
		t.Errorf("Remove(filter) = %v, want ErrInvalid", err)
	}
}

// TestLargeNetwork applies, and replaces, a network big enough that the
// kernel's acknowledgements of its batch overflow a default socket buffer
// (google/nftables issue 350).
func TestLargeNetwork(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	c := w.config()
	const n = 500
	for i := range n {
		s := Sandbox{
			Name:       fmt.Sprintf("svc-%d", i),
			Addr:       netip.AddrFrom4([4]byte{10, 213, byte(1 + i/250), byte(1 + i%250)}),
			HostVeth:   fmt.Sprintf("vx-%d", i),
			Restricted: true,
			Publish:    []Publish{{HostPort: uint16(20000 + i), Port: 80, Proto: "tcp"}},
		}
		for j := range 8 {
			s.Egress = append(s.Egress, Allow{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(j)}), 32), Port: uint16(1000 + j), Proto: "tcp"})
		}
		c.Sandboxes = append(c.Sandboxes, s)
	}
	for range 2 {
		w.apply(c)
	}
	got, err := Denied(testTable, int(w.host))
	if err != nil || len(got) != n {
		t.Fatalf("Denied() has %d counters, %v; want %d", len(got), err, n)
	}
	// The small world still works as before.
	w.reaches("a", allowedIP+":80", "allowed")
}

// TestApplyIsAtomic replaces the rules again and again while a restricted
// sandbox keeps trying a denied destination: were there a moment without
// rules, a connection would get through.
func TestApplyIsAtomic(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	c := restrictA(w)
	w.apply(c)

	done := make(chan error, 1)
	go func() {
		defer close(done)
		for i := range 40 {
			// Alternate two configs that both deny deniedIP.
			c.Sandboxes[0].Egress = restrictA(w).Sandboxes[0].Egress[:1+i%2]
			if err := Apply(c); err != nil {
				done <- err
				return
			}
		}
	}()
	attempts, through := 0, 0
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Apply: %v", err)
			}
			running = false
		default:
		}
		attempts++
		if got, err := dialTCP(w.sb["a"], deniedIP+":80", "", refuseWithin); err == nil {
			through++
			t.Logf("got through to %q", got)
		}
	}
	if through > 0 {
		t.Errorf("%d of %d connections got through while rules were replaced", through, attempts)
	}
	t.Logf("%d connections tried during the replacements", attempts)
}

// TestAntiSpoofingFrames sends, from a sandbox's own interface, frames no
// socket of its would send: ARP claiming another's address, IPv6, IPv4
// from another address, and VLAN-tagged IPv4; then two honest frames. The
// bridge must pass on the honest ones only.
func TestAntiSpoofingFrames(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	w.apply(w.config())

	sh := handle(t, w.sb["c"])
	eth, err := sh.LinkByName("eth0")
	must(t, "find c's eth0", err)
	mac := eth.Attrs().HardwareAddr
	bcast := net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	c4, b4 := sandboxAddrs["c"], sandboxAddrs["b"]

	spoofs := map[string][]byte{
		"arp-as-b":    arpFrame(mac, b4, "10.213.0.250"),
		"ipv6":        ipv6Frame(mac),
		"ipv4-as-.99": udpFrame(bcast, mac, "10.213.0.99", "ipv4-as-.99"),
		"vlan":        vlanFrame(udpFrame(bcast, mac, c4, "vlan")),
	}
	honest := map[string][]byte{
		"arp":  arpFrame(mac, c4, "10.213.0.251"),
		"ipv4": udpFrame(bcast, mac, c4, "ipv4"),
	}

	hh := handle(t, w.host)
	br, err := hh.LinkByName(testBridge)
	must(t, "find bridge", err)
	var rx int
	must(t, "listen on the bridge", inNS(w.host, func() (err error) {
		rx, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(rx, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: br.Attrs().Index})
	}))
	defer unix.Close(rx)
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	must(t, "set receive timeout", unix.SetsockoptTimeval(rx, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv))

	before := spoofed(t, w, "c")
	must(t, "send frames", inNS(w.sb["c"], func() error {
		tx, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0)
		if err != nil {
			return err
		}
		defer unix.Close(tx)
		to := &unix.SockaddrLinklayer{Ifindex: eth.Attrs().Index, Halen: 6}
		for _, frames := range []map[string][]byte{spoofs, honest} {
			for _, f := range frames {
				if err := unix.Sendto(tx, f, 0, to); err != nil {
					return err
				}
			}
		}
		return nil
	}))

	// Read until both honest frames came, and a little after them.
	seen := map[string]bool{}
	deadline := time.Now().Add(refuseWithin)
	for time.Now().Before(deadline) {
		buf := make([]byte, 2048)
		n, _, err := unix.Recvfrom(rx, buf, 0)
		if err != nil {
			if (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)) && !(seen["arp"] && seen["ipv4"]) {
				continue
			}
			break
		}
		for name, f := range spoofs {
			if bytes.Contains(buf[:n], marker(f)) {
				seen[name] = true
			}
		}
		for name, f := range honest {
			if bytes.Contains(buf[:n], marker(f)) {
				seen[name] = true
			}
		}
	}
	for name := range honest {
		if !seen[name] {
			t.Errorf("honest frame %s did not reach the bridge", name)
		}
	}
	for name := range spoofs {
		if seen[name] {
			t.Errorf("spoofed frame %s reached the bridge", name)
		}
	}
	if got := spoofed(t, w, "c") - before; got < uint64(len(spoofs)) {
		t.Errorf("spoofed-c went up by %d, want at least %d", got, len(spoofs))
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// marker is what identifies a test frame once received: its last 16 bytes
// (the VLAN tag is taken out of the frame on receipt; its tail stays).
func marker(f []byte) []byte { return f[len(f)-16:] }

func ether(dst, src net.HardwareAddr, typ uint16) []byte {
	b := append(append([]byte{}, dst...), src...)
	return binary.BigEndian.AppendUint16(b, typ)
}

func arpFrame(mac net.HardwareAddr, sender, target string) []byte {
	b := ether(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, mac, unix.ETH_P_ARP)
	b = append(b, 0, 1, 8, 0, 6, 4, 0, 1) // Ethernet, IPv4, request
	b = append(b, mac...)
	b = append(b, netip.MustParseAddr(sender).AsSlice()...)
	b = append(b, 0, 0, 0, 0, 0, 0)
	return append(b, netip.MustParseAddr(target).AsSlice()...)
}

func ipv6Frame(mac net.HardwareAddr) []byte {
	b := ether(net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}, mac, unix.ETH_P_IPV6)
	payload := []byte(fmt.Sprintf("%-16s", "ipv6"))
	b = append(b, 0x60, 0, 0, 0, 0, byte(len(payload)), 59, 64) // no next header, hop limit 64
	b = append(b, netip.MustParseAddr("fe80::dead:beef").AsSlice()...)
	b = append(b, netip.MustParseAddr("ff02::1").AsSlice()...)
	return append(b, payload...)
}

// udpFrame is a UDP datagram to port 9 of the subnet's broadcast address,
// whose payload names it (padded to 16 bytes, the marker).
func udpFrame(dst, mac net.HardwareAddr, from, name string) []byte {
	payload := []byte(fmt.Sprintf("%-16s", name))
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, unix.IPPROTO_UDP, 0, 0}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip = append(ip, netip.MustParseAddr(from).AsSlice()...)
	ip = append(ip, 10, 213, 255, 255)
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	udp := []byte{0, 9, 0, 9, 0, 0, 0, 0} // no checksum
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(append(append(ether(dst, mac, unix.ETH_P_IP), ip...), udp...), payload...)
}

// vlanFrame tags an Ethernet frame with VLAN 1.
func vlanFrame(f []byte) []byte {
	b := append([]byte{}, f[:12]...)
	b = append(b, 0x81, 0x00, 0, 1)
	return append(b, f[12:]...)
}

func checksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// TestBesideAHostFirewall runs corral's rules beside a host firewall whose
// forward policy is drop, as Docker's is: corral's accepts do not get past
// it, the operator's accept of the bridge's traffic does, and what corral
// denies is refused, not dropped, whatever the host firewall says.
func TestBesideAHostFirewall(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	c := restrictA(w)
	c.Sandboxes[1].Publish = []Publish{{HostPort: 8081, Port: 8080, Proto: "tcp"}}
	w.apply(c)

	conn, err := nftables.New(nftables.WithNetNSFd(int(w.host)))
	must(t, "nftables conn", err)
	hostfw := conn.AddTable(&nftables.Table{Name: "hostfw", Family: nftables.TableFamilyINet})
	drop := nftables.ChainPolicyDrop
	fwd := conn.AddChain(&nftables.Chain{
		Name: "forward", Table: hostfw, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop,
	})
	must(t, "add host firewall", conn.Flush())

	w.dropped("c", allowedIP+":80", "")
	w.dropped("outside", hostAddr+":8081", "")
	w.refused("a", deniedIP+":80")

	// The operator accepts the bridge's traffic, as the package doc says.
	for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
		conn.AddRule(&nftables.Rule{Table: hostfw, Chain: fwd, Exprs: append(ifname(key, testBridge, expr.CmpOpEq), verdict(expr.VerdictAccept)...)})
	}
	must(t, "accept the bridge's traffic", conn.Flush())
	w.reaches("c", allowedIP+":80", "allowed")
	w.reaches("outside", hostAddr+":8081", "b")
	w.reaches("a", allowedIP+":80", "allowed")
	w.reaches("a", sandboxAddrs["b"]+":8080", "b")
	w.refused("a", deniedIP+":80")
	w.refused("a", sandboxAddrs["c"]+":8080")
}

// ruleset is what the tables of testTable hold, as comparable text: each
// chain with its rules' expressions (their handles left out), sorted, and
// the named counters.
func ruleset(t *testing.T, w *world) []string {
	t.Helper()
	conn, err := nftables.New(nftables.WithNetNSFd(int(w.host)))
	must(t, "nftables conn", err)
	var out []string
	for _, tb := range tablesNamed(t, w, testTable) {
		chains, err := conn.ListChainsOfTableFamily(tb.Family)
		must(t, "list chains", err)
		for _, ch := range chains {
			if ch.Table.Name != testTable {
				continue
			}
			rules, err := conn.GetRules(tb, ch)
			must(t, "list rules", err)
			for _, r := range rules {
				var es []string
				for _, e := range r.Exprs {
					es = append(es, fmt.Sprintf("%T%+v", e, e))
				}
				out = append(out, fmt.Sprintf("%d %s: %s %q", tb.Family, ch.Name, strings.Join(es, " "), r.UserData))
			}
			out = append(out, fmt.Sprintf("%d chain %s", tb.Family, ch.Name))
		}
		objs, err := conn.GetNamedObjects(tb)
		must(t, "list objects", err)
		for _, o := range objs {
			if n, ok := o.(*nftables.NamedObj); ok {
				out = append(out, fmt.Sprintf("%d counter %s", tb.Family, n.Name))
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestAddAndDeleteAreApply: adding a sandbox to the rules in force, and
// deleting one, leaves the rules Apply makes of the same network, and
// the traffic follows; the counts of the others go on; deleting the last
// removes the tables; on tables that are not as Add expects (none, or
// the sandbox already in) Add is Apply.
func TestAddAndDeleteAreApply(t *testing.T) {
	t.Parallel()
	w := newWorld(t, true)
	full := restrictA(w)
	full.Sandboxes[1].Publish = []Publish{{HostPort: 8080, Port: 8080, Proto: "tcp"}}
	full.Sandboxes[2].Restricted = true
	without := func(c Config, name string) Config {
		c.Sandboxes = slices.DeleteFunc(slices.Clone(c.Sandboxes), func(s Sandbox) bool { return s.Name == name })
		return c
	}
	w.apply(full)
	want := ruleset(t, w)

	// Add on tables that do not exist yet: Apply.
	must(t, "Remove", Remove(testTable, int(w.host)))
	must(t, "Add to nothing", Add(without(without(full, "a"), "c"), "b"))
	w.apply(without(without(full, "a"), "c"))
	must(t, "Add a", Add(without(full, "c"), "a"))
	w.refused("a", deniedIP+":80")
	w.reaches("a", allowedIP+":80", "allowed")
	before, err := Denied(testTable, int(w.host))
	if err != nil || before["a"] == 0 {
		t.Fatalf("Denied after Add = %v, %v", before, err)
	}
	must(t, "Add c", Add(full, "c"))
	if got := ruleset(t, w); !slices.Equal(got, want) {
		t.Errorf("after Add of each sandbox:\n%s\nwant (Apply):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Add of a sandbox that is already there: Apply, no duplicate.
	must(t, "Add c again", Add(full, "c"))
	if got := ruleset(t, w); !slices.Equal(got, want) {
		t.Errorf("after a second Add of c: %d rules, want %d", len(got), len(want))
	}

	must(t, "Delete c", Delete(without(full, "c"), "c"))
	w.apply(without(full, "c"))
	wantWithoutC := ruleset(t, w)
	must(t, "Add c", Add(full, "c"))
	must(t, "Delete c", Delete(without(full, "c"), "c"))
	if got := ruleset(t, w); !slices.Equal(got, wantWithoutC) {
		t.Errorf("after Delete of c:\n%s\nwant (Apply):\n%s", strings.Join(got, "\n"), strings.Join(wantWithoutC, "\n"))
	}
	w.refused("a", deniedIP+":80")
	if after, err := Denied(testTable, int(w.host)); err != nil || after["a"] <= before["a"] {
		t.Errorf("a's count after Add and Delete of others = %v, %v; want more than %d", after, err, before["a"])
	}
	must(t, "Delete b", Delete(without(without(full, "c"), "b"), "b"))
	must(t, "Delete a", Delete(Config{Table: full.Table, Bridge: full.Bridge, Subnet: full.Subnet, Gateway: full.Gateway, NetNS: full.NetNS}, "a"))
	if tables := tablesNamed(t, w, testTable); len(tables) != 0 {
		t.Errorf("after deleting the last sandbox: tables %v", tables)
	}
}
