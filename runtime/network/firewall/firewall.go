// Package firewall turns the whole description of one corral bridge
// network into nftables rules, and replaces the rules in force with them in
// one netlink batch: the kernel commits the batch as one transaction, so a
// packet meets either the old rules or the new ones, never none.
//
// Corral owns two tables per bridge network, both named Config.Table: one
// of the inet family (NAT, published ports, what sandboxes may reach, what
// may reach them) and one of the bridge family (anti-spoofing on each
// sandbox's port). It never reads, changes or deletes any other table.
//
// What the rules do:
//
//   - Published ports: a connection to a local address of the host (every
//     one, or Publish.HostIP) on HostPort is DNATed to the sandbox's Port,
//     whether it comes from outside (prerouting) or from the host itself
//     (output). Loopback destinations are left alone: a userland proxy
//     serves them, so route_localnet is never needed. A sandbox may reach
//     a published port through a host address (hairpin): such traffic is
//     masqueraded so the reply comes back through the host.
//   - Traffic of the subnet leaving by any other interface is masqueraded.
//   - From outside the bridge, a sandbox receives only DNATed connections
//     and replies to its own; everything else routed into the bridge, IPv6
//     included, is dropped. The host itself may connect to a sandbox.
//   - A Restricted sandbox reaches only what its Egress list allows: hosts
//     elsewhere (forward hook), the host's own addresses, gateway included
//     (input hook), and other sandboxes on the bridge (forward hook, see
//     below). A connection to a published port is judged by where it
//     lands, the sandbox and port it is DNATed to. Replies to connections
//     made to the sandbox always pass; port 53 only to Config.DNS, even
//     where an Allow covers another resolver. What is denied is counted
//     (Denied) and refused at once, so that clients never hang: TCP with
//     a reset (ICMP port unreachable for a DNATed connection, see deny in
//     firewall_linux.go), UDP with ICMP port unreachable, anything else
//     with ICMP administratively prohibited.
//   - Every sandbox's port on the bridge drops IPv4 from another source
//     address, ARP claiming another address, and every other protocol,
//     IPv6 and VLAN-tagged frames included: sandboxes have IPv4 only.
//
// Traffic between two sandboxes of the bridge is bridged, not routed, and
// is filtered through br_netfilter, in the inet forward hook: nftables'
// bridge family cannot reject in its forward hook on any kernel, nor track
// connections without the optional nf_conntrack_bridge, which many kernels
// (this project's among them) lack. When a sandbox is Restricted, Apply
// therefore turns on the bridge's own nf_call_iptables option, which holds
// whatever the namespace's bridge-nf-call-iptables sysctl says; it changes
// neither the sysctl nor any other bridge. It fails with
// ErrNoBridgeNetfilter, rather than leave sandboxes unfiltered, when
// br_netfilter is not loaded. The bridge must exist by then.
//
// Living with a host firewall: netfilter runs every base chain of a hook,
// and an accept ends only the chain it is in. Corral's accepts are
// therefore sufficient only within corral's tables: a host firewall whose
// forward policy is drop (Docker's, for one) drops sandbox traffic after
// corral has let it through, bridged traffic between sandboxes included
// once br_netfilter hands it to the forward hook; and one whose input
// policy is drop drops sandbox traffic to the host. Corral's filter chains
// run before the usual filter priority, so what corral denies is refused
// and counted whatever the host firewall says. The operator who keeps such
// a firewall accepts the bridge's traffic in it, for example with Docker:
//
//	iptables -I DOCKER-USER -i corral0 -j ACCEPT
//	iptables -I DOCKER-USER -o corral0 -j ACCEPT
//
// corral0 being Config.Bridge; corral has already filtered that traffic.
package firewall

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"sync"
)

var (
	// ErrInvalid is wrapped by every error about a Config: callers test
	// it with errors.Is, and read the field with errors.As(*ConfigError).
	ErrInvalid = errors.New("invalid firewall config")

	// ErrNotApplied is returned by Denied for a network whose tables are
	// not there.
	ErrNotApplied = errors.New("firewall not applied")

	// ErrNoBridgeNetfilter is returned by Apply for a network with a
	// Restricted sandbox on a kernel without br_netfilter loaded: the
	// traffic between its sandboxes could not be filtered.
	ErrNoBridgeNetfilter = errors.New("br_netfilter is not loaded: traffic between sandboxes of a bridge cannot be filtered")
)

// Config is the whole desired state of one corral bridge network.
type Config struct {
	// Table names corral's two tables of this network (an inet one and a
	// bridge one). It starts with "corral", so that corral can never
	// delete a table it did not make, e.g. "corral-corral0".
	Table string
	// Bridge is the bridge interface, e.g. "corral0".
	Bridge string
	// Subnet is the IPv4 subnet of the bridge, e.g. 10.88.0.0/16.
	Subnet netip.Prefix
	// Gateway is the bridge's own address, in Subnet.
	Gateway netip.Addr
	// DNS lists the resolvers Restricted sandboxes may query on port 53,
	// UDP and TCP; port 53 anywhere else is denied them.
	DNS       []netip.Addr
	Sandboxes []Sandbox
	// NetNS is an fd of the network namespace to apply in; 0 is the
	// caller's own.
	NetNS int
}

