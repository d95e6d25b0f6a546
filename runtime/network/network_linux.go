// Package network puts sandboxes on corral's bridge: an address each
// (ipam), a network namespace with a veth pair on the bridge (link), the
// nftables rules of every sandbox of the bridge (firewall) and, for ports
// published on the host's loopback addresses, a userland proxy (proxy).
//
// Its state lives in the state dir, under net/BRIDGE/: one record per
// attached sandbox (records/NAME.json), the address records (addrs/), the
// sandboxes' network namespaces (ns/NAME), their resolv.conf files
// (etc/NAME.resolv.conf) and the hosts file they share (hosts). The rules are always made from all the records at
// once, under a lock (lock), so a daemon and the `corral run` processes
// sharing a state dir, or a daemon restarted after a kill -9, never drop
// each other's rules: the table is a function of what is on disk.
//
// The host names of an egress list are resolved through the resolvers
// the sandbox is given (resolve), at its start, when their TTL runs out
// and at a daemon's reload, by the process that serves the sandbox (the
// one that attached or adopted it): see refresh_linux.go.
package network

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/network/firewall"
	"github.com/corral-dev/corral/runtime/network/ipam"
	"github.com/corral-dev/corral/runtime/network/link"
	"github.com/corral-dev/corral/runtime/network/proxy"
	"github.com/corral-dev/corral/runtime/network/resolve"
	"github.com/corral-dev/corral/spec"
)

// Network is one bridge of one state dir.
type Network struct {
	cfg     spec.Bridge
	dir     string
	owner   string
	gateway netip.Addr
	dns     []netip.Addr
	addrs   *ipam.Allocator
	// resolver asks the sandboxes' resolvers (dns) for egress names.
	resolver *resolve.Resolver
	// proxies are the loopback proxies this process serves, by sandbox:
	// of those it attached, and a daemon's also of those it adopted.
	mu      sync.Mutex
	proxies map[string][]*proxy.Proxy
	// due is, of the sandboxes it serves whose egress list names hosts,
	// when their names are to be resolved again; the refresher goroutine
	// runs while it has any (refreshing), and wake tells it the schedule
	// changed.
	due        map[string]time.Time
	refreshing bool
	wake       chan struct{}
}

// Attachment is what a sandbox on the bridge is given.
type Attachment struct {
	// NetNS is the path of its network namespace, for the runtime to join.
	NetNS string
	Addr  netip.Addr
	// Hosts and Resolv are files to bind read-only at /etc/hosts and
	// /etc/resolv.conf; Hosts, the bridge's, is rewritten in place as
	// sandboxes come and go, so each sees the others by service name.
	Hosts, Resolv string
}

// record is what is on disk of one attached sandbox.
type record struct {
	Name       string           `json:"name"`
	Addr       netip.Addr       `json:"addr"`
	Veth       string           `json:"veth"`
	Publish    []spec.Publish   `json:"publish,omitempty"`
	Restricted bool             `json:"restricted,omitempty"`
	Allow      []firewall.Allow `json:"allow,omitempty"`
	// Egress is the egress list as given, host names included, and Names
	// what those names resolved to and until when: Allow is made from
	// both, again whenever a name's addresses change (by whichever
	// process serves the sandbox then, a daemon that adopted it too).
	Egress []string                  `json:"egress,omitempty"`
	Names  map[string]resolve.Answer `json:"names,omitempty"`
}

