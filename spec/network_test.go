package spec

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParsePublish(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Publish
		err  string
	}{
		{in: "8080:80", want: Publish{HostPort: 8080, Port: 80, Proto: "tcp"}},
		{in: "127.0.0.1:9000:9000/udp", want: Publish{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 9000, Port: 9000, Proto: "udp"}},
		{in: "0.0.0.0:53:5353/udp", want: Publish{HostPort: 53, Port: 5353, Proto: "udp"}},
		{in: "80", err: "is not [HOST_IP:]HOST_PORT:PORT"},
		{in: "8080:0", err: "sandbox port"},
		{in: "70000:80", err: "host port"},
		{in: "8080:80/sctp", err: `protocol "sctp"`},
		{in: "example.com:80:80", err: "not an IPv4 address"},
		{in: "[::1]:80:80", err: "not an IPv4 address"},
	} {
		got, err := ParsePublish(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParsePublish(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePublish(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseEgress(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want EgressRule
		err  string
	}{
		{in: "192.0.2.0/24", want: EgressRule{Prefix: netip.MustParsePrefix("192.0.2.0/24")}},
		{in: "192.0.2.7/24", want: EgressRule{Prefix: netip.MustParsePrefix("192.0.2.0/24")}},
		{in: "198.51.100.7", want: EgressRule{Prefix: netip.MustParsePrefix("198.51.100.7/32")}},
		{in: "203.0.113.0/24:443", want: EgressRule{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Port: 443, Proto: "tcp"}},
		{in: "203.0.113.5:53/udp", want: EgressRule{Prefix: netip.MustParsePrefix("203.0.113.5/32"), Port: 53, Proto: "udp"}},
		{in: "DB.Example:5432", want: EgressRule{Host: "db.example", Port: 5432, Proto: "tcp"}},
		{in: "api.example", want: EgressRule{Host: "api.example"}},
		{in: "192.0.2.0/33", err: "not an IPv4 CIDR"},
		{in: "2001:db8::1", err: ""}, // split at the first ':' below
		{in: "host:0", err: "not a port"},
		{in: "host:80/icmp", err: `protocol "icmp"`},
		{in: "bad_name!", err: "neither a CIDR"},
	} {
		if tc.in == "2001:db8::1" {
			// An IPv6 address reads as HOST:PORT and is refused.
			if _, err := ParseEgress(tc.in); err == nil {
				t.Errorf("ParseEgress(%q): no error", tc.in)
			}
			continue
		}
		got, err := ParseEgress(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseEgress(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseEgress(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestParseBridgeNetwork(t *testing.T) {
	c := mustParse(t, `daemon:
  bridge: crl-test
  subnet: 10.77.3.0/24
  dns: [192.0.2.53]
services:
  web:
    command: [/bin/true]
    network: bridge
    publish: ["8080:80", "127.0.0.1:9000:9000/udp"]
  locked:
    command: [/bin/true]
    network: bridge
    egress: []
  open:
    command: [/bin/true]
    network: bridge
`)
	if c.Bridge.Name != "crl-test" || c.Bridge.Subnet != netip.MustParsePrefix("10.77.3.0/24") || !slices.Equal(c.Bridge.DNS, []netip.Addr{netip.MustParseAddr("192.0.2.53")}) {
		t.Errorf("bridge: %+v", c.Bridge)
	}
	web := c.Unit("web").Service
	if len(web.Publish) != 2 || web.Publish[1].String() != "127.0.0.1:9000:9000/udp" || web.Egress.Restricted {
		t.Errorf("web: publish %v, egress %+v", web.Publish, web.Egress)
	}
	if e := c.Unit("locked").Service.Egress; !e.Restricted || len(e.Allow) != 0 {
		t.Errorf("egress: [] must deny everything: %+v", e)
	}
	if l := c.Unit("open").Service.Loosenings(); !slices.Contains(l, "network: bridge without an egress list") {
		t.Errorf("open's loosenings: %q", l)
	}
	if l := c.Unit("locked").Service.Loosenings(); len(l) != 0 {
		t.Errorf("locked's loosenings: %q", l)
	}
	if d := mustParse(t, "services:\n  a:\n    command: [/bin/true]\n"); d.Bridge.Name != DefaultBridge || d.Bridge.Subnet.String() != DefaultSubnet {
		t.Errorf("default bridge: %+v", d.Bridge)
	}
}

func TestParseBridgeNetworkErrors(t *testing.T) {
	for _, tc := range []struct{ name, text, want string }{
		{"publish without bridge", "services:\n  a:\n    command: [x]\n    publish: [\"80:80\"]\n",
			"services.a.publish: needs network: bridge (the sandbox's network is none)"},
		{"egress with host", "services:\n  a:\n    command: [x]\n    network: host\n    egress: [192.0.2.0/24]\n",
			"services.a.egress: needs network: bridge (the sandbox's network is host)"},
		{"bad port", "services:\n  a:\n    command: [x]\n    network: bridge\n    publish: [\"80:99999\"]\n",
			"services.a.publish[0]: \"80:99999\": sandbox port"},
		{"bad cidr", "services:\n  a:\n    command: [x]\n    network: bridge\n    egress: [10.0.0.0/40]\n",
			"services.a.egress[0]: \"10.0.0.0/40\": \"10.0.0.0/40\" is not an IPv4 CIDR"},
		{"port published twice", "services:\n  a:\n    command: [x]\n    network: bridge\n    publish: [\"8080:80\"]\n  b:\n    command: [x]\n    network: bridge\n    publish: [\"127.0.0.1:8080:81\"]\n",
			"services.b.publish[0]: 127.0.0.1:8080:81/tcp: host port 8080/tcp is already published by service a (8080:80/tcp)"},
		{"twice in one service", "services:\n  a:\n    command: [x]\n    network: bridge\n    publish: [\"53:53/udp\", \"53:54/udp\"]\n",
			"already published by 53:53/udp"},
		{"bad subnet", "daemon:\n  subnet: 10.0.0.0/30\nservices: {}\n", "daemon.subnet: 10.0.0.0/30 is too small"},
		{"bad bridge", "daemon:\n  bridge: a-very-long-bridge-name\nservices: {}\n", "daemon.bridge: \"a-very-long-bridge-name\" is not an interface name"},
		{"loopback dns", "daemon:\n  dns: [127.0.0.53]\nservices: {}\n", "daemon.dns[0]: \"127.0.0.53\" is not an IPv4 address a sandbox can reach"},
		{"ipv6", "daemon:\n  ipv6: true\nservices: {}\n", "daemon.ipv6: IPv6 on the bridge is not built yet"},
	} {
		_, err := Parse("corral.yaml", []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error with %q", tc.name, err, tc.want)
		}
	}
	// Different protocols or addresses do not clash.
	mustParse(t, "services:\n  a:\n    command: [x]\n    network: bridge\n    publish: [\"127.0.0.1:53:53/udp\", \"53:53/tcp\"]\n  b:\n    command: [x]\n    network: bridge\n    publish: [\"127.0.0.2:53:53/udp\"]\n")
}

func TestDiffRestartsOnNetworkChanges(t *testing.T) {
	base := Service{Name: "a", Command: []string{"x"}, Network: NetworkBridge}
	for _, edit := range []func(*Service){
		func(s *Service) { s.Publish = []Publish{{HostPort: 80, Port: 80, Proto: "tcp"}} },
		func(s *Service) { s.Egress.Restricted = true },
		func(s *Service) {
			s.Egress = Egress{Restricted: true, Allow: []EgressRule{{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}}
		},
	} {
		b := base
		edit(&b)
		if !sandboxChanged(&base, &b) {
			t.Errorf("%+v -> %+v: not a sandbox change", base, b)
		}
	}
}
