package spec

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// NetworkBridge gives the sandbox a network namespace of its own with an
// address on corral's bridge (Bridge), outbound NAT, the ports it
// publishes and, when it has an egress list, nothing else.
const NetworkBridge = "bridge"

// Bridge defaults (daemon.bridge, daemon.subnet). The subnet is one that
// Docker (172.17.0.0/16 and up), Podman (10.88.0.0/16) and libvirt
// (192.168.122.0/24) do not take by default; corral checks at start that
// no route of the host overlaps it.
const (
	DefaultBridge = "corral0"
	DefaultSubnet = "10.89.0.0/16"
)

// Bridge is the daemon's bridge network: shared by every service with
// network: bridge (and by corral run --network bridge with the same
// state dir).
type Bridge struct {
	// Name is the bridge's interface name (at most 15 bytes).
	Name string
	// Subnet is its IPv4 subnet: the gateway (the bridge's own address)
	// is the first address, sandboxes get the others.
	Subnet netip.Prefix
	// DNS lists the resolvers a sandbox is given in its /etc/resolv.conf,
	// and the only ones an egress list lets it query; empty: the host's
	// non-loopback nameservers.
	DNS []netip.Addr
}

// DefaultBridgeConfig is the bridge when the file says nothing.
func DefaultBridgeConfig() Bridge {
	return Bridge{Name: DefaultBridge, Subnet: netip.MustParsePrefix(DefaultSubnet)}
}

// Publish is one published port: HostPort on HostIP (every address of
// the host when invalid) reaches Port of the sandbox.
type Publish struct {
	HostIP   netip.Addr
	HostPort uint16
	Port     uint16
	Proto    string // "tcp" or "udp"
}

func (p Publish) String() string {
	host := ""
	if p.HostIP.IsValid() {
		host = p.HostIP.String() + ":"
	}
	return fmt.Sprintf("%s%d:%d/%s", host, p.HostPort, p.Port, p.Proto)
}

// overlaps reports whether p and q claim the same host port.
func (p Publish) overlaps(q Publish) bool {
	return p.Proto == q.Proto && p.HostPort == q.HostPort &&
		(!p.HostIP.IsValid() || !q.HostIP.IsValid() || p.HostIP == q.HostIP)
}

// ParsePublish reads [HOST_IP:]HOST_PORT:PORT[/tcp|/udp] (tcp unless
// said), Docker's -p form without ranges.
func ParsePublish(s string) (Publish, error) {
	body, proto, hasProto := strings.Cut(s, "/")
	p := Publish{Proto: "tcp"}
	if hasProto {
		if proto != "tcp" && proto != "udp" {
			return p, fmt.Errorf("%q: protocol %q is neither tcp nor udp", s, proto)
		}
		p.Proto = proto
	}
	i := strings.LastIndex(body, ":")
	if i < 0 {
		return p, fmt.Errorf("%q is not [HOST_IP:]HOST_PORT:PORT[/tcp|/udp]", s)
	}
	port, err := parsePort(body[i+1:])
	if err != nil {
		return p, fmt.Errorf("%q: sandbox port: %w", s, err)
	}
	p.Port = port
	hostPart := body[:i]
	if j := strings.LastIndex(hostPart, ":"); j >= 0 {
		ip, err := netip.ParseAddr(strings.Trim(hostPart[:j], "[]"))
		if err != nil || !ip.Is4() {
			return p, fmt.Errorf("%q: host address %q is not an IPv4 address", s, hostPart[:j])
		}
		if !ip.IsUnspecified() {
			p.HostIP = ip
		}
		hostPart = hostPart[j+1:]
	}
	if p.HostPort, err = parsePort(hostPart); err != nil {
		return p, fmt.Errorf("%q: host port: %w", s, err)
	}
	return p, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a port from 1 to 65535", s)
	}
	return uint16(n), nil
}

// Egress is what a sandbox on the bridge may reach. Without a list
// (Restricted false) it may reach everything, as with Docker; with one,
// nothing but what the list allows and the resolvers corral gives it.
type Egress struct {
	Restricted bool
	Allow      []EgressRule
}

// EgressRule allows one destination: a CIDR, or a host name resolved when
// the sandbox starts, at reload and when its records' TTL runs out. With
// no port, every protocol to it (ICMP included); with one, only that TCP
// or UDP port.
type EgressRule struct {
	Prefix netip.Prefix // valid for a CIDR or an address
	Host   string       // a name to resolve, when Prefix is not valid
	Port   uint16
	Proto  string // "tcp" or "udp" with a Port, else ""
}

