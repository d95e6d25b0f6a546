//go:build linux

package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ctStatusDNAT is IPS_DST_NAT of the kernel's ip_conntrack_status: the
// connection's destination was translated.
const ctStatusDNAT = 1 << 5

// Chain priorities.
const (
	// filterPriority runs corral's filter chains before the usual filter
	// priority (0) of a host firewall, so that what corral denies is
	// refused and counted whatever a later chain does; it is after
	// conntrack (-200) and DNAT (-100), so connection state and the DNATed
	// destination are known.
	filterPriority = -10
	// spoofPriority is the bridge family's filter priority: anti-spoofing
	// runs before br_netfilter (0) hands a frame to the inet hooks, so a
	// spoofed packet never reaches conntrack.
	spoofPriority = -200
)

// Apply replaces the rules of c.Table with those c describes, in one
// transaction; it makes them if there were none. When a sandbox is
// Restricted, c.Bridge must exist: Apply turns on its nf_call_iptables.
func Apply(c Config) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if c.restricted() {
		if err := bridgeHooks(c.Bridge, c.NetNS); err != nil {
			return fmt.Errorf("apply firewall %s: %w", c.Table, err)
		}
	}
	b := newBatch(c.NetNS)
	exists, err := b.tablesExist(c.Table)
	if err != nil {
		return fmt.Errorf("apply firewall %s: %w", c.Table, err)
	}
	if exists {
		if err := b.keepCounts(c.Table); err != nil {
			return fmt.Errorf("apply firewall %s: %w", c.Table, err)
		}
		b.replace(c.Table)
	}
	b.inet(&c)
	b.bridge(&c)
	if err := b.flush(); err != nil {
		return fmt.Errorf("apply firewall %s: %w", c.Table, err)
	}
	return nil
}

// Add puts the sandbox name of c (c describing the whole network, that
// sandbox included) into the rules in force, adding only its rules: a
// transaction that deletes nothing is cheap, where one that deletes waits
// for the kernel's RCU grace period (milliseconds: most of the cost of a
// sandbox's start). When the tables in force are not those of c without
// that sandbox as far as Add can tell (not there, or the sandbox already
// has rules), it does what Apply does.
func Add(c Config, name string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	s := c.sandbox(name)
	if s == nil {
		return invalid("sandboxes", "no sandbox %q", name)
	}
	b := newBatch(c.NetNS)
	ok, err := b.readyFor(c.Table, name)
	if err != nil {
		return fmt.Errorf("apply firewall %s: %w", c.Table, err)
	}
	if !ok {
		return Apply(c)
	}
	if s.Restricted {
		if err := bridgeHooks(c.Bridge, c.NetNS); err != nil {
			return fmt.Errorf("apply firewall %s: %w", c.Table, err)
		}
	}
	// The tables and their base chains are there: naming them is enough.
	inet := &nftables.Table{Name: c.Table, Family: nftables.TableFamilyINet}
	named := func(t *nftables.Table, n string) *nftables.Chain { return &nftables.Chain{Name: n, Table: t} }
	ch := inetChains{table: inet, pre: named(inet, "prerouting"), out: named(inet, "output"),
		post: named(inet, "postrouting"), fwd: named(inet, "forward"), in: named(inet, "input"), deny: named(inet, "deny")}
	b.inetSandbox(ch, &c, s)
	b.bridgeSandbox(named(&nftables.Table{Name: c.Table, Family: nftables.TableFamilyBridge}, "prerouting"), s)
	if err := b.flush(); err != nil {
		return fmt.Errorf("apply firewall %s: add %s: %w", c.Table, name, err)
	}
	return nil
}