// Sandbox is one sandbox on the bridge.
type Sandbox struct {
	// Name is the sandbox's service name: [a-z0-9][a-z0-9_.-]*, at most
	// 63 bytes. It names its chains and its counter of denied packets.
	Name string
	// Addr is its address on the bridge.
	Addr netip.Addr
	// HostVeth is the host side of its veth pair, a port of the bridge.
	HostVeth string
	Publish  []Publish
	// Restricted denies egress by default and allows only Egress; when
	// false, egress goes everywhere (Docker's default) and Egress is not
	// used.
	Restricted bool
	Egress     []Allow
}

// Publish makes a sandbox's port reachable on the host's addresses.
type Publish struct {
	// HostIP is the host address to publish on; the zero Addr means every
	// local address. A loopback HostIP is skipped: a userland proxy
	// serves loopback.
	HostIP   netip.Addr
	HostPort uint16
	Port     uint16
	// Proto is "tcp" or "udp".
	Proto string
}

// Allow is one destination a Restricted sandbox may reach.
type Allow struct {
	Prefix netip.Prefix
	// Port 0 allows every protocol (ICMP included) to Prefix; otherwise
	// only Proto ("tcp" or "udp") to that port.
	Port  uint16
	Proto string
}

// ConfigError says which field of a Config is wrong, and why.
type ConfigError struct {
	Field  string // e.g. `sandboxes["web"].egress[2].proto`
	Reason string
}

func (e *ConfigError) Error() string {
	return fmt.Sprintf("%s: %s: %s", ErrInvalid, e.Field, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) hold.
func (e *ConfigError) Is(target error) bool { return target == ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &ConfigError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// Name limits. The kernel takes names of up to 255 bytes for tables,
// chains and objects; corral keeps to what the nft tool also parses
// unquoted, so that `nft list ruleset` output can be fed back.
const (
	maxNameLen  = 63
	maxTableLen = 64
	ifNameSize  = 16 // IFNAMSIZ, with the terminating NUL
)

// Compiled at first use, not in the init of every start of the binary
// (sandbox inits and corral-runc's commands included).
var (
	sandboxName = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]*$`) })
	tableName   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^corral[a-zA-Z0-9_.-]*$`) })
)

// Chain and object names derived from a sandbox's name. The prefixes keep
// every derived name starting with a letter, as nft's grammar wants, and
// apart from the fixed chains' names.
func egressChain(sandbox string) string    { return "egress-" + sandbox }
func portChain(sandbox string) string      { return "port-" + sandbox }
func deniedCounter(sandbox string) string  { return deniedPrefix + sandbox }
func spoofedCounter(sandbox string) string { return "spoofed-" + sandbox }

const deniedPrefix = "denied-"

// validName reports whether name is a service name corral can make
// chains and counters of.
func validName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) > maxNameLen:
		return fmt.Errorf("%d bytes, more than %d", len(name), maxNameLen)
	case !sandboxName().MatchString(name):
		return errors.New("not of [a-z0-9][a-z0-9_.-]*")
	}
	return nil
}

func validTable(name string) error {
	switch {
	case len(name) > maxTableLen:
		return fmt.Errorf("%d bytes, more than %d", len(name), maxTableLen)
	case !tableName().MatchString(name):
		return errors.New(`does not start with "corral" or has a character outside [a-zA-Z0-9_.-]`)
	}
	return nil
}

func validIfName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) >= ifNameSize:
		return fmt.Errorf("longer than %d bytes", ifNameSize-1)
	case name == "." || name == "..":
		return errors.New("not an interface name")
	case strings.ContainsAny(name, "/: \t\n\x00"):
		return errors.New("has a character an interface name cannot have")
	}
	return nil
}

func validProto(p string) bool { return p == "tcp" || p == "udp" }

