package network

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/corral-dev/corral/runtime/network/firewall"
	"github.com/corral-dev/corral/runtime/network/resolve"
	"github.com/corral-dev/corral/spec"
)

// These tests never make rules: the addresses they resolve never move,
// so the refresher only rewrites records (in a temporary dir).

// testNetwork is a Network of records under a temporary dir whose names
// are resolved by srv, with a floor of floor.
func testNetwork(t *testing.T, srv netip.AddrPort, floor time.Duration) *Network {
	n := &Network{cfg: spec.Bridge{Name: "crltest0"}, dir: t.TempDir(), due: map[string]time.Time{}, wake: make(chan struct{}, 1),
		resolver: &resolve.Resolver{Servers: []netip.AddrPort{srv}, Floor: floor, Timeout: 200 * time.Millisecond}}
	if err := os.Mkdir(filepath.Join(n.dir, "records"), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		n.mu.Lock()
		for name := range n.due {
			n.untrackLocked(name)
		}
		n.mu.Unlock()
	})
	return n
}

// answering runs a DNS server on 127.0.0.1 answering every A query with
// 192.0.2.1 and a TTL of 0, and counts the queries.
func answering(t *testing.T, fail *atomic.Bool) (netip.AddrPort, *atomic.Int64) {
	var asked atomic.Int64
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		asked.Add(1)
		m := new(dns.Msg)
		m.SetReply(q)
		if fail.Load() {
			m.Rcode = dns.RcodeServerFailure
		} else {
			rr, _ := dns.NewRR(q.Question[0].Name + " 0 IN A 192.0.2.1")
			m.Answer = []dns.RR{rr}
		}
		_ = w.WriteMsg(m)
	})}
	started := make(chan struct{})
	s.NotifyStartedFunc = func() { close(started) }
	go func() { _ = s.ActivateAndServe() }()
	<-started
	t.Cleanup(func() { _ = s.Shutdown() })
	return netip.MustParseAddrPort(pc.LocalAddr().String()), &asked
}

func (n *Network) running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.refreshing
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within 5s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestRefresherFollowsTTLsAndEnds: the refresher resolves a sandbox's
// names again as their answers expire, rewriting the record's expiry;
// a failure keeps the last addresses; it ends when no sandbox is left.
func TestRefresherFollowsTTLsAndEnds(t *testing.T) {
	var fail atomic.Bool
	srv, asked := answering(t, &fail)
	n := testNetwork(t, srv, 50*time.Millisecond)
	rules := []spec.EgressRule{{Host: "api.corral.test", Port: 80, Proto: "tcp"}, {Prefix: netip.MustParsePrefix("198.51.100.0/24")}}
	first := map[string]resolve.Answer{"api.corral.test": {Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Expires: time.Now()}}
	rec := record{Name: "web", Addr: netip.MustParseAddr("10.89.0.2"), Restricted: true, Allow: allowOf(rules, first), Egress: egressStrings(rules), Names: first}
	if err := writeJSON(n.recordPath("web"), rec); err != nil {
		t.Fatal(err)
	}
	// A second sandbox not due for long keeps the refresher alive.
	n.track("idle", time.Now().Add(time.Hour))
	n.track("web", time.Now())
	if !n.running() {
		t.Fatal("no refresher after track")
	}
	waitUntil(t, "asked three times (TTL 0, floor 50ms)", func() bool { return asked.Load() >= 3 })
	got, err := readRecord(n.recordPath("web"))
	if err != nil || !got.Names["api.corral.test"].Expires.After(first["api.corral.test"].Expires) || !slices.Equal(got.Allow, rec.Allow) {
		t.Fatalf("record after refreshes: %+v, %v", got, err)
	}

	// The server fails: the addresses stay, and it is asked again.
	fail.Store(true)
	n0 := asked.Load()
	waitUntil(t, "asked again after failures", func() bool { return asked.Load() >= n0+3 })
	got, err = readRecord(n.recordPath("web"))
	if err != nil || !slices.Equal(got.Names["api.corral.test"].Addrs, first["api.corral.test"].Addrs) || !slices.Equal(got.Allow, rec.Allow) {
		t.Fatalf("record after failures: %+v, %v", got, err)
	}

	n.forget("web")
	if !n.running() {
		t.Fatal("the refresher ended with a sandbox left")
	}
	n.forget("idle")
	waitUntil(t, "ended with no sandbox left", func() bool { return !n.running() })
	n1 := asked.Load()
	time.Sleep(200 * time.Millisecond)
	if asked.Load() != n1 {
		t.Errorf("asked %d times after the end", asked.Load()-n1)
	}
}