// Open brings up the bridge of cfg for the state dir stateDir (making it
// if needed, refusing one that is not corral's for this state dir or a
// subnet that overlaps a host route) and its records.
func Open(stateDir string, cfg spec.Bridge) (*Network, error) {
	n := &Network{cfg: cfg, dir: filepath.Join(stateDir, "net", cfg.Name), owner: stateDir,
		proxies: map[string][]*proxy.Proxy{}, due: map[string]time.Time{}, wake: make(chan struct{}, 1)}
	for _, d := range []string{"records", "addrs", "ns", "etc"} {
		if err := os.MkdirAll(filepath.Join(n.dir, d), 0o711); err != nil {
			return nil, fmt.Errorf("bridge %s: %w", cfg.Name, err)
		}
	}
	var err error
	if n.addrs, err = ipam.Open(filepath.Join(n.dir, "addrs"), cfg.Subnet); err != nil {
		return nil, fmt.Errorf("bridge %s: %w", cfg.Name, err)
	}
	n.gateway = n.addrs.Gateway()
	if err := link.EnsureBridge(cfg.Name, netip.PrefixFrom(n.gateway, cfg.Subnet.Bits()), stateDir); err != nil {
		return nil, &spec.FieldError{Field: "daemon.bridge", Err: err}
	}
	// Routing between the bridge and the host's other interfaces (outbound
	// NAT, published ports) needs forwarding on, as Docker sets it.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0); err != nil {
		return nil, fmt.Errorf("bridge %s: turn on IPv4 forwarding: %w", cfg.Name, err)
	}
	n.dns = cfg.DNS
	if len(n.dns) == 0 {
		n.dns = hostResolvers("/etc/resolv.conf")
	}
	// The names are resolved by the sandbox's own resolvers, for the list
	// to allow what the sandbox will resolve.
	n.resolver = resolve.ForServers(n.dns)
	return n, nil
}

// Present says whether the state dir stateDir has put sandboxes on the
// bridge name (and so may have left some there).
func Present(stateDir, name string) bool {
	_, err := os.Lstat(filepath.Join(stateDir, "net", name, "records"))
	return err == nil
}

// table is the name of the bridge's nftables tables.
func (n *Network) table() string { return "corral-" + n.cfg.Name }

func (n *Network) nsPath(name string) string { return filepath.Join(n.dir, "ns", name) }
func (n *Network) recordPath(name string) string {
	return filepath.Join(n.dir, "records", name+".json")
}
func (n *Network) hostsPath() string { return filepath.Join(n.dir, "hosts") }
func (n *Network) etcPath(name, file string) string {
	return filepath.Join(n.dir, "etc", name+"."+file)
}

// lock serializes changes of the bridge's records and rules among the
// processes of the state dir.
func (n *Network) lock() (func(), error) {
	f, err := os.OpenFile(filepath.Join(n.dir, "lock"), os.O_RDWR|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("bridge %s: lock: %w", n.cfg.Name, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("bridge %s: lock: %w", n.cfg.Name, err)
	}
	return func() { f.Close() }, nil
}

// Attach puts the sandbox of svc on the bridge: its published ports are
// reserved first (a taken one refuses the start, naming its owner, with
// nothing made), then its address, namespace, veth, rules and files.
func (n *Network) Attach(svc *spec.Service) (_ *Attachment, err error) {
	// Names are resolved before the lock: a slow resolver must not hold
	// up every other start and stop on the bridge.
	var allow []firewall.Allow
	var answers map[string]resolve.Answer
	if svc.Egress.Restricted {
		// A name that does not resolve refuses the start: a list that
		// silently allowed less than it says would be a surprise.
		ctx, cancel := context.WithTimeout(context.Background(), resolveTimeout)
		answers, _, err = n.resolver.Refresh(ctx, hostNames(svc.Egress.Allow), nil, true)
		cancel()
		if err != nil {
			return nil, &spec.FieldError{Field: "egress", Err: err}
		}
		allow = allowOf(svc.Egress.Allow, answers)
	}
	unlock, err := n.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// What a killed process left of this name goes first.
	n.detachLocked(svc.Name)
	addr, err := n.addrs.Get(svc.Name)
	if err != nil {
		return nil, &spec.FieldError{Field: "network", Err: err}
	}
	defer func() {
		if err != nil {
			n.detachLocked(svc.Name)
		}
	}()
	proxies, err := n.listen(svc.Publish, addr)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	n.proxies[svc.Name] = proxies
	n.mu.Unlock()
	rec := record{Name: svc.Name, Addr: addr, Veth: link.VethName(n.cfg.Name, svc.Name), Publish: svc.Publish,
		Restricted: svc.Egress.Restricted, Allow: allow, Egress: egressStrings(svc.Egress.Allow), Names: answers}
	if err := link.Attach(n.nsPath(svc.Name), n.cfg.Name, rec.Veth, netip.PrefixFrom(addr, n.cfg.Subnet.Bits()), n.gateway); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := writeJSON(n.recordPath(svc.Name), rec); err != nil {
		return nil, err
	}
	if err := n.addLocked(svc.Name); err != nil {
		return nil, err
	}
	att := &Attachment{NetNS: n.nsPath(svc.Name), Addr: addr, Hosts: n.hostsPath(), Resolv: n.etcPath(svc.Name, "resolv.conf")}
	if err := os.WriteFile(att.Resolv, []byte(resolvConf(n.dns)), 0o644); err != nil {
		return nil, fmt.Errorf("network: %w", err)
	}
	if err := n.hostsLocked(); err != nil {
		return nil, err
	}
	if len(answers) > 0 {
		n.track(svc.Name, n.resolver.Due(answers))
	}
	return att, nil
}

// Detach takes the sandbox name off the bridge; what is already gone is
// fine.
func (n *Network) Detach(name string) error {
	unlock, err := n.lock()
	if err != nil {
		return err
	}
	rec, had, errs := n.unrecordLocked(name)
	unlock()
	// The sandbox's processes are gone: its namespace ends when unbound,
	// and the kernel takes the veth pair with it, in one batch with the
	// other namespaces ending then (one RCU grace period for all, where
	// deleting each veth waits one). Outside the lock, so that stops
	// overlap their waits; the address is freed once the veth is gone,
	// never while its old holder could still answer for it.
	errs = append(errs, link.Release(n.nsPath(name), link.VethName(n.cfg.Name, name), releaseWait))
	errs = append(errs, n.freeHeld(name, rec, had)...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: detach %s: %w", name, err)
	}
	return nil
}

// releaseWait bounds Detach's wait for the kernel to end a sandbox's
// namespace; past it the veth is deleted directly.
const releaseWait = 5 * time.Second

func (n *Network) detachLocked(name string) error {
	rec, had, errs := n.unrecordLocked(name)
	errs = append(errs, link.Detach(n.nsPath(name), link.VethName(n.cfg.Name, name)))
	errs = append(errs, n.freeHeld(name, rec, had)...)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: detach %s: %w", name, err)
	}
	return nil
}