// Delete takes the sandbox name out of the rules in force, c describing
// the network without it, in one transaction; with no sandbox left it
// removes the tables. If the tables are not as Add and Apply leave them,
// it does what Apply does.
func Delete(c Config, name string) error {
	if err := c.Validate(); err != nil {
		return err
	}
	if err := validName(name); err != nil {
		return invalid("name", "%q: %v", name, err)
	}
	if len(c.Sandboxes) == 0 {
		return Remove(c.Table, c.NetNS)
	}
	b := newBatch(c.NetNS)
	inet := &nftables.Table{Name: c.Table, Family: nftables.TableFamilyINet}
	br := &nftables.Table{Name: c.Table, Family: nftables.TableFamilyBridge}
	chains, err := b.chainsOf(c.Table)
	if err != nil {
		return fmt.Errorf("apply firewall %s: %w", c.Table, err)
	}
	if !chains[inet.Family]["forward"] || !chains[br.Family]["prerouting"] {
		return Apply(c)
	}
	tag := ruleTag(name)
	for _, base := range []*nftables.Chain{
		{Name: "prerouting", Table: inet}, {Name: "output", Table: inet}, {Name: "forward", Table: inet},
		{Name: "input", Table: inet}, {Name: "prerouting", Table: br},
	} {
		rules, err := b.conn.GetRules(base.Table, base)
		if err != nil {
			return fmt.Errorf("apply firewall %s: rules of %s: %w", c.Table, base.Name, err)
		}
		for _, r := range rules {
			if bytes.Equal(r.UserData, tag) {
				if err := b.conn.DelRule(r); err != nil {
					return fmt.Errorf("apply firewall %s: %w", c.Table, err)
				}
				b.n++
			}
		}
	}
	for _, gone := range []struct {
		t     *nftables.Table
		chain string
		count string
	}{{inet, egressChain(name), deniedCounter(name)}, {br, portChain(name), spoofedCounter(name)}} {
		if chains[gone.t.Family][gone.chain] {
			ch := &nftables.Chain{Name: gone.chain, Table: gone.t}
			b.conn.FlushChain(ch)
			b.conn.DelChain(ch)
			b.n += 2
		}
		// The counter is referred to only from the chain just deleted.
		if objs, err := b.conn.GetNamedObjects(gone.t); err == nil {
			for _, o := range objs {
				if n, ok := o.(*nftables.NamedObj); ok && n.Name == gone.count {
					b.conn.DeleteObject(&nftables.CounterObj{Table: gone.t, Name: gone.count})
					b.n++
				}
			}
		}
	}
	if err := b.flush(); err != nil {
		return fmt.Errorf("apply firewall %s: delete %s: %w", c.Table, name, err)
	}
	return nil
}

// tablesExist says whether either table named table is there. A batch
// that deletes a table waits for the kernel's RCU grace period even when
// the table was made in the same batch: Apply deletes only what exists.
func (b *batch) tablesExist(table string) (bool, error) {
	for _, f := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		_, err := b.conn.ListTableOfFamily(table, f)
		if err == nil {
			return true, nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return false, fmt.Errorf("list tables: %w", err)
		}
	}
	return false, nil
}

// sandbox is the sandbox of c named name, or nil.
func (c *Config) sandbox(name string) *Sandbox {
	for i := range c.Sandboxes {
		if c.Sandboxes[i].Name == name {
			return &c.Sandboxes[i]
		}
	}
	return nil
}

// chainsOf lists the chains of the two tables named table, by family,
// in one dump.
func (b *batch) chainsOf(table string) (map[nftables.TableFamily]map[string]bool, error) {
	out := map[nftables.TableFamily]map[string]bool{nftables.TableFamilyINet: {}, nftables.TableFamilyBridge: {}}
	chains, err := b.conn.ListChains()
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	for _, ch := range chains {
		if ch.Table.Name == table && out[ch.Table.Family] != nil {
			out[ch.Table.Family][ch.Name] = true
		}
	}
	return out, nil
}

// readyFor says whether the tables in force have the base chains Add
// adds to and nothing yet of the sandbox name.
func (b *batch) readyFor(table, name string) (bool, error) {
	chains, err := b.chainsOf(table)
	if err != nil {
		return false, err
	}
	inet, br := chains[nftables.TableFamilyINet], chains[nftables.TableFamilyBridge]
	for _, base := range []string{"prerouting", "output", "postrouting", "forward", "input", "deny"} {
		if !inet[base] {
			return false, nil
		}
	}
	return br["prerouting"] && !inet[egressChain(name)] && !br[portChain(name)], nil
}

