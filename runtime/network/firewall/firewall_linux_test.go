package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/google/nftables"
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

	c.Sandboxes[0].Egress = []Allow{{Prefix: prefix(deniedIP + "/32"), Port: 80, Proto: "tcp"}}
	w.apply(c)
	w.refused("a", allowedIP+":80")
	w.reaches("a", deniedIP+":80", "denied")
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