// TestRefresherForgetsWhatIsGone: a sandbox whose record went (another
// process detached it) is dropped, and the refresher ends.
func TestRefresherForgetsWhatIsGone(t *testing.T) {
	var fail atomic.Bool
	srv, _ := answering(t, &fail)
	n := testNetwork(t, srv, 50*time.Millisecond)
	n.track("gone", time.Now())
	waitUntil(t, "ended", func() bool { return !n.running() })
}

func TestRefreshAtOnce(t *testing.T) {
	var fail atomic.Bool
	srv, asked := answering(t, &fail)
	n := testNetwork(t, srv, time.Minute)
	rules := []spec.EgressRule{{Host: "api.corral.test"}, {Host: "db.corral.test", Port: 53, Proto: "udp"}}
	later := time.Now().Add(time.Hour)
	ans := map[string]resolve.Answer{
		"api.corral.test": {Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Expires: later},
		"db.corral.test":  {Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, Expires: later},
	}
	if err := writeJSON(n.recordPath("web"), record{Name: "web", Egress: egressStrings(rules), Names: ans, Allow: allowOf(rules, ans)}); err != nil {
		t.Fatal(err)
	}
	n.track("web", later)
	if err := n.Refresh(); err != nil || asked.Load() != 2 {
		t.Fatalf("Refresh: %v, %d queries", err, asked.Load())
	}
	got, _ := readRecord(n.recordPath("web"))
	if e := got.Names["db.corral.test"].Expires; !e.Before(later) {
		t.Errorf("db's answer expires at %s: not asked again", e)
	}
	fail.Store(true)
	if err := n.Refresh(); err == nil {
		t.Error("Refresh with a failing server: no error")
	}
	if got, _ := readRecord(n.recordPath("web")); len(got.Names["api.corral.test"].Addrs) != 1 {
		t.Errorf("a failed refresh lost the addresses: %+v", got)
	}
}

func TestAllowOfAndRecordedRules(t *testing.T) {
	var rules []spec.EgressRule
	for _, s := range []string{"api.corral.test:443", "10.0.0.0/8", "192.0.2.7:53/udp", "db.corral.test", "api.corral.test:80"} {
		r, err := spec.ParseEgress(s)
		if err != nil {
			t.Fatal(err)
		}
		rules = append(rules, r)
	}
	back, err := parseEgress(egressStrings(rules))
	if err != nil || !slices.Equal(back, rules) {
		t.Fatalf("rules through the record: %v, %v; want %v", back, err, rules)
	}
	if got := hostNames(rules); !slices.Equal(got, []string{"api.corral.test", "db.corral.test"}) {
		t.Errorf("hostNames = %v", got)
	}
	ip := netip.MustParseAddr
	ans := map[string]resolve.Answer{"api.corral.test": {Addrs: []netip.Addr{ip("203.0.113.10"), ip("203.0.113.11")}}, "db.corral.test": {}}
	want := []firewall.Allow{
		{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Port: 443, Proto: "tcp"},
		{Prefix: netip.MustParsePrefix("203.0.113.11/32"), Port: 443, Proto: "tcp"},
		{Prefix: netip.MustParsePrefix("10.0.0.0/8")},
		{Prefix: netip.MustParsePrefix("192.0.2.7/32"), Port: 53, Proto: "udp"},
		{Prefix: netip.MustParsePrefix("203.0.113.10/32"), Port: 80, Proto: "tcp"},
		{Prefix: netip.MustParsePrefix("203.0.113.11/32"), Port: 80, Proto: "tcp"},
	}
	if got := allowOf(rules, ans); !slices.Equal(got, want) {
		t.Errorf("allowOf = %v\nwant %v", got, want)
	}
}