// Remove deletes corral's two tables of that name in the network
// namespace netns (0: the caller's), if they are there; nothing else.
func Remove(table string, netns int) error {
	if err := validTable(table); err != nil {
		return invalid("table", "%q: %v", table, err)
	}
	b := newBatch(netns)
	b.replace(table)
	if err := b.flush(); err != nil {
		return fmt.Errorf("remove firewall %s: %w", table, err)
	}
	return nil
}

// Denied returns how many packets each Restricted sandbox of the network
// has had denied, by sandbox name. A count goes on across Applies while
// its sandbox stays Restricted; only packets denied between Apply's
// reading of the old counts and its commit are lost.
func Denied(table string, netns int) (map[string]uint64, error) {
	if err := validTable(table); err != nil {
		return nil, invalid("table", "%q: %v", table, err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(netns))
	if err != nil {
		return nil, fmt.Errorf("read denied counts of %s: %w", table, err)
	}
	// Listing the objects of a table that is not there answers nothing,
	// not an error: ask for the table first.
	t, err := conn.ListTableOfFamily(table, nftables.TableFamilyINet)
	if errors.Is(err, unix.ENOENT) {
		return nil, fmt.Errorf("read denied counts of %s: %w", table, ErrNotApplied)
	}
	if err != nil {
		return nil, fmt.Errorf("read denied counts of %s: %w", table, err)
	}
	objs, err := conn.GetNamedObjects(t)
	if err != nil {
		return nil, fmt.Errorf("read denied counts of %s: %w", table, err)
	}
	denied := map[string]uint64{}
	for _, o := range objs {
		n, ok := o.(*nftables.NamedObj)
		if !ok || n.Type != nftables.ObjTypeCounter || !strings.HasPrefix(n.Name, deniedPrefix) {
			continue
		}
		if c, ok := n.Obj.(*expr.Counter); ok {
			denied[strings.TrimPrefix(n.Name, deniedPrefix)] = c.Packets
		}
	}
	return denied, nil
}

func (c *Config) restricted() bool {
	for _, s := range c.Sandboxes {
		if s.Restricted {
			return true
		}
	}
	return false
}

// batch queues the messages of one netlink transaction.
type batch struct {
	conn *nftables.Conn
	n    int // messages queued: the kernel acknowledges each
	// counts are those of the tables being replaced, by family and
	// counter name, for the new counters to go on from.
	counts map[nftables.TableFamily]map[string]*expr.Counter
}

// keepCounts reads the counters of the tables in force, if any.
func (b *batch) keepCounts(table string) error {
	b.counts = map[nftables.TableFamily]map[string]*expr.Counter{}
	for _, f := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		// A table that is not there has no objects: no error.
		objs, err := b.conn.GetNamedObjects(&nftables.Table{Name: table, Family: f})
		if err != nil {
			return fmt.Errorf("read counters: %w", err)
		}
		b.counts[f] = map[string]*expr.Counter{}
		for _, o := range objs {
			if n, ok := o.(*nftables.NamedObj); ok && n.Type == nftables.ObjTypeCounter {
				if c, ok := n.Obj.(*expr.Counter); ok {
					b.counts[f][n.Name] = c
				}
			}
		}
	}
	return nil
}

// msgBytes bounds what one message of the batch takes in the socket's
// buffers: the message itself when sent, the kernel's acknowledgement of
// it (an skb's truesize) when received, with room.
//
// The whole batch goes in one sendmsg, which the kernel refuses
// (EMSGSIZE) past the send buffer; and the library asks an
// acknowledgement of every message but reads them only once the batch is
// sent, so a receive buffer too small for them all loses some and Flush
// fails with ENOBUFS although the batch was committed (google/nftables
// issue 350). Both buffers are therefore sized to the batch.
const msgBytes = 2048

func newBatch(netns int) *batch {
	b := &batch{}
	size := func(c *netlink.Conn) error {
		return setBuffers(c, max(b.n*msgBytes, 1<<20))
	}
	// Without error: options only queue, the socket is made by Flush.
	b.conn, _ = nftables.New(nftables.WithNetNSFd(netns), nftables.WithSockOptions(size))
	return b
}