// unrecordLocked takes the sandbox name out of what the bridge shares:
// its proxies, record, rules, resolv.conf and the hosts file. had says
// whether it had a record, rec.
func (n *Network) unrecordLocked(name string) (rec record, had bool, errs []error) {
	n.mu.Lock()
	for _, p := range n.proxies[name] {
		p.Close()
	}
	delete(n.proxies, name)
	n.untrackLocked(name)
	n.mu.Unlock()
	rec, err := readRecord(n.recordPath(name))
	had = err == nil
	if err := os.Remove(n.recordPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if had {
		errs = append(errs, n.deleteLocked(name))
	}
	if err := os.Remove(n.etcPath(name, "resolv.conf")); err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, err)
	}
	if had {
		errs = append(errs, n.hostsLocked())
	}
	return rec, had, errs
}

// freeHeld frees what the sandbox name held once its veth is gone: its
// connection tracking entries and its address.
func (n *Network) freeHeld(name string, rec record, had bool) []error {
	var errs []error
	if had {
		// Stale entries would keep sending a reused address's traffic
		// (UDP above all) where the old sandbox was.
		errs = append(errs, link.ForgetConntrack(rec.Addr))
	}
	return append(errs, n.addrs.Release(name))
}

// Adopt serves again the loopback proxies of a sandbox attached by a
// process that is gone (a daemon killed and restarted), and resolves its
// egress names again when their answers expire (at once, those that
// expired meanwhile).
func (n *Network) Adopt(name string) error {
	rec, err := readRecord(n.recordPath(name))
	if err != nil {
		return nil // not on the bridge
	}
	if rules, err := parseEgress(rec.Egress); err == nil && len(hostNames(rules)) > 0 {
		due := n.resolver.Due(rec.Names)
		if due.IsZero() {
			due = time.Now() // names never resolved: now
		}
		n.track(name, due)
	}
	proxies, err := n.listen(rec.Publish, rec.Addr)
	if err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.proxies[name] {
		p.Close()
	}
	n.proxies[name] = proxies
	return nil
}

