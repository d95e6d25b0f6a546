package integration

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/network/link"
)

// TestBridgeDaemonStatusMetricsHealthAndSweep: a daemon's bridge
// services show their address, published ports and egress list in
// status; their health checks reach them; the metrics count their bytes
// and denied packets; and what a killed daemon left of a sandbox that is
// gone (a record, a namespace file, a veth on the bridge) is swept at the
// next start, the adopted services untouched.
func TestBridgeDaemonStatusMetricsHealthAndSweep(t *testing.T) {
	w := newBridgeWorld(t)
	www := webRoot(t, "status-web")
	port := freePortIn(t, w.host)
	d := newDaemon(t, fmt.Sprintf(`
  web:
    command: [busybox, httpd, -f, -p, "80", -h, /www]
    network: bridge
    publish: ["8083:80"]
    mounts: ["%s:/www"]
    health: {http: {port: 80, path: /name}, interval: 2s, timeout: 2s, start_period: 10s}
  locked:
    command: [/bin/sh, -c, "while :; do busybox nc -w 5 %s 80 </dev/null >/dev/null 2>&1; sleep 0.2; done"]
    network: bridge
    egress: ["%s", "%s:443"]
`, www, deniedSrv, allowedSrv, outsideWAN))
	d.daemonExtra = fmt.Sprintf("  bridge: %s\n  subnet: %s\n  dns: [%s]\n  metrics: {listen: \"127.0.0.1:%d\"}\n", bridgeName, bridgeSubnet, outsideWAN, port)
	d.write(d.services)
	d.netns = w.host
	d.start()

	// The health check dials the sandbox on the bridge.
	web := d.waitFor("web", 30*time.Second, "healthy", func(st *api.ServiceDetail) bool { return st.Health == "healthy" })
	_, subnet, _ := net.ParseCIDR(bridgeSubnet)
	if web.Network != "bridge" || !subnet.Contains(net.ParseIP(web.Address)) || strings.Join(web.Publish, ",") != "8083:80/tcp" || web.EgressRestricted {
		t.Errorf("status of web: network %q, address %q, publish %q, egress %v %q", web.Network, web.Address, web.Publish, web.EgressRestricted, web.Egress)
	}
	locked := d.waitRunning("locked")
	if !locked.EgressRestricted || strings.Join(locked.Egress, ",") != allowedSrv+"/32,"+outsideWAN+"/32:443/tcp" || locked.Address == web.Address {
		t.Errorf("status of locked: address %q (web %q), egress %v %q", locked.Address, web.Address, locked.EgressRestricted, locked.Egress)
	}
	r := d.ctl("status", "web")
	for _, want := range []string{"network:   bridge, address " + web.Address, "publish:   8083:80/tcp", "health:    healthy"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("corral status web: no %q in:\n%s", want, r.stdout)
		}
	}
	if r := d.ctl("status", "locked"); !strings.Contains(r.stdout, "egress:    only "+allowedSrv+"/32, "+outsideWAN+"/32:443/tcp and its resolver") {
		t.Errorf("corral status locked:\n%s", r.stdout)
	}

	// Traffic through the published port, and denied packets, counted.
	for i := 0; i < 3; i++ {
		if got, err := w.get(t, w.outside, hostWAN+":8083", "/name"); err != nil || got != "status-web" {
			t.Fatalf("GET from outside: %q, %v", got, err)
		}
	}
	metric := func(body, name, svc string) float64 {
		m := regexp.MustCompile(`(?m)^` + name + `\{service="` + svc + `"\} (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			return -1
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	var body string
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		body, err = w.get(t, w.host, fmt.Sprintf("127.0.0.1:%d", port), "/metrics")
		if err == nil && metric(body, "corral_service_egress_denied_packets_total", "locked") > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no denied packet of locked counted in 15s (%v):\n%s", err, grepLines(body, "corral_service_"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if rx, tx := metric(body, "corral_service_network_receive_bytes_total", "web"), metric(body, "corral_service_network_transmit_bytes_total", "web"); rx < 300 || tx < 300 {
		t.Errorf("web's bytes after 3 GETs: received %v, sent %v:\n%s", rx, tx, grepLines(body, "corral_service_network"))
	}
	if v := metric(body, "corral_service_egress_denied_packets_total", "web"); v != -1 {
		t.Errorf("web has no egress list but a denied count %v", v)
	}

	// A daemon killed while a sandbox was being taken off the bridge left
	// its pieces: a record, a namespace file and a veth on the bridge.
	d.kill9()
	netDir := filepath.Join(d.stateDir, "net", bridgeName)
	ghostVeth, orphanVeth := link.VethName(bridgeName, "ghost"), link.VethName(bridgeName, "orphan")
	ghost := fmt.Sprintf(`{"name":"ghost","addr":"10.213.3.3","veth":%q}`, ghostVeth)
	for path, body := range map[string]string{filepath.Join(netDir, "records", "ghost.json"): ghost, filepath.Join(netDir, "ns", "ghost"): ""} {
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	withHostLinks(t, w, func(h *netlink.Handle) {
		br, err := h.LinkByName(bridgeName)
		if err != nil {
			t.Fatal(err)
		}
		// The second has no record at all: only its name says it is corral's.
		for i, name := range []string{ghostVeth, orphanVeth} {
			veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: name, MasterIndex: br.Attrs().Index}, PeerName: fmt.Sprintf("ghostpeer%d", i)}
			if err := h.LinkAdd(veth); err != nil {
				t.Fatal(err)
			}
		}
	})
	d.restart()
	if st := d.waitRunning("web"); st.PID != web.PID {
		t.Errorf("web restarted (pid %d, was %d): want it adopted", st.PID, web.PID)
	}
	for _, path := range []string{filepath.Join(netDir, "records", "ghost.json"), filepath.Join(netDir, "ns", "ghost")} {
		if _, err := os.Lstat(path); !os.IsNotExist(err) {
			t.Errorf("%s left after the next start: %v", path, err)
		}
	}
	withHostLinks(t, w, func(h *netlink.Handle) {
		for _, name := range []string{ghostVeth, orphanVeth} {
			if _, err := h.LinkByName(name); err == nil {
				t.Errorf("the orphan veth %s is still there", name)
			}
		}
	})
	if got, err := w.get(t, w.outside, hostWAN+":8083", "/name"); err != nil || got != "status-web" {
		t.Errorf("GET from outside after the sweep: %q, %v", got, err)
	}
	d.stop()
	w.assertClean(t, d.stateDir)
}

// withHostLinks runs fn with a netlink handle in the world's host
// namespace.
func withHostLinks(t *testing.T, w *bridgeWorld, fn func(*netlink.Handle)) {
	t.Helper()
	withLinks(t, w.host, fn)
}

// freePortIn is a TCP port of 127.0.0.1 free now in the namespace ns.
func freePortIn(t *testing.T, ns string) int {
	t.Helper()
	var port int
	if err := inNetns(t, ns, func() error {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		port = l.Addr().(*net.TCPAddr).Port
		return l.Close()
	}); err != nil {
		t.Fatal(err)
	}
	return port
}

// grepLines is the lines of text that contain substr.
func grepLines(text, substr string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestBridgeBesideAForwardDropFirewall: on a host whose firewall drops
// forwarded traffic (a FORWARD chain with policy drop, as Docker and
// iptables-nft make it), corral's rules do not override it and corral does
// not touch it; the two rules the README gives let the bridge's traffic
// through, egress and published ports alike.
func TestBridgeBesideAForwardDropFirewall(t *testing.T) {
	w := newBridgeWorld(t)
	ns, err := netns.GetFromPath(w.host)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	drop := nftables.ChainPolicyDrop
	filter := conn.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
	forward := conn.AddChain(&nftables.Chain{Name: "FORWARD", Table: filter, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	probe := []string{"--egress", allowedSrv, "--", "/bin/sh", "-c", "busybox nc -w 3 " + allowedSrv + " 80 </dev/null || echo unreached"}
	if r := w.run(t, probe...); !strings.Contains(r.stdout, "unreached") {
		t.Fatalf("with the host's FORWARD policy drop, the sandbox still reached %s: %s", allowedSrv, r)
	}
	// iptables -I FORWARD -i BRIDGE -j ACCEPT; iptables -I FORWARD -o BRIDGE -j ACCEPT
	for _, key := range []expr.MetaKey{expr.MetaKeyIIFNAME, expr.MetaKeyOIFNAME} {
		name := make([]byte, 16)
		copy(name, bridgeName)
		conn.AddRule(&nftables.Rule{Table: filter, Chain: forward, Exprs: []expr.Any{
			&expr.Meta{Key: key, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: name},
			&expr.Verdict{Kind: expr.VerdictAccept},
		}})
	}
	if err := conn.Flush(); err != nil {
		t.Fatal(err)
	}
	if r := w.run(t, probe...); !strings.Contains(r.stdout, "hello from "+allowedSrv) {
		t.Errorf("with the README's two rules, the sandbox did not reach %s: %s", allowedSrv, r)
	}
	www := webRoot(t, "fwd-web")
	w.start(t, "127.0.0.1:8084", "--name", "fwdweb", "--mount", www+":/www", "--publish", "8084:80", "--", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	if got, err := w.get(t, w.outside, hostWAN+":8084", "/name"); err != nil || got != "fwd-web" {
		t.Errorf("GET of the published port from outside: %q, %v", got, err)
	}
	// corral left the host's table as it was: the chain, its policy, its
	// two rules.
	rules, err := conn.GetRules(filter, forward)
	if err != nil || len(rules) != 2 {
		t.Errorf("the host's FORWARD chain has %d rules (%v), want its 2", len(rules), err)
	}
}