// setBuffers sets the socket's send and receive buffers, past
// wmem_max and rmem_max, which root may do; without privilege the kernel
// caps them at those.
func setBuffers(c *netlink.Conn, bytes int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	if err := raw.Control(func(fd uintptr) {
		for _, opt := range [][2]int{{unix.SO_SNDBUFFORCE, unix.SO_SNDBUF}, {unix.SO_RCVBUFFORCE, unix.SO_RCVBUF}} {
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[0], bytes) != nil {
				serr = errors.Join(serr, unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, opt[1], bytes))
			}
		}
	}); err != nil {
		return err
	}
	return serr
}

func (b *batch) flush() error { return b.conn.Flush() }

// replace queues the deletion of both tables named name, whether they
// exist or not: adding a table that exists is no error, and deleting one
// added in the same batch is none either. What is queued after it makes
// the tables anew within the same transaction.
func (b *batch) replace(name string) {
	for _, f := range []nftables.TableFamily{nftables.TableFamilyINet, nftables.TableFamilyBridge} {
		t := &nftables.Table{Name: name, Family: f}
		b.conn.AddTable(t)
		b.conn.DelTable(t)
		b.n += 2
	}
}

func (b *batch) table(name string, f nftables.TableFamily) *nftables.Table {
	b.n++
	return b.conn.AddTable(&nftables.Table{Name: name, Family: f})
}

func (b *batch) chain(c *nftables.Chain) *nftables.Chain {
	b.n++
	return b.conn.AddChain(c)
}

// base queues a base chain whose policy is accept: corral's chains never
// judge traffic they do not name.
func (b *batch) base(t *nftables.Table, name string, typ nftables.ChainType, hook *nftables.ChainHook, prio int32) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return b.chain(&nftables.Chain{
		Name:     name,
		Table:    t,
		Type:     typ,
		Hooknum:  hook,
		Priority: nftables.ChainPriorityRef(nftables.ChainPriority(prio)),
		Policy:   &accept,
	})
}

func (b *batch) rule(c *nftables.Chain, es ...[]expr.Any) {
	b.tagged(c, "", es...)
}

// tagged queues a rule of a base chain that belongs to the sandbox of
// that name (its user data says so), for Delete to find; "" for the
// network's own rules.
func (b *batch) tagged(c *nftables.Chain, sandbox string, es ...[]expr.Any) {
	var all []expr.Any
	for _, e := range es {
		all = append(all, e...)
	}
	b.n++
	r := &nftables.Rule{Table: c.Table, Chain: c, Exprs: all}
	if sandbox != "" {
		r.UserData = ruleTag(sandbox)
	}
	b.conn.AddRule(r)
}

// ruleTag marks the rules of base chains that a sandbox owns.
func ruleTag(sandbox string) []byte { return []byte("corral-sandbox:" + sandbox) }

// counter queues a named counter, going on from the count of the one it
// replaces.
func (b *batch) counter(t *nftables.Table, name string) {
	b.n++
	o := &nftables.CounterObj{Table: t, Name: name}
	if old := b.counts[t.Family][name]; old != nil {
		o.Bytes, o.Packets = old.Bytes, old.Packets
	}
	b.conn.AddObj(o)
}

// inetChains are the chains of the inet table every sandbox's rules go
// in.
type inetChains struct {
	table                   *nftables.Table
	pre, out, post, fwd, in *nftables.Chain
	deny                    *nftables.Chain
}

