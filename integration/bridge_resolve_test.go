package integration

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// nameServer is a DNS server of the test in the outside namespace, at
// outsideWAN:53: the resolver corral and its sandboxes are given.
type nameServer struct {
	mu      sync.Mutex
	records map[string]dns.RR // by name, one A record each
	queries map[string]int
}

// set makes name resolve to ip with ttl.
func (s *nameServer) set(name, ip string, ttl int) {
	rr, err := dns.NewRR(fmt.Sprintf("%s %d IN A %s", name, ttl, ip))
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records[name] = rr
}

func (s *nameServer) asked(name string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queries[name]
}

func (s *nameServer) ServeDNS(w dns.ResponseWriter, q *dns.Msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := new(dns.Msg)
	m.SetReply(q)
	name := dns.CanonicalName(q.Question[0].Name)
	s.queries[name]++
	if rr, ok := s.records[name]; ok && q.Question[0].Qtype == dns.TypeA {
		m.Answer = []dns.RR{rr}
	} else if !ok {
		m.Rcode = dns.RcodeNameError
	}
	_ = w.WriteMsg(m)
}

// serveDNS runs a name server at outsideWAN:53 in w's outside namespace
// until the test ends: its sockets are opened there, and keep it.
func (w *bridgeWorld) serveDNS(t *testing.T) *nameServer {
	t.Helper()
	s := &nameServer{records: map[string]dns.RR{}, queries: map[string]int{}}
	var pc net.PacketConn
	var l net.Listener
	if err := inNetns(t, w.outside, func() (err error) {
		if pc, err = net.ListenPacket("udp", outsideWAN+":53"); err != nil {
			return err
		}
		l, err = net.Listen("tcp", outsideWAN+":53")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: s}, {Listener: l, Handler: s}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go func() { _ = srv.ActivateAndServe() }()
		<-started
		t.Cleanup(func() { _ = srv.Shutdown() })
	}
	return s
}

// TestBridgeEgressNamesRunResolveAtStart: corral run resolves an egress
// name through the sandbox's resolver (--dns) when it starts: the
// address it names is reached, another refused; a name that does not
// resolve refuses the start.
func TestBridgeEgressNamesRunResolveAtStart(t *testing.T) {
	w := newBridgeWorld(t)
	ns := w.serveDNS(t)
	ns.set("api.corral.test.", allowedSrv, 60)
	probe := "for ip in " + allowedSrv + " " + deniedSrv + "; do busybox nc -w 5 $ip 80 </dev/null || echo refused $ip; done"
	r := w.run(t, "--egress", "api.corral.test:80", "--", "/bin/sh", "-c", probe)
	if r.code != 0 || !strings.Contains(r.stdout, "hello from "+allowedSrv) || !strings.Contains(r.stdout, "refused "+deniedSrv) || strings.Contains(r.stdout, "hello from "+deniedSrv) {
		t.Errorf("--egress api.corral.test:80 with api.corral.test at %s: %s", allowedSrv, r)
	}
	if ns.asked("api.corral.test.") == 0 {
		t.Error("corral run did not ask the --dns server")
	}

	ns.set("api.corral.test.", deniedSrv, 60)
	r = w.run(t, "--egress", "api.corral.test:80", "--", "/bin/sh", "-c", probe)
	if r.code != 0 || !strings.Contains(r.stdout, "hello from "+deniedSrv) || !strings.Contains(r.stdout, "refused "+allowedSrv) || strings.Contains(r.stdout, "hello from "+allowedSrv) {
		t.Errorf("--egress api.corral.test:80 with api.corral.test at %s: %s", deniedSrv, r)
	}

	r = w.run(t, "--egress", "gone.corral.test:80", "--", "/bin/true")
	if r.code != 125 || !strings.Contains(r.stderr, "gone.corral.test") || !strings.Contains(r.stderr, "no IPv4 address") {
		t.Errorf("an egress name that does not resolve: %s", r)
	}
	w.assertClean(t, stateDir)
}

// serviceLog is what the service name of d has logged from byte off on,
// and the length of its log.
func (d *daemonProc) serviceLog(name string, off int) (string, int) {
	data, _ := os.ReadFile(filepath.Join(d.logDir, name, "output.log"))
	if off > len(data) {
		off = len(data)
	}
	return string(data[off:]), len(data)
}