// listen reserves the published ports that the host's loopback can reach
// (HostIP loopback or every address) with a proxy each.
func (n *Network) listen(publish []spec.Publish, addr netip.Addr) (_ []*proxy.Proxy, err error) {
	var out []*proxy.Proxy
	defer func() {
		if err != nil {
			for _, p := range out {
				p.Close()
			}
		}
	}()
	for i, p := range publish {
		host := p.HostIP
		if !host.IsValid() {
			host = netip.IPv4Unspecified()
		}
		if !host.IsLoopback() && !host.IsUnspecified() {
			continue
		}
		px, err := proxy.Listen(p.Proto, netip.AddrPortFrom(host, p.HostPort), netip.AddrPortFrom(addr, p.Port))
		if err != nil {
			return nil, &spec.FieldError{Field: fmt.Sprintf("publish[%d]", i), Err: err}
		}
		out = append(out, px)
	}
	return out, nil
}

// applyLocked replaces the bridge's rules with those of every record.
func (n *Network) applyLocked() error {
	return n.rulesLocked(firewall.Apply)
}

// addLocked adds the rules of the sandbox name, whose record is written,
// to those in force: the cheap change of a start (see firewall.Add).
func (n *Network) addLocked(name string) error {
	return n.rulesLocked(func(c firewall.Config) error { return firewall.Add(c, name) })
}

// deleteLocked takes the rules of the sandbox name, whose record is gone,
// out of those in force.
func (n *Network) deleteLocked(name string) error {
	return n.rulesLocked(func(c firewall.Config) error { return firewall.Delete(c, name) })
}

// rulesLocked changes the rules with change, given the network of every
// record; with none, the tables go.
func (n *Network) rulesLocked(change func(firewall.Config) error) error {
	recs, err := n.records()
	if err != nil {
		return err
	}
	cfg := firewall.Config{Table: n.table(), Bridge: n.cfg.Name, Subnet: n.cfg.Subnet, Gateway: n.gateway, DNS: n.dns}
	for _, r := range recs {
		sb := firewall.Sandbox{Name: r.Name, Addr: r.Addr, HostVeth: r.Veth, Restricted: r.Restricted, Egress: r.Allow}
		for _, p := range r.Publish {
			sb.Publish = append(sb.Publish, firewall.Publish{HostIP: p.HostIP, HostPort: p.HostPort, Port: p.Port, Proto: p.Proto})
		}
		cfg.Sandboxes = append(cfg.Sandboxes, sb)
	}
	if len(cfg.Sandboxes) == 0 {
		return firewall.Remove(n.table(), 0)
	}
	if err := change(cfg); err != nil {
		return fmt.Errorf("network: rules of bridge %s: %w", n.cfg.Name, err)
	}
	return nil
}

// hostsLocked rewrites the bridge's hosts file, which every sandbox of
// the bridge binds at /etc/hosts: localhost, and each sandbox by its
// service name (its own included). One file for all: a change writes it
// once, not once per sandbox. In place (the bind mounts hold the inode),
// in one write, then cut to length.
func (n *Network) hostsLocked() error {
	recs, err := n.records()
	if err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, r := range recs {
		fmt.Fprintf(&b, "%s\t%s\n", r.Addr, r.Name)
	}
	body := b.String()
	f, err := os.OpenFile(n.hostsPath(), os.O_WRONLY|os.O_CREATE|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil {
		return fmt.Errorf("network: hosts: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(body), 0); err != nil {
		return fmt.Errorf("network: hosts: %w", err)
	}
	if err := f.Truncate(int64(len(body))); err != nil {
		return fmt.Errorf("network: hosts: %w", err)
	}
	return nil
}

// records reads every record, in name order.
func (n *Network) records() ([]record, error) {
	ents, err := os.ReadDir(filepath.Join(n.dir, "records"))
	if err != nil {
		return nil, fmt.Errorf("network: records: %w", err)
	}
	var out []record
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		r, err := readRecord(n.recordPath(name))
		if err != nil || r.Name != name {
			continue // half-written or foreign: not a sandbox of ours
		}
		out = append(out, r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

func readRecord(path string) (record, error) {
	var r record
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return r, err
	}
	defer f.Close()
	err = json.NewDecoder(f).Decode(&r)
	return r, err
}

func writeJSON(path string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("network: %w", err)
	}
	return nil
}

// hostResolvers are the host's nameservers a sandbox can reach: not
// loopback ones (127.0.0.53 is the host's own, not the sandbox's).
func hostResolvers(path string) []netip.Addr {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []netip.Addr
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			if ip, err := netip.ParseAddr(fields[1]); err == nil && ip.Is4() && !ip.IsLoopback() && !slices.Contains(out, ip) {
				out = append(out, ip)
			}
		}
	}
	return out
}