// inetBase queues the inet table's base chains and the rules that are
// the network's own: outbound NAT, the deny chain, inbound filtering.
func (b *batch) inetBase(c *Config) inetChains {
	t := b.table(c.Table, nftables.TableFamilyINet)
	ch := inetChains{
		table: t,
		pre:   b.base(t, "prerouting", nftables.ChainTypeNAT, nftables.ChainHookPrerouting, int32(*nftables.ChainPriorityNATDest)),
		out:   b.base(t, "output", nftables.ChainTypeNAT, nftables.ChainHookOutput, int32(*nftables.ChainPriorityNATDest)),
		post:  b.base(t, "postrouting", nftables.ChainTypeNAT, nftables.ChainHookPostrouting, int32(*nftables.ChainPriorityNATSource)),
		fwd:   b.base(t, "forward", nftables.ChainTypeFilter, nftables.ChainHookForward, filterPriority),
		in:    b.base(t, "input", nftables.ChainTypeFilter, nftables.ChainHookInput, filterPriority),
	}

	// Outbound NAT, and hairpin: a sandbox that reached a published port
	// through a host address must get the reply through the host too, not
	// straight from the other sandbox on the bridge.
	subnet := ip(saddr, c.Subnet, expr.CmpOpEq)
	b.rule(ch.post, nfproto4(), subnet, ifname(oif, c.Bridge, expr.CmpOpNeq), masq())
	b.rule(ch.post, nfproto4(), subnet, ifname(oif, c.Bridge, expr.CmpOpEq), ctStatus(ctStatusDNAT), masq())

	ch.deny = b.chain(&nftables.Chain{Name: "deny", Table: t})
	// A reset for a DNATed connection would carry the sandbox's address,
	// not the one the client called: br_netfilter sends the reset of a
	// bridged packet (hairpin to a published port of a sandbox on the same
	// bridge) straight out of the port, past NAT, and the client would
	// ignore it and hang. ICMP goes through the IP stack, where conntrack
	// translates it back, and a client in SYN-SENT takes port unreachable
	// as a refusal just the same.
	b.rule(ch.deny, l4proto("tcp"), ctStatus(ctStatusDNAT), reject(unix.NFT_REJECT_ICMPX_UNREACH, unix.NFT_REJECT_ICMPX_PORT_UNREACH))
	b.rule(ch.deny, l4proto("tcp"), reject(unix.NFT_REJECT_TCP_RST, 0))
	b.rule(ch.deny, l4proto("udp"), reject(unix.NFT_REJECT_ICMPX_UNREACH, unix.NFT_REJECT_ICMPX_PORT_UNREACH))
	b.rule(ch.deny, reject(unix.NFT_REJECT_ICMPX_UNREACH, unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED))

	// Inbound from outside the bridge: DNATed connections and replies.
	// These match what goes into the bridge from elsewhere, the sandboxes'
	// rules what comes out of it: no packet meets both, so the order of
	// the two in the chain does not matter and a sandbox's can be added
	// after these.
	in4 := [][]expr.Any{ifname(oif, c.Bridge, expr.CmpOpEq), ifname(iif, c.Bridge, expr.CmpOpNeq)}
	b.rule(ch.fwd, append(in4, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))...)
	b.rule(ch.fwd, append(in4, ctStatus(ctStatusDNAT), verdict(expr.VerdictAccept))...)
	b.rule(ch.fwd, append(in4, verdict(expr.VerdictDrop))...)
	return ch
}

// inetSandbox queues the inet rules of sandbox s: its published ports
// and, Restricted, its egress chain and the jumps to it.
func (b *batch) inetSandbox(ch inetChains, c *Config, s *Sandbox) {
	// Published ports. From outside, and from a sandbox (hairpin), in
	// prerouting; from the host itself in output, but for loopback, which
	// the userland proxy serves: DNAT there would need route_localnet.
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	for _, p := range s.published() {
		match := [][]expr.Any{nfproto4(), fibLocal()}
		if p.HostIP.IsValid() {
			match = append(match, ip(daddr, netip.PrefixFrom(p.HostIP, 32), expr.CmpOpEq))
		}
		match = append(match, l4proto(p.Proto), dport(p.HostPort))
		b.tagged(ch.pre, s.Name, append(match, dnat(s.Addr, p.Port))...)
		b.tagged(ch.out, s.Name, append(match, ip(daddr, loopback, expr.CmpOpNeq), dnat(s.Addr, p.Port))...)
	}
	// Egress of Restricted sandboxes. Anti-spoofing on the bridge makes
	// the source address say which sandbox sent a packet. The forward hook
	// sees what is routed, and, through br_netfilter, what the bridge
	// forwards from one sandbox to another; the input hook sees what is
	// for the host itself, gateway included.
	if !s.Restricted {
		return
	}
	eg := b.egress(ch.table, ch.deny, c, s)
	from := [][]expr.Any{nfproto4(), ifname(iif, c.Bridge, expr.CmpOpEq), ip(saddr, netip.PrefixFrom(s.Addr, 32), expr.CmpOpEq), jump(eg.Name)}
	b.tagged(ch.fwd, s.Name, from...)
	b.tagged(ch.in, s.Name, from...)
}