// waitProbes waits until the service name's probes (lines "reached IP"
// or "refused IP", once for each IP per round) logged after byte off
// show, for a whole round, reach reached and refuse refused; the round
// must come after the first line that shows the change to reach
// reached, and nothing after it may show the earlier state. It returns
// when the change was first seen.
func (d *daemonProc) waitProbes(name string, off int, reached, refused string, within time.Duration) time.Time {
	d.t.Helper()
	deadline := time.Now().Add(within)
	var first time.Time
	for {
		text, _ := d.serviceLog(name, off)
		if i := strings.Index(text, " reached "+reached+"\n"); i >= 0 {
			if first.IsZero() {
				first = time.Now()
			}
			after := text[i:]
			if strings.Contains(after, " reached "+refused+"\n") || strings.Contains(after, " refused "+reached+"\n") {
				d.t.Fatalf("%s: after reaching %s, reached %s or refused %s:\n%s", name, reached, refused, reached, text)
			}
			if j := strings.Index(after, " refused "+refused+"\n"); j >= 0 && strings.Contains(after[j:], " reached "+reached+"\n") {
				return first
			}
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("%s: within %s, no round that reached %s and refused %s; log since:\n%s\ndaemon log:\n%s", name, within, reached, refused, text, d.log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBridgeEgressNamesFollowTTL: a daemon's bridge service with an
// egress name follows the name when it moves, once its TTL (1 s, the
// floor of 5 s applies) runs out: before, the first address is reached
// and the second refused; after, the reverse. A daemon killed with -9
// and restarted goes on from the record (the name moves back); a name
// with a long TTL moves at a reload.
func TestBridgeEgressNamesFollowTTL(t *testing.T) {
	w := newBridgeWorld(t)
	ns := w.serveDNS(t)
	ns.set("api.corral.test.", allowedSrv, 1)
	ns.set("db.corral.test.", allowedSrv, 3600)
	probe := func(ips ...string) string {
		return fmt.Sprintf(`[/bin/sh, -c, "while :; do for ip in %s; do busybox nc -w 2 $ip 80 </dev/null >/dev/null 2>&1 && echo reached $ip || echo refused $ip; done; sleep 0.2; done"]`, strings.Join(ips, " "))
	}
	d := newDaemon(t, fmt.Sprintf(`
  api:
    command: %s
    network: bridge
    egress: ["api.corral.test:80"]
  db:
    command: %s
    network: bridge
    egress: ["db.corral.test:80"]
`, probe(allowedSrv, deniedSrv), probe(allowedSrv, deniedSrv)))
	d.daemonExtra = fmt.Sprintf("  bridge: %s\n  subnet: %s\n  dns: [%s]\n", bridgeName, bridgeSubnet, outsideWAN)
	d.write(d.services)
	d.netns = w.host
	d.start()
	d.waitRunning("api")
	d.waitRunning("db")
	d.waitProbes("api", 0, allowedSrv, deniedSrv, 15*time.Second)
	d.waitProbes("db", 0, allowedSrv, deniedSrv, 15*time.Second)

	// The record keeps the list as given and the answer's expiry.
	var rec struct {
		Egress []string `json:"egress"`
		Names  map[string]struct {
			Addrs   []string  `json:"addrs"`
			Expires time.Time `json:"expires"`
		} `json:"names"`
	}
	data, err := os.ReadFile(filepath.Join(d.stateDir, "net", bridgeName, "records", "api.json"))
	if err == nil {
		err = json.Unmarshal(data, &rec)
	}
	if a := rec.Names["api.corral.test"]; err != nil || strings.Join(rec.Egress, ",") != "api.corral.test:80/tcp" || strings.Join(a.Addrs, ",") != allowedSrv || a.Expires.IsZero() {
		t.Errorf("record of api: %s (%v)", data, err)
	}

	// The names move: api's TTL runs out within the floor, db's not for
	// an hour.
	_, off := d.serviceLog("api", 0)
	_, dbOff := d.serviceLog("db", 0)
	flipped := time.Now()
	ns.set("api.corral.test.", deniedSrv, 1)
	ns.set("db.corral.test.", deniedSrv, 3600)
	seen := d.waitProbes("api", off, deniedSrv, allowedSrv, 15*time.Second)
	t.Logf("api.corral.test moved; the rules followed after %s", seen.Sub(flipped).Round(100*time.Millisecond))
	if text, _ := d.serviceLog("db", dbOff); strings.Contains(text, " reached "+deniedSrv+"\n") || !strings.Contains(text, " refused "+deniedSrv+"\n") {
		t.Errorf("db followed its name before its TTL ran out:\n%s", text)
	}

	// A reload resolves every name again, whatever its TTL.
	_, dbOff = d.serviceLog("db", 0)
	reloaded := time.Now()
	if r := d.ctl("reload"); r.code != 0 {
		t.Fatalf("reload: %s", r)
	}
	seen = d.waitProbes("db", dbOff, deniedSrv, allowedSrv, 10*time.Second)
	t.Logf("db.corral.test moved; the rules followed %s after the reload", seen.Sub(reloaded).Round(100*time.Millisecond))

	// A daemon killed and restarted refreshes the names of the sandboxes
	// it adopts.
	api := d.waitRunning("api")
	d.kill9()
	d.restart()
	if st := d.waitRunning("api"); st.PID != api.PID {
		t.Fatalf("api restarted (pid %d, was %d): want it adopted", st.PID, api.PID)
	}
	_, off = d.serviceLog("api", 0)
	flipped = time.Now()
	ns.set("api.corral.test.", allowedSrv, 1)
	seen = d.waitProbes("api", off, allowedSrv, deniedSrv, 15*time.Second)
	t.Logf("after the daemon's kill -9 and adoption, api.corral.test moved back; the rules followed after %s", seen.Sub(flipped).Round(100*time.Millisecond))

	d.stop()
	w.assertClean(t, d.stateDir)
}
