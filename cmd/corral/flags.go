package main

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/corral-dev/corral/spec"
)

// Flag values that parse with the spec package's parsers, so that a bad
// value is refused by the flag parser with the flag's name in the error.

type bytesValue struct{ n *int64 }

func (v bytesValue) String() string {
	if v.n == nil || *v.n == 0 {
		return ""
	}
	return strconv.FormatInt(*v.n, 10)
}
func (v bytesValue) Set(s string) (err error) { *v.n, err = spec.ParseBytes(s); return err }
func (bytesValue) Type() string               { return "size" }

type cpusValue struct{ f *float64 }

func (v cpusValue) String() string {
	if v.f == nil || *v.f == 0 {
		return ""
	}
	return strconv.FormatFloat(*v.f, 'g', -1, 64)
}
func (v cpusValue) Set(s string) (err error) { *v.f, err = spec.ParseCPUs(s); return err }
func (cpusValue) Type() string               { return "cpus" }

type userValue struct{ u *spec.User }

func (v userValue) String() string {
	if v.u == nil || *v.u == (spec.User{}) {
		return ""
	}
	return strconv.FormatUint(uint64(v.u.UID), 10) + ":" + strconv.FormatUint(uint64(v.u.GID), 10)
}
func (v userValue) Set(s string) (err error) { *v.u, err = spec.ParseUser(s); return err }
func (userValue) Type() string               { return "uid[:gid]" }

type mountsValue struct{ m *[]spec.Mount }

func (v mountsValue) String() string { return "" }
func (v mountsValue) Set(s string) error {
	m, err := spec.ParseMount(s)
	if err == nil {
		*v.m = append(*v.m, m)
	}
	return err
}
func (mountsValue) Type() string { return "src:dst[:ro|rw]" }

type envValue struct{ env *[]string }

func (v envValue) String() string { return "" }
func (v envValue) Set(s string) error {
	kv, err := spec.ParseEnv(s, os.LookupEnv)
	if err == nil {
		*v.env = append(*v.env, kv)
	}
	return err
}
func (envValue) Type() string { return "key=value" }

type capsValue struct{ caps *[]string }

func (v capsValue) String() string { return strings.Join(*v.caps, ",") }
func (v capsValue) Set(s string) error {
	caps, err := spec.ParseCapability(s)
	if err == nil {
		*v.caps = append(*v.caps, caps...)
	}
	return err
}
func (capsValue) Type() string { return "capability" }

type publishValue struct{ p *[]spec.Publish }

func (v publishValue) String() string { return "" }
func (v publishValue) Set(s string) error {
	p, err := spec.ParsePublish(s)
	if err == nil {
		*v.p = append(*v.p, p)
	}
	return err
}
func (publishValue) Type() string { return "[ip:]hostport:port[/proto]" }

// egressValue: any --egress makes the list (deny by default); "none"
// alone allows nothing.
type egressValue struct{ e *spec.Egress }

func (v egressValue) String() string { return "" }
func (v egressValue) Set(s string) error {
	v.e.Restricted = true
	if s == "none" {
		return nil
	}
	r, err := spec.ParseEgress(s)
	if err == nil {
		v.e.Allow = append(v.e.Allow, r)
	}
	return err
}
func (egressValue) Type() string { return "cidr|host[:port[/proto]]" }

type prefixValue struct{ p *netip.Prefix }

func (v prefixValue) String() string { return "" }
func (v prefixValue) Set(s string) error {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return fmt.Errorf("%q is not a CIDR such as %s", s, spec.DefaultSubnet)
	}
	if err := spec.CheckSubnet(p); err != nil {
		return err
	}
	*v.p = p.Masked()
	return nil
}
func (prefixValue) Type() string { return "cidr" }

type addrsValue struct{ a *[]netip.Addr }

func (v addrsValue) String() string { return "" }
func (v addrsValue) Set(s string) error {
	ip, err := netip.ParseAddr(s)
	if err != nil || !ip.Is4() || ip.IsLoopback() {
		return fmt.Errorf("%q is not an IPv4 address a sandbox can reach", s)
	}
	*v.a = append(*v.a, ip)
	return nil
}
func (addrsValue) Type() string { return "ip" }
