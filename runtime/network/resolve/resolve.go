// Package resolve turns the host names of an egress list into IPv4
// addresses, with the time each answer may be kept: it asks the
// resolvers the sandbox itself is given, so that the list allows what
// the sandbox will resolve, and their TTLs say when to ask again.
package resolve

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/miekg/dns"
)

// Defaults of a Resolver.
const (
	// DefaultFloor keeps a TTL of 0 (or 1) from turning into a query
	// loop.
	DefaultFloor = 5 * time.Second
	// DefaultCeiling bounds how long a moved name can go unnoticed.
	DefaultCeiling = time.Hour
	// DefaultInterval is how long an answer of the host's resolver
	// (which gives no TTL) is kept.
	DefaultInterval = time.Minute
	// DefaultTimeout is the wait for one server's answer.
	DefaultTimeout = 2 * time.Second
)

// ErrNoAddress is a name that has no IPv4 address (NXDOMAIN, or no A
// record): an answer, not a failure of the resolvers.
var ErrNoAddress = errors.New("no IPv4 address")

// Answer is what a name resolved to, and until when that may be kept.
type Answer struct {
	Addrs   []netip.Addr `json:"addrs"`
	Expires time.Time    `json:"expires"`
}

// Resolver looks names up. The zero value asks the host's resolver
// (net.DefaultResolver) with the defaults.
type Resolver struct {
	// Servers are asked in turn, each until one answers; none: the
	// host's resolver, whose answers are kept for Interval.
	Servers []netip.AddrPort
	// Floor and Ceiling clamp a TTL; Interval is the TTL of the host
	// resolver's answers; Timeout bounds one query to one server. Zero:
	// the defaults.
	Floor, Ceiling, Interval, Timeout time.Duration
	// Lookup is the host's resolver (nil: net.DefaultResolver).
	Lookup func(ctx context.Context, network, host string) ([]netip.Addr, error)
	// Now is the clock (nil: time.Now).
	Now func() time.Time
}