func resolvConf(dns []netip.Addr) string {
	if len(dns) == 0 {
		return "# no resolver: set daemon.dns (the host's are loopback or none)\n"
	}
	var b strings.Builder
	for _, ip := range dns {
		fmt.Fprintf(&b, "nameserver %s\n", ip)
	}
	return b.String()
}

// Status is a sandbox's place and traffic on the bridge, for status and
// metrics.
type Status struct {
	Addr netip.Addr
	// RxBytes and TxBytes are what the sandbox received and sent, as its
	// veth counts them (from its attach on).
	RxBytes, TxBytes uint64
	// Restricted: it has an egress list; Denied counts the packets the
	// list refused.
	Restricted bool
	Denied     uint64
}

// Status reports the sandboxes of names that are on the bridge; the
// others are absent. Counters it cannot read are left at 0: a scrape
// must not fail for one veth that went away meanwhile.
func (n *Network) Status(names []string) map[string]Status {
	out := map[string]Status{}
	var denied map[string]uint64
	for _, name := range names {
		rec, err := readRecord(n.recordPath(name))
		if err != nil || rec.Name != name {
			continue
		}
		st := Status{Addr: rec.Addr, Restricted: rec.Restricted}
		st.RxBytes, st.TxBytes, _ = link.Counters(rec.Veth)
		if rec.Restricted {
			if denied == nil {
				// One dump of the table's counters serves every name.
				denied, _ = firewall.Denied(n.table(), 0)
				if denied == nil {
					denied = map[string]uint64{}
				}
			}
			st.Denied = denied[name]
		}
		out[name] = st
	}
	return out
}

// Sweep takes off the bridge everything of a sandbox that keep does not
// name: the records, namespaces, files and addresses a corral killed
// between a sandbox's end and its detach left, and the veths on the
// bridge that no record accounts for. keep must name every sandbox of the
// state dir that may still be attached (its caller holds the sandbox
// manager's lock, so none is being made meanwhile).
func (n *Network) Sweep(keep func(name string) bool) error {
	unlock, err := n.lock()
	if err != nil {
		return err
	}
	defer unlock()
	names := map[string]bool{}
	for _, sub := range []string{"records", "ns", "etc"} {
		ents, err := os.ReadDir(filepath.Join(n.dir, sub))
		if err != nil {
			return fmt.Errorf("network: sweep: %w", err)
		}
		for _, e := range ents {
			name := e.Name()
			switch sub {
			case "records":
				name = strings.TrimSuffix(strings.TrimSuffix(name, ".tmp"), ".json")
			case "etc":
				name = strings.TrimSuffix(name, ".resolv.conf")
			}
			names[name] = true
		}
	}
	addrs, err := n.addrs.All()
	if err != nil {
		return fmt.Errorf("network: sweep: %w", err)
	}
	for name := range addrs {
		names[name] = true
	}
	var errs []error
	vethsKept := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(names)) {
		if keep(name) {
			vethsKept[link.VethName(n.cfg.Name, name)] = true
			continue
		}
		// A name that is not a valid sandbox name was not made by corral:
		// detach refuses it and it stays.
		if err := n.detachLocked(name); err != nil {
			errs = append(errs, err)
		}
		os.Remove(n.recordPath(name) + ".tmp")
	}
	orphans, err := link.Orphans(n.cfg.Name, vethsKept)
	errs = append(errs, err)
	for _, veth := range orphans {
		errs = append(errs, link.Detach("", veth))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("network: sweep of bridge %s: %w", n.cfg.Name, err)
	}
	return nil
}
