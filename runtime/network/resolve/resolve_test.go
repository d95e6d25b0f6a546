package resolve

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// zone is what a test server answers: per name, its records, or an
// rcode.
type zone struct {
	mu       sync.Mutex
	records  map[string][]dns.RR
	rcode    int  // answered to every query when not success
	truncate bool // UDP answers are truncated and empty
	queries  map[string]int
}

func (z *zone) set(name string, rrs ...string) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.records[name] = nil
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			panic(err)
		}
		z.records[name] = append(z.records[name], rr)
	}
}

func (z *zone) fail(rcode int) {
	z.mu.Lock()
	defer z.mu.Unlock()
	z.rcode = rcode
}

func (z *zone) asked(proto string) int {
	z.mu.Lock()
	defer z.mu.Unlock()
	return z.queries[proto]
}

func (z *zone) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	z.mu.Lock()
	defer z.mu.Unlock()
	proto := w.LocalAddr().Network()
	z.queries[proto]++
	m := new(dns.Msg)
	m.SetReply(q)
	switch name := dns.CanonicalName(q.Question[0].Name); {
	case z.rcode != dns.RcodeSuccess:
		m.Rcode = z.rcode
	case z.truncate && proto == "udp":
		m.Truncated = true
	case z.records[name] == nil:
		m.Rcode = dns.RcodeNameError
	default:
		m.Answer = z.records[name]
	}
	_ = w.WriteMsg(m)
}

// serve runs a DNS server of z on 127.0.0.1 (UDP and TCP on one port)
// until the test ends.
func serve(t *testing.T, z *zone) netip.AddrPort {
	t.Helper()
	z.records, z.queries = map[string][]dns.RR{}, map[string]int{}
	var pc net.PacketConn
	var l net.Listener
	for range 20 {
		var err error
		if pc, err = net.ListenPacket("udp", "127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		if l, err = net.Listen("tcp", pc.LocalAddr().String()); err == nil {
			break
		}
		pc.Close() // the port is taken for TCP: another one
		pc = nil
	}
	if pc == nil {
		t.Fatal("no port free for both UDP and TCP")
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: z}, {Listener: l, Handler: z}} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		go func() { _ = s.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = s.Shutdown() })
	}
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// clock is a fixed time for expiries.
var epoch = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func fixed() time.Time { return epoch }

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

func TestResolveHonoursTTL(t *testing.T) {
	z := &zone{}
	srv := serve(t, z)
	z.set("api.corral.test.",
		"api.corral.test. 30 IN A 203.0.113.20",
		"api.corral.test. 40 IN A 203.0.113.10",
		"api.corral.test. 40 IN AAAA 2001:db8::1")
	z.set("www.corral.test.",
		// The chain in the wrong order, and a record of another name that
		// must not be taken.
		"edge.corral.test. 300 IN A 198.51.100.7",
		"www.corral.test. 20 IN CNAME cdn.corral.test.",
		"cdn.corral.test. 600 IN CNAME edge.corral.test.",
		"other.corral.test. 1 IN A 192.0.2.99")
	r := &Resolver{Servers: []netip.AddrPort{srv}, Now: fixed}
	for _, tc := range []struct {
		name string
		want Answer
	}{
		{"api.corral.test", Answer{addrs("203.0.113.10", "203.0.113.20"), epoch.Add(30 * time.Second)}},
		{"API.corral.test.", Answer{addrs("203.0.113.10", "203.0.113.20"), epoch.Add(30 * time.Second)}},
		{"www.corral.test", Answer{addrs("198.51.100.7"), epoch.Add(20 * time.Second)}},
	} {
		got, err := r.Resolve(context.Background(), tc.name)
		if err != nil || !slices.Equal(got.Addrs, tc.want.Addrs) || !got.Expires.Equal(tc.want.Expires) {
			t.Errorf("Resolve(%s) = %+v, %v; want %+v", tc.name, got, err, tc.want)
		}
	}
}