// ForServers is a resolver asking addrs on port 53 (the host's resolver
// when there is none).
func ForServers(addrs []netip.Addr) *Resolver {
	r := &Resolver{}
	for _, a := range addrs {
		r.Servers = append(r.Servers, netip.AddrPortFrom(a, 53))
	}
	return r
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// clamp is ttl kept within the floor and the ceiling.
func (r *Resolver) clamp(ttl time.Duration) time.Duration {
	return min(max(ttl, orDefault(r.Floor, DefaultFloor)), orDefault(r.Ceiling, DefaultCeiling))
}

// Resolve looks name up: its IPv4 addresses (sorted) and when the answer
// expires.
func (r *Resolver) Resolve(ctx context.Context, name string) (Answer, error) {
	if len(r.Servers) == 0 {
		return r.resolveHost(ctx, name)
	}
	var errs []error
	for _, srv := range r.Servers {
		a, err := r.ask(ctx, srv, name)
		if err == nil || errors.Is(err, ErrNoAddress) {
			return a, err
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return Answer{}, fmt.Errorf("resolve %s: %w", name, errors.Join(errs...))
}

func (r *Resolver) resolveHost(ctx context.Context, name string) (Answer, error) {
	lookup := r.Lookup
	if lookup == nil {
		lookup = net.DefaultResolver.LookupNetIP
	}
	ips, err := lookup(ctx, "ip4", name)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return Answer{}, fmt.Errorf("resolve %s: %w", name, ErrNoAddress)
	}
	if err != nil {
		return Answer{}, fmt.Errorf("resolve %s: %w", name, err)
	}
	var addrs []netip.Addr
	for _, ip := range ips {
		if ip = ip.Unmap(); ip.Is4() && !slices.Contains(addrs, ip) {
			addrs = append(addrs, ip)
		}
	}
	if len(addrs) == 0 {
		return Answer{}, fmt.Errorf("resolve %s: %w", name, ErrNoAddress)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	// The host's resolver says nothing of TTLs: ask again at a fixed
	// interval.
	return Answer{Addrs: addrs, Expires: r.now().Add(r.clamp(orDefault(r.Interval, DefaultInterval)))}, nil
}

// ask sends an A query for name to srv: over UDP, again over TCP if the
// answer was truncated.
func (r *Resolver) ask(ctx context.Context, srv netip.AddrPort, name string) (Answer, error) {
	q := new(dns.Msg)
	q.SetQuestion(dns.Fqdn(name), dns.TypeA)
	q.SetEdns0(1232, false)
	timeout := orDefault(r.Timeout, DefaultTimeout)
	c := &dns.Client{Net: "udp", Timeout: timeout}
	resp, _, err := c.ExchangeContext(ctx, q, srv.String())
	if err == nil && resp.Truncated {
		c = &dns.Client{Net: "tcp", Timeout: timeout}
		resp, _, err = c.ExchangeContext(ctx, q, srv.String())
	}
	if err != nil {
		return Answer{}, fmt.Errorf("server %s: %w", srv, err)
	}
	switch resp.Rcode {
	case dns.RcodeSuccess:
	case dns.RcodeNameError:
		return Answer{}, fmt.Errorf("resolve %s: %w (server %s: NXDOMAIN)", name, ErrNoAddress, srv)
	default:
		// SERVFAIL, REFUSED...: the next server may know better.
		return Answer{}, fmt.Errorf("server %s: %s", srv, dns.RcodeToString[resp.Rcode])
	}
	addrs, ttl := addresses(resp, dns.Fqdn(name))
	if len(addrs) == 0 {
		return Answer{}, fmt.Errorf("resolve %s: %w (server %s)", name, ErrNoAddress, srv)
	}
	return Answer{Addrs: addrs, Expires: r.now().Add(r.clamp(ttl))}, nil
}

// addresses are the A records of name in resp, through its CNAME chain,
// and the least TTL on the way (a CNAME's expiry is the answer's too).
func addresses(resp *dns.Msg, name string) ([]netip.Addr, time.Duration) {
	chain := map[string]bool{dns.CanonicalName(name): true}
	var ttl uint32
	first := true
	keep := func(h *dns.RR_Header) {
		if first || h.Ttl < ttl {
			ttl, first = h.Ttl, false
		}
	}
	// A chain is short and may come in any order: go over it until it
	// stops growing.
	for grew := true; grew; {
		grew = false
		for _, rr := range resp.Answer {
			if c, ok := rr.(*dns.CNAME); ok && chain[dns.CanonicalName(c.Hdr.Name)] && !chain[dns.CanonicalName(c.Target)] {
				chain[dns.CanonicalName(c.Target)] = true
				keep(&c.Hdr)
				grew = true
			}
		}
	}
	var addrs []netip.Addr
	for _, rr := range resp.Answer {
		a, ok := rr.(*dns.A)
		if !ok || !chain[dns.CanonicalName(a.Hdr.Name)] {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.A)
		if ip = ip.Unmap(); !ok || !ip.Is4() {
			continue
		}
		keep(&a.Hdr)
		if !slices.Contains(addrs, ip) {
			addrs = append(addrs, ip)
		}
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	return addrs, time.Duration(ttl) * time.Second
}

// Refresh resolves again the names whose answer in last has expired
// (every one with force) and returns the answers now, and whether a
// name's addresses changed. A name that fails keeps its last answer
// (expired: Due then retries it after the floor) and its error is
// returned with the others; one that never resolved is kept with no
// address, to be tried again likewise.
func (r *Resolver) Refresh(ctx context.Context, names []string, last map[string]Answer, force bool) (map[string]Answer, bool, error) {
	now := r.now()
	next := map[string]Answer{}
	changed := false
	var errs []error
	for _, name := range names {
		old, had := last[name]
		if had && !force && old.Expires.After(now) {
			next[name] = old
			continue
		}
		a, err := r.Resolve(ctx, name)
		if err != nil {
			errs = append(errs, err)
			next[name] = old
			continue
		}
		if !had || !slices.Equal(old.Addrs, a.Addrs) {
			changed = true
		}
		next[name] = a
	}
	return next, changed, errors.Join(errs...)
}

// Due is when the first of answers is to be asked again: its expiry, or,
// for one already expired (its last refresh failed), the floor from now.
// Zero when there are none.
func (r *Resolver) Due(answers map[string]Answer) time.Time {
	now := r.now()
	var due time.Time
	for _, a := range answers {
		t := a.Expires
		if !t.After(now) {
			t = now.Add(orDefault(r.Floor, DefaultFloor))
		}
		if due.IsZero() || t.Before(due) {
			due = t
		}
	}
	return due
}