func (r EgressRule) String() string {
	dst := r.Host
	if r.Prefix.IsValid() {
		dst = r.Prefix.String()
	}
	if r.Port == 0 {
		return dst
	}
	return fmt.Sprintf("%s:%d/%s", dst, r.Port, r.Proto)
}

// ParseEgress reads CIDR[:PORT[/tcp|/udp]], ADDRESS[:PORT[/PROTO]] or
// HOST[:PORT[/PROTO]] (tcp unless said).
func ParseEgress(s string) (EgressRule, error) {
	var r EgressRule
	dst, rest, hasPort := strings.Cut(s, ":")
	if hasPort {
		portStr, proto, hasProto := strings.Cut(rest, "/")
		port, err := parsePort(portStr)
		if err != nil {
			return r, fmt.Errorf("%q: %w", s, err)
		}
		r.Port, r.Proto = port, "tcp"
		if hasProto {
			if proto != "tcp" && proto != "udp" {
				return r, fmt.Errorf("%q: protocol %q is neither tcp nor udp", s, proto)
			}
			r.Proto = proto
		}
	}
	if strings.Contains(dst, "/") {
		p, err := netip.ParsePrefix(dst)
		if err != nil || !p.Addr().Is4() {
			return r, fmt.Errorf("%q: %q is not an IPv4 CIDR such as 192.0.2.0/24", s, dst)
		}
		r.Prefix = p.Masked()
		return r, nil
	}
	if ip, err := netip.ParseAddr(dst); err == nil {
		if !ip.Is4() {
			return r, fmt.Errorf("%q: only IPv4 destinations (sandboxes get no IPv6)", s)
		}
		r.Prefix = netip.PrefixFrom(ip, 32)
		return r, nil
	}
	if !validHostName(dst) {
		return r, fmt.Errorf("%q: %q is neither a CIDR, an IPv4 address nor a host name", s, dst)
	}
	r.Host = strings.ToLower(dst)
	return r, nil
}

// validHostName accepts DNS names of letters, digits, '-' and '.'.
func validHostName(s string) bool {
	if s == "" || len(s) > 253 || strings.HasPrefix(s, ".") || strings.HasPrefix(s, "-") {
		return false
	}
	for _, label := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// CheckBridgeName refuses an interface name Linux would not take.
func CheckBridgeName(name string) error {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/: \t\n") || name == "." || name == ".." {
		return fmt.Errorf("%q is not an interface name (1 to 15 bytes, no '/', ':' or spaces)", name)
	}
	return nil
}

// CheckSubnet refuses a bridge subnet too small or not private-looking.
func CheckSubnet(p netip.Prefix) error {
	if !p.Addr().Is4() {
		return errors.New("only an IPv4 subnet is supported")
	}
	if p.Bits() > 28 {
		return fmt.Errorf("%s is too small: use a /28 or larger", p)
	}
	if p.Bits() < 8 {
		return fmt.Errorf("%s is too large: use a /8 or smaller", p)
	}
	return nil
}

// validateNetwork checks what a service's network settings say alone;
// published ports shared by two services are CheckPublished's.
func validateNetwork(s *Service, add func(field, format string, args ...any)) {
	bridge := s.EffectiveNetwork() == NetworkBridge
	if len(s.Publish) > 0 && !bridge {
		add("publish", "needs network: bridge (the sandbox's network is %s)", s.EffectiveNetwork())
	}
	if s.Egress.Restricted && !bridge {
		add("egress", "needs network: bridge (the sandbox's network is %s)", s.EffectiveNetwork())
	}
	for i, p := range s.Publish {
		for _, q := range s.Publish[:i] {
			if p.overlaps(q) {
				add(fmt.Sprintf("publish[%d]", i), "%s: host port %d/%s is already published by %s", p, p.HostPort, p.Proto, q)
			}
		}
	}
}

// CheckPublished refuses a host port published by two services, naming
// both.
func CheckPublished(units []*Unit) []*FieldError {
	type owner struct {
		name string
		p    Publish
	}
	var seen []owner
	var errs []*FieldError
	for _, u := range units {
		for i, p := range u.Service.Publish {
			for _, o := range seen {
				if o.name != u.Service.Name && p.overlaps(o.p) {
					errs = append(errs, &FieldError{
						Field: fmt.Sprintf("services.%s.publish[%d]", u.Service.Name, i),
						Err:   fmt.Errorf("%s: host port %d/%s is already published by service %s (%s)", p, p.HostPort, p.Proto, o.name, o.p),
					})
				}
			}
			seen = append(seen, owner{u.Service.Name, p})
		}
	}
	return errs
}
