package firewall

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"web", true},
		{"0", true},
		{"a.b_c-d", true},
		{"9lives", true},
		{strings.Repeat("a", 63), true},
		{strings.Repeat("a", 64), false},
		{"", false},
		{"Web", false},
		{"-web", false},
		{".web", false},
		{"_web", false},
		{"web/1", false},
		{"web 1", false},
		{"we\"b", false},
		{"wéb", false},
		{"web\x00", false},
	} {
		err := validName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("validName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestDerivedNamesStartWithALetter(t *testing.T) {
	// nft's grammar wants identifiers to start with a letter; a service
	// name may start with a digit.
	for _, f := range []func(string) string{egressChain, portChain, deniedCounter, spoofedCounter} {
		n := f("9lives")
		if n[0] < 'a' || n[0] > 'z' || !strings.HasSuffix(n, "9lives") {
			t.Errorf("derived name %q", n)
		}
	}
	// The fixed chains can never be a sandbox's.
	for _, fixed := range []string{"prerouting", "output", "postrouting", "forward", "input", "deny"} {
		if strings.HasPrefix(fixed, "egress-") || strings.HasPrefix(fixed, "port-") {
			t.Errorf("fixed chain %q clashes with derived names", fixed)
		}
	}
}

func TestValidTable(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"corral", true},
		{"corral-corral0", true},
		{"corral_test.1", true},
		{"filter", false},
		{"nat", false},
		{"", false},
		{"corral x", false},
		{"corral/x", false},
		{"corral" + strings.Repeat("x", 59), false},
	} {
		err := validTable(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("validTable(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestValidIfName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"corral0", true},
		{"vc-web-1", true},
		{strings.Repeat("v", 15), true},
		{strings.Repeat("v", 16), false},
		{"", false},
		{"a/b", false},
		{"a b", false},
		{"a:b", false},
		{"..", false},
	} {
		err := validIfName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("validIfName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func goodConfig() Config {
	return Config{
		Table:   "corral-corral0",
		Bridge:  "corral0",
		Subnet:  netip.MustParsePrefix("10.213.0.0/16"),
		Gateway: netip.MustParseAddr("10.213.0.1"),
		DNS:     []netip.Addr{netip.MustParseAddr("203.0.113.53")},
		Sandboxes: []Sandbox{
			{
				Name: "web", Addr: netip.MustParseAddr("10.213.0.2"), HostVeth: "vc-web",
				Publish: []Publish{{HostPort: 8080, Port: 80, Proto: "tcp"}},
			},
			{
				Name: "db", Addr: netip.MustParseAddr("10.213.0.3"), HostVeth: "vc-db",
				Restricted: true,
				Egress: []Allow{
					{Prefix: netip.MustParsePrefix("198.51.100.0/24")},
					{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Port: 443, Proto: "tcp"},
				},
			},
		},
	}
}

func TestValidate(t *testing.T) {
	if err := func() *Config { c := goodConfig(); return &c }().Validate(); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		what  string
		field string
		edit  func(c *Config)
	}{
		{"table not corral's", "table", func(c *Config) { c.Table = "filter" }},
		{"bridge name too long", "bridge", func(c *Config) { c.Bridge = "a-very-long-bridge" }},
		{"IPv6 subnet", "subnet", func(c *Config) { c.Subnet = netip.MustParsePrefix("fd00::/64") }},
		{"subnet with host bits", "subnet", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.213.0.1/16") }},
		{"subnet too small", "subnet", func(c *Config) { c.Subnet = netip.MustParsePrefix("10.213.0.0/31") }},
		{"subnet too wide", "subnet", func(c *Config) { c.Subnet = netip.MustParsePrefix("0.0.0.0/0") }},
		{"gateway outside", "gateway", func(c *Config) { c.Gateway = netip.MustParseAddr("10.214.0.1") }},
		{"gateway is the network", "gateway", func(c *Config) { c.Gateway = netip.MustParseAddr("10.213.0.0") }},
		{"gateway is broadcast", "gateway", func(c *Config) { c.Gateway = netip.MustParseAddr("10.213.255.255") }},
		{"IPv6 resolver", "dns[0]", func(c *Config) { c.DNS[0] = netip.MustParseAddr("2001:db8::53") }},
		{"bad sandbox name", `sandboxes["Web"].name`, func(c *Config) { c.Sandboxes[0].Name = "Web" }},
		{"name twice", `sandboxes["web"].name`, func(c *Config) { c.Sandboxes[1].Name = "web" }},
		{"address outside", `sandboxes["web"].addr`, func(c *Config) { c.Sandboxes[0].Addr = netip.MustParseAddr("10.1.0.2") }},
		{"address is the gateway", `sandboxes["web"].addr`, func(c *Config) { c.Sandboxes[0].Addr = c.Gateway }},
		{"address twice", `sandboxes["db"].addr`, func(c *Config) { c.Sandboxes[1].Addr = c.Sandboxes[0].Addr }},
		{"no address", `sandboxes["web"].addr`, func(c *Config) { c.Sandboxes[0].Addr = netip.Addr{} }},
		{"veth twice", `sandboxes["db"].hostVeth`, func(c *Config) { c.Sandboxes[1].HostVeth = "vc-web" }},
		{"veth is the bridge", `sandboxes["web"].hostVeth`, func(c *Config) { c.Sandboxes[0].HostVeth = "corral0" }},
		{"no veth", `sandboxes["web"].hostVeth`, func(c *Config) { c.Sandboxes[0].HostVeth = "" }},
		{"publish proto", `sandboxes["web"].publish[0]`, func(c *Config) { c.Sandboxes[0].Publish[0].Proto = "sctp" }},
		{"publish host port 0", `sandboxes["web"].publish[0]`, func(c *Config) { c.Sandboxes[0].Publish[0].HostPort = 0 }},
		{"publish port 0", `sandboxes["web"].publish[0]`, func(c *Config) { c.Sandboxes[0].Publish[0].Port = 0 }},
		{"publish IPv6", `sandboxes["web"].publish[0]`, func(c *Config) { c.Sandboxes[0].Publish[0].HostIP = netip.MustParseAddr("2001:db8::1") }},
		{"published twice", `sandboxes["db"].publish[0]`, func(c *Config) {
			c.Sandboxes[1].Publish = []Publish{{HostPort: 8080, Port: 1, Proto: "tcp"}}
		}},
		{"published on one address, then on all", `sandboxes["db"].publish[0]`, func(c *Config) {
			c.Sandboxes[0].Publish[0].HostIP = netip.MustParseAddr("198.51.100.1")
			c.Sandboxes[1].Publish = []Publish{{HostPort: 8080, Port: 1, Proto: "tcp"}}
		}},
		{"published on all, then on one", `sandboxes["db"].publish[0]`, func(c *Config) {
			c.Sandboxes[1].Publish = []Publish{{HostIP: netip.MustParseAddr("198.51.100.1"), HostPort: 8080, Port: 1, Proto: "tcp"}}
		}},
		{"allow IPv6", `sandboxes["db"].egress[0]`, func(c *Config) { c.Sandboxes[1].Egress[0].Prefix = netip.MustParsePrefix("2001:db8::/32") }},
		{"allow proto without port", `sandboxes["db"].egress[0]`, func(c *Config) { c.Sandboxes[1].Egress[0].Proto = "tcp" }},
		{"allow port without proto", `sandboxes["db"].egress[1]`, func(c *Config) { c.Sandboxes[1].Egress[1].Proto = "" }},
	} {
		t.Run(tc.what, func(t *testing.T) {
			c := goodConfig()
			c.DNS = append([]netip.Addr(nil), c.DNS...)
			tc.edit(&c)
			err := c.Validate()
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ErrInvalid", err)
			}
			var ce *ConfigError
			if !errors.As(err, &ce) || ce.Field != tc.field {
				t.Fatalf("Validate() = %v, want field %s", err, tc.field)
			}
		})
	}
}

func TestValidateAcceptsDistinctPublishes(t *testing.T) {
	c := goodConfig()
	c.Sandboxes[1].Publish = []Publish{
		{HostPort: 8080, Port: 80, Proto: "udp"},                                              // other protocol
		{HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 8080, Port: 80, Proto: "tcp"},    // loopback: the proxy's
		{HostIP: netip.MustParseAddr("198.51.100.1"), HostPort: 9090, Port: 90, Proto: "tcp"}, // one address
		{HostIP: netip.MustParseAddr("198.51.100.2"), HostPort: 9090, Port: 91, Proto: "tcp"}, // another
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if got := len(c.Sandboxes[1].published()); got != 3 {
		t.Errorf("published() has %d ports, want 3 (loopback left to the proxy)", got)
	}
}

func TestHost(t *testing.T) {
	p := netip.MustParsePrefix("10.213.0.0/16")
	for a, want := range map[string]bool{
		"10.213.0.0": false, "10.213.255.255": false, "10.213.0.1": true,
		"10.213.255.254": true, "10.213.1.0": true, "10.213.0.255": true,
	} {
		if got := host(p, netip.MustParseAddr(a)); got != want {
			t.Errorf("host(%v, %s) = %v, want %v", p, a, got, want)
		}
	}
}