// inet queues the whole inet table.
func (b *batch) inet(c *Config) {
	ch := b.inetBase(c)
	for i := range c.Sandboxes {
		b.inetSandbox(ch, c, &c.Sandboxes[i])
	}
}

// egress queues the chain that judges what sandbox s sends.
func (b *batch) egress(t *nftables.Table, deny *nftables.Chain, c *Config, s *Sandbox) *nftables.Chain {
	eg := b.chain(&nftables.Chain{Name: egressChain(s.Name), Table: t})
	counted := countAndDeny(deniedCounter(s.Name), deny.Name)
	b.counter(t, deniedCounter(s.Name))

	// Replies, among them those to connections made through a published
	// port, whatever Egress says.
	b.rule(eg, ctState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED), verdict(expr.VerdictAccept))
	// DNS only to the resolvers given, before any Allow can open port 53
	// elsewhere.
	for _, proto := range []string{"udp", "tcp"} {
		for _, d := range c.DNS {
			b.rule(eg, ip(daddr, netip.PrefixFrom(d, 32), expr.CmpOpEq), l4proto(proto), dport(53), verdict(expr.VerdictAccept))
		}
		b.rule(eg, l4proto(proto), dport(53), counted)
	}
	for _, a := range s.Egress {
		match := [][]expr.Any{ip(daddr, a.Prefix.Masked(), expr.CmpOpEq)}
		if a.Port != 0 {
			match = append(match, l4proto(a.Proto), dport(a.Port))
		}
		b.rule(eg, append(match, verdict(expr.VerdictAccept))...)
	}
	b.rule(eg, counted)
	return eg
}

// bridgeBase queues the bridge table and its base chain.
func (b *batch) bridgeBase(c *Config) *nftables.Chain {
	t := b.table(c.Table, nftables.TableFamilyBridge)
	return b.base(t, "prerouting", nftables.ChainTypeFilter, nftables.ChainHookPrerouting, spoofPriority)
}

// bridgeSandbox queues what may enter the bridge from s's port.
func (b *batch) bridgeSandbox(pre *nftables.Chain, s *Sandbox) {
	t := pre.Table
	port := b.chain(&nftables.Chain{Name: portChain(s.Name), Table: t})
	b.counter(t, spoofedCounter(s.Name))
	b.tagged(pre, s.Name, ifname(iif, s.HostVeth, expr.CmpOpEq), jump(port.Name))
	// IPv4 from its own address, and ARP for IPv4 over Ethernet that
	// claims its own address; anything else, IPv6 and VLAN-tagged
	// frames included, is dropped and counted.
	b.rule(port, etherType(unix.ETH_P_IP), ip(saddr, netip.PrefixFrom(s.Addr, 32), expr.CmpOpEq), verdict(expr.VerdictReturn))
	b.rule(port, etherType(unix.ETH_P_ARP), arpIPv4(), arpSender(s.Addr), verdict(expr.VerdictReturn))
	b.rule(port, objref(spoofedCounter(s.Name)), verdict(expr.VerdictDrop))
}

// bridge queues the whole bridge table: what may enter the bridge from
// each sandbox's port.
func (b *batch) bridge(c *Config) {
	pre := b.bridgeBase(c)
	for i := range c.Sandboxes {
		b.bridgeSandbox(pre, &c.Sandboxes[i])
	}
}

// Expressions. Each loads into register 1 and compares; a rule is their
// concatenation, and a packet matches when every comparison holds.

type metaIf = expr.MetaKey

const (
	iif = expr.MetaKeyIIFNAME
	oif = expr.MetaKeyOIFNAME
)

// Offsets of the IPv4 header's addresses.
const (
	saddr = 12
	daddr = 16
)