func TestResolveClampsTTL(t *testing.T) {
	z := &zone{}
	srv := serve(t, z)
	z.set("zero.corral.test.", "zero.corral.test. 0 IN A 192.0.2.1")
	z.set("day.corral.test.", "day.corral.test. 86400 IN A 192.0.2.2")
	for _, tc := range []struct {
		r    Resolver
		name string
		want time.Duration
	}{
		{Resolver{}, "zero.corral.test", DefaultFloor},
		{Resolver{}, "day.corral.test", DefaultCeiling},
		{Resolver{Floor: time.Minute}, "zero.corral.test", time.Minute},
		{Resolver{Ceiling: 10 * time.Minute}, "day.corral.test", 10 * time.Minute},
	} {
		tc.r.Servers, tc.r.Now = []netip.AddrPort{srv}, fixed
		got, err := tc.r.Resolve(context.Background(), tc.name)
		if err != nil || got.Expires.Sub(epoch) != tc.want {
			t.Errorf("%s with floor %s, ceiling %s: expires after %s (%v); want %s", tc.name, tc.r.Floor, tc.r.Ceiling, got.Expires.Sub(epoch), err, tc.want)
		}
	}
}

func TestResolveTruncatedAgainOverTCP(t *testing.T) {
	z := &zone{truncate: true}
	srv := serve(t, z)
	z.set("big.corral.test.", "big.corral.test. 60 IN A 192.0.2.3")
	r := &Resolver{Servers: []netip.AddrPort{srv}}
	got, err := r.Resolve(context.Background(), "big.corral.test")
	if err != nil || !slices.Equal(got.Addrs, addrs("192.0.2.3")) {
		t.Fatalf("Resolve = %+v, %v", got, err)
	}
	if z.asked("udp") != 1 || z.asked("tcp") != 1 {
		t.Errorf("asked %d times over UDP, %d over TCP; want once each", z.asked("udp"), z.asked("tcp"))
	}
}