// Validate checks c as a whole: every field, and that sandboxes do not
// collide on a name, an address, a port of the bridge or a published port.
func (c *Config) Validate() error {
	if err := validTable(c.Table); err != nil {
		return invalid("table", "%q: %v", c.Table, err)
	}
	if err := validIfName(c.Bridge); err != nil {
		return invalid("bridge", "%q: %v", c.Bridge, err)
	}
	if !c.Subnet.IsValid() || !c.Subnet.Addr().Is4() {
		return invalid("subnet", "%v is not an IPv4 prefix", c.Subnet)
	}
	if c.Subnet != c.Subnet.Masked() {
		return invalid("subnet", "%v has host bits set", c.Subnet)
	}
	if c.Subnet.Bits() > 30 {
		return invalid("subnet", "%v has no room for a gateway and a sandbox", c.Subnet)
	}
	if c.Subnet.Bits() < 8 {
		return invalid("subnet", "%v is wider than a bridge's subnet can be", c.Subnet)
	}
	if !c.Gateway.Is4() || !c.Subnet.Contains(c.Gateway) || !host(c.Subnet, c.Gateway) {
		return invalid("gateway", "%v is not a host address of %v", c.Gateway, c.Subnet)
	}
	for i, d := range c.DNS {
		if !d.Is4() {
			return invalid(fmt.Sprintf("dns[%d]", i), "%v is not an IPv4 address", d)
		}
	}
	names := map[string]bool{}
	addrs := map[netip.Addr]string{c.Gateway: "the gateway"}
	veths := map[string]string{c.Bridge: "the bridge"}
	published := publishedOn{}
	for _, s := range c.Sandboxes {
		field := fmt.Sprintf("sandboxes[%q]", s.Name)
		if err := validName(s.Name); err != nil {
			return invalid(field+".name", "%v", err)
		}
		if names[s.Name] {
			return invalid(field+".name", "given twice")
		}
		names[s.Name] = true
		if !s.Addr.Is4() || !c.Subnet.Contains(s.Addr) || !host(c.Subnet, s.Addr) {
			return invalid(field+".addr", "%v is not a host address of %v", s.Addr, c.Subnet)
		}
		if other, ok := addrs[s.Addr]; ok {
			return invalid(field+".addr", "%v is already %s's", s.Addr, other)
		}
		addrs[s.Addr] = s.Name
		if err := validIfName(s.HostVeth); err != nil {
			return invalid(field+".hostVeth", "%q: %v", s.HostVeth, err)
		}
		if other, ok := veths[s.HostVeth]; ok {
			return invalid(field+".hostVeth", "%q is already %s's", s.HostVeth, other)
		}
		veths[s.HostVeth] = s.Name
		for i, p := range s.Publish {
			if err := validPublish(p); err != nil {
				return invalid(fmt.Sprintf("%s.publish[%d]", field, i), "%v", err)
			}
			if p.HostIP.IsValid() && p.HostIP.IsLoopback() {
				continue // the userland proxy's, not ours
			}
			if other, ok := published.take(p, s.Name); !ok {
				return invalid(fmt.Sprintf("%s.publish[%d]", field, i), "%s port %d is already published by %s", p.Proto, p.HostPort, other)
			}
		}
		for i, a := range s.Egress {
			if err := validAllow(a); err != nil {
				return invalid(fmt.Sprintf("%s.egress[%d]", field, i), "%v", err)
			}
		}
	}
	return nil
}

// host reports whether a is neither p's network nor its broadcast address.
func host(p netip.Prefix, a netip.Addr) bool {
	mask := ^uint32(0) << (32 - p.Bits())
	v := u32(a)
	return v&^mask != 0 && v|mask != ^uint32(0)
}

func u32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func validPublish(p Publish) error {
	switch {
	case !validProto(p.Proto):
		return fmt.Errorf("proto %q is not tcp or udp", p.Proto)
	case p.HostPort == 0:
		return errors.New("host port 0")
	case p.Port == 0:
		return errors.New("port 0")
	case p.HostIP.IsValid() && !p.HostIP.Is4():
		return fmt.Errorf("host IP %v is not IPv4", p.HostIP)
	}
	return nil
}

// portKey is a published port of the host, on one address or all.
type portKey struct {
	port  uint16
	proto string
}

// publishedOn records who publishes what, to catch two sandboxes (or one
// twice) taking the same port: on the same address, or one of them on
// every address.
type publishedOn map[portKey]map[netip.Addr]string

// take records p for owner, or returns who has it already.
func (t publishedOn) take(p Publish, owner string) (string, bool) {
	k := portKey{p.HostPort, p.Proto}
	ips := t[k]
	if ips == nil {
		ips = map[netip.Addr]string{}
		t[k] = ips
	}
	for ip, other := range ips {
		if ip == p.HostIP || !ip.IsValid() || !p.HostIP.IsValid() {
			return other, false
		}
	}
	ips[p.HostIP] = owner
	return "", true
}

func validAllow(a Allow) error {
	switch {
	case !a.Prefix.IsValid() || !a.Prefix.Addr().Is4():
		return fmt.Errorf("prefix %v is not IPv4", a.Prefix)
	case a.Port == 0 && a.Proto != "":
		return fmt.Errorf("proto %q without a port", a.Proto)
	case a.Port != 0 && !validProto(a.Proto):
		return fmt.Errorf("proto %q is not tcp or udp", a.Proto)
	}
	return nil
}

// published lists the ports of s that the rules DNAT: all but those on a
// loopback address, which the userland proxy serves.
func (s *Sandbox) published() []Publish {
	var ps []Publish
	for _, p := range s.Publish {
		if p.HostIP.IsValid() && p.HostIP.IsLoopback() {
			continue
		}
		ps = append(ps, p)
	}
	return ps
}