func load(key expr.MetaKey) *expr.Meta { return &expr.Meta{Key: key, Register: 1} }

func cmp(op expr.CmpOp, data []byte) *expr.Cmp {
	return &expr.Cmp{Op: op, Register: 1, Data: data}
}

func nfproto4() []expr.Any {
	return []expr.Any{load(expr.MetaKeyNFPROTO), cmp(expr.CmpOpEq, []byte{unix.NFPROTO_IPV4})}
}

// ifname matches an interface by name, as nft does: the name padded with
// NULs to IFNAMSIZ, so that "veth1" does not match "veth10".
func ifname(key metaIf, name string, op expr.CmpOp) []expr.Any {
	data := make([]byte, ifNameSize)
	copy(data, name)
	return []expr.Any{load(key), cmp(op, data)}
}

// ip matches the IPv4 source or destination (offset saddr or daddr)
// against p.
func ip(offset uint32, p netip.Prefix, op expr.CmpOp) []expr.Any {
	es := []expr.Any{&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: offset, Len: 4}}
	if p.Bits() < 32 {
		mask := binaryutil.BigEndian.PutUint32(^uint32(0) << (32 - p.Bits()))
		es = append(es, &expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)})
	}
	a := p.Masked().Addr().As4()
	return append(es, cmp(op, a[:]))
}

func l4proto(proto string) []expr.Any {
	n := byte(unix.IPPROTO_TCP)
	if proto == "udp" {
		n = unix.IPPROTO_UDP
	}
	return []expr.Any{load(expr.MetaKeyL4PROTO), cmp(expr.CmpOpEq, []byte{n})}
}

// dport matches the destination port of TCP or UDP; l4proto must come
// first.
func dport(port uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		cmp(expr.CmpOpEq, binaryutil.BigEndian.PutUint16(port)),
	}
}

func fibLocal() []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		cmp(expr.CmpOpEq, binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)),
	}
}

// ctState matches a packet whose connection is in any of the states.
func ctState(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		cmp(expr.CmpOpNeq, make([]byte, 4)),
	}
}

// ctStatus matches a packet whose connection has any of the status bits.
func ctStatus(bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Register: 1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		cmp(expr.CmpOpNeq, make([]byte, 4)),
	}
}

func dnat(to netip.Addr, port uint16) []expr.Any {
	a := to.As4()
	return []expr.Any{
		&expr.Immediate{Register: 1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2},
	}
}

func masq() []expr.Any { return []expr.Any{&expr.Masq{}} }

func reject(typ uint32, code uint8) []expr.Any {
	return []expr.Any{&expr.Reject{Type: typ, Code: code}}
}

func verdict(kind expr.VerdictKind) []expr.Any { return []expr.Any{&expr.Verdict{Kind: kind}} }

func jump(chain string) []expr.Any {
	return []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: chain}}
}

func objref(counter string) []expr.Any {
	return []expr.Any{&expr.Objref{Type: unix.NFT_OBJECT_COUNTER, Name: counter}}
}

// countAndDeny counts a packet in the named counter and hands it to the
// chain that refuses it.
func countAndDeny(counter, deny string) []expr.Any {
	return append(objref(counter), &expr.Verdict{Kind: expr.VerdictGoto, Chain: deny})
}

// etherType matches the frame's EtherType, as it was on the wire: a
// VLAN-tagged frame shows its tag's type, not the inner one.
func etherType(typ uint16) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		cmp(expr.CmpOpEq, binaryutil.BigEndian.PutUint16(typ)),
	}
}

// arpIPv4 matches ARP for IPv4 over Ethernet (hardware type 1, protocol
// 0x0800, address lengths 6 and 4): the only layout whose sender address
// arpSender knows where to find.
func arpIPv4() []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 0, Len: 6},
		cmp(expr.CmpOpEq, []byte{0, 1, 8, 0, 6, 4}),
	}
}

// arpSender matches ARP whose sender protocol address is a.
func arpSender(a netip.Addr) []expr.Any {
	b := a.As4()
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 14, Len: 4},
		cmp(expr.CmpOpEq, b[:]),
	}
}