// silent is a UDP port that reads queries and never answers.
func silent(t *testing.T) netip.AddrPort {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

// closed is a UDP port nobody listens on (any more): a query to it is
// refused at once.
func closed(t *testing.T) netip.AddrPort {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc.Close()
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func TestResolveTriesEveryServerInTurn(t *testing.T) {
	bad, good := &zone{}, &zone{}
	badSrv, goodSrv := serve(t, bad), serve(t, good)
	bad.fail(dns.RcodeServerFailure)
	good.set("api.corral.test.", "api.corral.test. 60 IN A 203.0.113.10")
	r := &Resolver{Servers: []netip.AddrPort{closed(t), silent(t), badSrv, goodSrv}, Timeout: 200 * time.Millisecond}
	start := time.Now()
	got, err := r.Resolve(context.Background(), "api.corral.test")
	if err != nil || !slices.Equal(got.Addrs, addrs("203.0.113.10")) {
		t.Fatalf("Resolve = %+v, %v", got, err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %s: the silent server's timeout is 200ms", took)
	}
	if bad.asked("udp") != 1 {
		t.Errorf("the failing server was asked %d times, want 1", bad.asked("udp"))
	}

	// All of them failing: one error naming each.
	r.Servers = []netip.AddrPort{silent(t), badSrv}
	_, err = r.Resolve(context.Background(), "api.corral.test")
	if err == nil || errors.Is(err, ErrNoAddress) {
		t.Fatalf("every server failing: %v", err)
	}
	for _, s := range r.Servers {
		if !strings.Contains(err.Error(), s.String()) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
}

func TestResolveNoAddressIsAnAnswer(t *testing.T) {
	first, second := &zone{}, &zone{}
	s1, s2 := serve(t, first), serve(t, second)
	first.set("v6only.corral.test.", "v6only.corral.test. 60 IN AAAA 2001:db8::1")
	second.set("gone.corral.test.", "gone.corral.test. 60 IN A 192.0.2.1")
	r := &Resolver{Servers: []netip.AddrPort{s1, s2}}
	for _, name := range []string{"gone.corral.test", "v6only.corral.test"} {
		if _, err := r.Resolve(context.Background(), name); !errors.Is(err, ErrNoAddress) {
			t.Errorf("%s: %v, want ErrNoAddress", name, err)
		}
	}
	if n := second.asked("udp"); n != 0 {
		t.Errorf("the second server was asked %d times: the first one's answer is final", n)
	}
}

func TestResolveWithoutServersAsksTheHost(t *testing.T) {
	r := &Resolver{Now: fixed}
	got, err := r.Resolve(context.Background(), "localhost")
	if err != nil || !slices.Contains(got.Addrs, netip.MustParseAddr("127.0.0.1")) || !got.Expires.Equal(epoch.Add(DefaultInterval)) {
		t.Errorf("localhost from the host's resolver: %+v, %v", got, err)
	}
	r.Interval = 2 * time.Second // below the floor: the floor wins
	r.Lookup = func(_ context.Context, network, host string) ([]netip.Addr, error) {
		if network != "ip4" {
			t.Errorf("asked for %s", network)
		}
		switch host {
		case "api.corral.test":
			return addrs("::ffff:203.0.113.10", "203.0.113.10", "192.0.2.1"), nil
		case "gone.corral.test":
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return nil, &net.DNSError{Err: "server misbehaving", Name: host, IsTemporary: true}
	}
	got, err = r.Resolve(context.Background(), "api.corral.test")
	if err != nil || !slices.Equal(got.Addrs, addrs("192.0.2.1", "203.0.113.10")) || !got.Expires.Equal(epoch.Add(DefaultFloor)) {
		t.Errorf("api.corral.test: %+v, %v", got, err)
	}
	if _, err := r.Resolve(context.Background(), "gone.corral.test"); !errors.Is(err, ErrNoAddress) {
		t.Errorf("gone.corral.test: %v, want ErrNoAddress", err)
	}
	if _, err := r.Resolve(context.Background(), "down.corral.test"); err == nil || errors.Is(err, ErrNoAddress) {
		t.Errorf("down.corral.test: %v, want a failure", err)
	}
}

func TestRefreshKeepsTheLastAnswerOnFailure(t *testing.T) {
	z := &zone{}
	srv := serve(t, z)
	z.set("api.corral.test.", "api.corral.test. 30 IN A 203.0.113.10")
	z.set("db.corral.test.", "db.corral.test. 300 IN A 192.0.2.5")
	now := epoch
	r := &Resolver{Servers: []netip.AddrPort{srv}, Now: func() time.Time { return now }}
	names := []string{"api.corral.test", "db.corral.test"}
	ctx := context.Background()

	first, changed, err := r.Refresh(ctx, names, nil, false)
	if err != nil || !changed || len(first) != 2 {
		t.Fatalf("first refresh: %+v, %v, %v", first, changed, err)
	}
	if due := r.Due(first); !due.Equal(epoch.Add(30 * time.Second)) {
		t.Errorf("due at %s, want at api's expiry", due)
	}

	// Before any expiry, nothing is asked; forced, everything is.
	asked := z.asked("udp")
	if _, changed, err := r.Refresh(ctx, names, first, false); changed || err != nil || z.asked("udp") != asked {
		t.Errorf("refresh before expiry: changed %v, %v, %d queries", changed, err, z.asked("udp")-asked)
	}
	if _, changed, err := r.Refresh(ctx, names, first, true); changed || err != nil || z.asked("udp") != asked+2 {
		t.Errorf("forced refresh: changed %v, %v, %d queries", changed, err, z.asked("udp")-asked)
	}

	// api expired and the server fails: its last addresses stay, and it
	// is tried again after the floor; db, not expired, is not asked.
	now = epoch.Add(31 * time.Second)
	z.fail(dns.RcodeServerFailure)
	kept, changed, err := r.Refresh(ctx, names, first, false)
	if err == nil || changed || !slices.Equal(kept["api.corral.test"].Addrs, addrs("203.0.113.10")) {
		t.Fatalf("failed refresh: %+v, changed %v, %v", kept, changed, err)
	}
	if due := r.Due(kept); !due.Equal(now.Add(DefaultFloor)) {
		t.Errorf("after a failure due at %s, want the floor from now", due)
	}

	// The server is back with a new address: a change.
	z.fail(dns.RcodeSuccess)
	z.set("api.corral.test.", "api.corral.test. 30 IN A 203.0.113.20")
	moved, changed, err := r.Refresh(ctx, names, kept, false)
	if err != nil || !changed || !slices.Equal(moved["api.corral.test"].Addrs, addrs("203.0.113.20")) || !moved["db.corral.test"].Expires.Equal(first["db.corral.test"].Expires) {
		t.Errorf("refresh after the move: %+v, changed %v, %v", moved, changed, err)
	}

	// A name that never resolved is kept with no address, and retried.
	z.fail(dns.RcodeRefused)
	got, _, err := r.Refresh(ctx, []string{"new.corral.test"}, nil, false)
	if err == nil || len(got["new.corral.test"].Addrs) != 0 || !r.Due(got).Equal(now.Add(DefaultFloor)) {
		t.Errorf("a name that never resolved: %+v, %v", got, err)
	}
	if !r.Due(nil).IsZero() {
		t.Error("no answer is due at zero")
	}
}
