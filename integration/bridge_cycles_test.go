package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/network/link"
)

// TestBridgeCyclesLeaveNothing: 200 sandboxes started and stopped on the
// bridge through the binary, four at a time (their attaches and detaches
// contend for the bridge's lock), with varied names, some publishing
// ports (on every address and on the loopback, so with proxies), some
// with egress lists, some making connections (allowed, refused, and
// masqueraded without a list), leave nothing of theirs: no veth, no rule,
// counter, chain or set element in the bridge's tables (checked while a
// long-running sandbox keeps the tables there, then gone with it), no
// connection tracking entry of the subnet, no record, address, namespace
// file or resolv.conf, no mount, no leftover of the state dir, and not
// one more fd in the test process.
func TestBridgeCyclesLeaveNothing(t *testing.T) {
	const total, workers = 200, 4
	w := newBridgeWorld(t)
	netDir := filepath.Join(stateDir, "net", bridgeName)

	// The sandboxes of the cycles, each a different kind by its index.
	type cycle struct {
		name   string
		args   []string
		expect string // in its stdout, when not empty
	}
	cycleOf := func(i, worker int) cycle {
		names := []string{"c%d", "cycle-web-%d", "a.much-longer_service-name-for-the-bridge-number-%d", "x%d-y"}
		c := cycle{name: fmt.Sprintf(names[i%len(names)], i)}
		probe := func(ip string) string {
			return "busybox nc -w 5 " + ip + " 80 </dev/null || echo refused " + ip
		}
		switch i % 6 {
		case 0:
			c.args = []string{"--", "/bin/true"}
		case 1: // published on every address and on the loopback (a proxy)
			c.args = []string{"--publish", fmt.Sprintf("%d:80", 20000+worker), "--publish", fmt.Sprintf("127.0.0.1:%d:53/udp", 21000+worker), "--", "/bin/true"}
		case 2: // an egress list, one connection allowed and one refused
			c.args = []string{"--egress", allowedSrv, "--", "/bin/sh", "-c", probe(allowedSrv) + "; " + probe(deniedSrv)}
			c.expect = "hello from " + allowedSrv + "\nrefused " + deniedSrv
		case 3:
			c.args = []string{"--egress", "none", "--publish", fmt.Sprintf("%d:8080/udp", 22000+worker), "--", "/bin/true"}
		case 4: // no list: masqueraded out, answered and reset
			c.args = []string{"--", "/bin/sh", "-c", probe(deniedSrv) + "; " + probe(outsideWAN)}
			c.expect = "hello from " + deniedSrv
		case 5:
			c.args = []string{"--egress", "203.0.113.0/24:80/tcp", "--egress", outsideWAN, "--publish", fmt.Sprintf("%d:80", 23000+worker), "--", "/bin/true"}
		}
		c.args = append([]string{"--name", c.name}, c.args...)
		return c
	}
	runCycle := func(c cycle) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := w.cmd(ctx, c.args...)
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s: %v\nstdout: %s\nstderr: %s", c.name, err, stdout.String(), stderr.String())
		}
		if c.expect != "" && !strings.Contains(stdout.String(), c.expect) {
			return fmt.Errorf("%s: want %q in its output; stdout: %s\nstderr: %s", c.name, c.expect, stdout.String(), stderr.String())
		}
		return nil
	}

	// The first round warms up what the test process keeps open for good
	// (the poller, exec's helpers); the fds are counted after it.
	for i := 0; i < workers; i++ {
		if err := runCycle(cycleOf(i, i)); err != nil {
			t.Fatal(err)
		}
	}
	fdsBefore := openFDs(t)

	// The watcher stays on the bridge across the cycles, so that its
	// tables exist to be searched for what the cycles left, and keeps a
	// connection tracking entry of its own (a connection every second), so
	// that the search of the table is seen to find a sandbox's.
	watcher := w.cmd(context.Background(), "--name", "cycles-watcher", "--egress", allowedSrv+":80/tcp", "--publish", "127.0.0.1:18999:80", "--",
		"/bin/sh", "-c", "while :; do busybox nc -w 5 "+allowedSrv+" 80 </dev/null >/dev/null; sleep 1; done")
	watcherOut := outputFile(t)
	watcher.Stdout, watcher.Stderr = watcherOut, watcherOut
	if err := watcher.Start(); err != nil {
		t.Fatal(err)
	}
	watcherDone := make(chan struct{})
	go func() { _ = watcher.Wait(); close(watcherDone) }()
	stopWatcher := func() {
		_ = watcher.Process.Signal(syscall.SIGTERM)
		select {
		case <-watcherDone:
		case <-time.After(30 * time.Second):
			_ = watcher.Process.Kill()
			<-watcherDone
		}
	}
	defer stopWatcher()
	watcherRec := waitRecord(t, netDir, "cycles-watcher", watcherDone, watcherOut)

	start := time.Now()
	var (
		mu     sync.Mutex
		errs   []error
		names  []string
		wg     sync.WaitGroup
		next   = workers
		cycles = make(chan int)
	)
	for k := 0; k < workers; k++ {
		wg.Add(1)
		go func(worker int) {
			defer wg.Done()
			for i := range cycles {
				c := cycleOf(i, worker)
				err := runCycle(c)
				mu.Lock()
				names = append(names, c.name)
				if err != nil {
					errs = append(errs, err)
				}
				mu.Unlock()
			}
		}(k)
	}
	for ; next < total; next++ {
		cycles <- next
	}
	close(cycles)
	wg.Wait()
	t.Logf("%d cycles, %d at a time: %s (%s a cycle)", total-workers, workers, time.Since(start).Round(time.Millisecond), (time.Since(start) / time.Duration(total-workers)).Round(time.Millisecond))
	for i := 0; i < workers; i++ {
		names = append(names, cycleOf(i, i).name)
	}
	for _, err := range errs[:min(len(errs), 5)] {
		t.Error(err)
	}
	if len(errs) > 0 {
		t.Fatalf("%d of %d cycles failed", len(errs), total)
	}

	// The watcher's rules are all that is left in the tables.
	if left := sandboxRules(t, w.host, names, watcherRec); len(left) > 0 {
		t.Errorf("the bridge's tables hold what the cycles made:\n  %s", strings.Join(left, "\n  "))
	}
	select {
	case <-watcherDone:
		t.Fatalf("the watcher ended during the cycles: %s", readAll(watcherOut))
	default:
	}
	// The watcher's connections are all that is left in conntrack; with
	// a wait for its first, which the search must find.
	deadline := time.Now().Add(15 * time.Second)
	for {
		flows := subnetFlows(t, w.host)
		if flows[watcherRec.Addr] > 0 {
			delete(flows, watcherRec.Addr)
			for addr, n := range flows {
				t.Errorf("%d conntrack entries of %s, a sandbox of the cycles, left", n, addr)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no conntrack entry of the watcher (%s) within 15s: the search would prove nothing; found %v", watcherRec.Addr, flows)
		}
		time.Sleep(100 * time.Millisecond)
	}
	stopWatcher()
	watcherOut.Close()

	// Nothing is attached now: nothing of corral's but the bridge.
	w.assertClean(t, stateDir)
	assertNetworkGone(t, w.host, netDir)
	// More is a leak; fewer is an earlier test's fds closing meanwhile.
	if fdsAfter := openFDs(t); fdsAfter > fdsBefore {
		t.Errorf("the test process has %d fds open after the cycles, %d before", fdsAfter, fdsBefore)
	}
	assertNoLeftovers(t)
}

// bridgeRecord is what the test reads of a sandbox's record.
type bridgeRecord struct {
	Name string     `json:"name"`
	Addr netip.Addr `json:"addr"`
	Veth string     `json:"veth"`
}

// waitRecord waits until the sandbox name is on the bridge (its record
// written) and returns its record.
func waitRecord(t *testing.T, netDir, name string, done <-chan struct{}, out *os.File) bridgeRecord {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		data, err := os.ReadFile(filepath.Join(netDir, "records", name+".json"))
		if err == nil {
			var r bridgeRecord
			if err := json.Unmarshal(data, &r); err != nil {
				t.Fatalf("record of %s: %v", name, err)
			}
			return r
		}
		select {
		case <-done:
			t.Fatalf("%s ended before it was on the bridge: %s", name, readAll(out))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not on the bridge within 30s: %s", name, readAll(out))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// nftTable is one nftables table with its chains, rules, sets (with
// their elements) and the names of its named objects.
type nftTable struct {
	table   *nftables.Table
	chains  []*nftables.Chain
	rules   []*nftables.Rule
	sets    map[string][]nftables.SetElement
	objects []string
}

// nftIn lists every table of the network namespace at path.
func nftIn(t *testing.T, path string) []nftTable {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	conn, err := nftables.New(nftables.WithNetNSFd(int(ns)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseLasting()
	tables, err := conn.ListTables()
	if err != nil {
		t.Fatalf("list nftables tables: %v", err)
	}
	var out []nftTable
	for _, tb := range tables {
		nt := nftTable{table: tb, sets: map[string][]nftables.SetElement{}}
		chains, err := conn.ListChainsOfTableFamily(tb.Family)
		if err != nil {
			t.Fatalf("list chains of %s: %v", tb.Name, err)
		}
		for _, c := range chains {
			if c.Table.Name != tb.Name {
				continue
			}
			nt.chains = append(nt.chains, c)
			rules, err := conn.GetRules(tb, c)
			if err != nil {
				t.Fatalf("list rules of %s %s: %v", tb.Name, c.Name, err)
			}
			nt.rules = append(nt.rules, rules...)
		}
		sets, err := conn.GetSets(tb)
		if err != nil {
			t.Fatalf("list sets of %s: %v", tb.Name, err)
		}
		for _, s := range sets {
			elems, err := conn.GetSetElements(s)
			if err != nil {
				t.Fatalf("list elements of %s %s: %v", tb.Name, s.Name, err)
			}
			nt.sets[s.Name] = elems
		}
		objs, err := conn.GetNamedObjects(tb)
		if err != nil {
			t.Fatalf("list objects of %s: %v", tb.Name, err)
		}
		for _, o := range objs {
			if n, ok := o.(*nftables.NamedObj); ok {
				nt.objects = append(nt.objects, n.Name)
			}
		}
		out = append(out, nt)
	}
	return out
}

// sandboxRules lists what the tables of the namespace at path hold of
// any sandbox but keep: a chain or named object named after one of names,
// or a rule or set element that matches an interface named like a
// sandbox's veth or an address of the subnet other than the gateway's and
// keep's. It fails the test if the bridge's tables are missing (keep is
// on the bridge: they must be there, or the search proves nothing).
func sandboxRules(t *testing.T, path string, names []string, keep bridgeRecord) []string {
	t.Helper()
	subnet := netip.MustParsePrefix(bridgeSubnet)
	allowedAddr := map[netip.Addr]bool{subnet.Addr(): true, subnet.Addr().Next(): true, keep.Addr: true}
	mentions := func(b []byte) string {
		if len(b) == 4 {
			if a := netip.AddrFrom4([4]byte(b)); subnet.Contains(a) && !allowedAddr[a] {
				return a.String()
			}
		}
		if s := string(bytes.TrimRight(b, "\x00")); strings.HasPrefix(s, link.VethPrefix) && s != keep.Veth && s != bridgeName {
			return "interface " + s
		}
		return ""
	}
	// Chains and objects of a sandbox are KIND-NAME (egress-, port-,
	// denied-, spoofed-).
	named := func(s string) bool {
		_, name, ok := strings.Cut(s, "-")
		return ok && slices.Contains(names, name)
	}
	var left []string
	seen := map[nftables.TableFamily]bool{}
	for _, nt := range nftIn(t, path) {
		where := fmt.Sprintf("table %d %s", nt.table.Family, nt.table.Name)
		if nt.table.Name == "corral-"+bridgeName {
			seen[nt.table.Family] = true
		}
		for _, c := range nt.chains {
			if named(c.Name) {
				left = append(left, where+" chain "+c.Name)
			}
		}
		for _, o := range nt.objects {
			if named(o) {
				left = append(left, where+" object "+o)
			}
		}
		for _, r := range nt.rules {
			for _, e := range r.Exprs {
				var data []byte
				switch e := e.(type) {
				case *expr.Cmp:
					data = e.Data
				case *expr.Immediate:
					data = e.Data
				case *expr.Bitwise:
					data = e.Mask
				}
				if m := mentions(data); m != "" {
					left = append(left, fmt.Sprintf("%s chain %s rule %d: %s", where, r.Chain.Name, r.Handle, m))
				}
			}
		}
		for set, elems := range nt.sets {
			for _, e := range elems {
				if m := mentions(e.Key); m != "" {
					left = append(left, fmt.Sprintf("%s set %s element %s", where, set, m))
				}
			}
		}
	}
	if !seen[nftables.TableFamilyINet] || !seen[nftables.TableFamilyBridge] {
		t.Fatalf("the bridge's tables are not there while %s is attached: the search would prove nothing", keep.Name)
	}
	// The watcher's own chains must be found by the same search.
	var found bool
	for _, nt := range nftIn(t, path) {
		for _, c := range nt.chains {
			found = found || strings.HasSuffix(c.Name, "-"+keep.Name)
		}
	}
	if !found {
		t.Fatalf("no chain of %s in the bridge's tables: the search would prove nothing", keep.Name)
	}
	return left
}

// assertNetworkGone checks that with no sandbox attached nothing of a
// sandbox is left in the namespace at path or in the bridge's dir of the
// state dir netDir: the tables (Remove takes both away with the last
// record), veths and other links but the bridge, conntrack entries of the
// subnet, records, addresses, namespace files, resolv.conf files, hosts
// lines, mounts.
func assertNetworkGone(t *testing.T, path, netDir string) {
	t.Helper()
	for _, nt := range nftIn(t, path) {
		t.Errorf("table %d %s left with nothing attached: %d chains, %d rules, %d sets, objects %v",
			nt.table.Family, nt.table.Name, len(nt.chains), len(nt.rules), len(nt.sets), nt.objects)
	}

	var names []string
	for _, l := range linksIn(t, path) {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	if want := []string{bridgeName, "lo", "wan0"}; !slices.Equal(names, want) {
		t.Errorf("links %v left in the host namespace, want %v", names, want)
	}
	for addr, n := range subnetFlows(t, path) {
		t.Errorf("%d conntrack entries of %s left", n, addr)
	}

	for _, sub := range []string{"records", "addrs", "ns", "etc"} {
		ents, err := os.ReadDir(filepath.Join(netDir, sub))
		if err != nil {
			t.Errorf("read %s: %v", sub, err)
		}
		for _, e := range ents {
			t.Errorf("%s/%s left", sub, e.Name())
		}
	}
	ents, err := os.ReadDir(netDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !slices.Contains([]string{"records", "addrs", "ns", "etc", "lock", "hosts"}, e.Name()) {
			t.Errorf("%s left in %s", e.Name(), netDir)
		}
	}
	hosts, err := os.ReadFile(filepath.Join(netDir, "hosts"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(hosts)), "\n") {
		if !strings.Contains(line, "localhost") {
			t.Errorf("hosts file still names a sandbox: %q", line)
		}
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(mounts), "\n") {
		if strings.Contains(line, stateDir) {
			t.Errorf("mount left under the state dir: %s", line)
		}
	}
}

// subnetFlows counts the connection tracking entries of the namespace at
// path by the sandbox address of the bridge's subnet they carry. Not the
// gateway's: those are the host's own (the bridge's IGMP reports).
func subnetFlows(t *testing.T, path string) map[netip.Addr]int {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	flows, err := h.ConntrackTableList(netlink.ConntrackTable, unix.AF_INET)
	if err != nil {
		t.Fatalf("list conntrack entries: %v", err)
	}
	subnet := netip.MustParsePrefix(bridgeSubnet)
	gateway := subnet.Addr().Next()
	out := map[netip.Addr]int{}
	for _, f := range flows {
		seen := map[netip.Addr]bool{}
		for _, ip := range []net.IP{f.Forward.SrcIP, f.Forward.DstIP, f.Reverse.SrcIP, f.Reverse.DstIP} {
			if a, ok := netip.AddrFromSlice(ip); ok {
				if a = a.Unmap(); subnet.Contains(a) && a != gateway && !seen[a] {
					seen[a] = true
					out[a]++
				}
			}
		}
	}
	return out
}

// openFDs counts the test process's open fds.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents) - 1 // the directory read itself
}

// TestBridgeKill9OfCorralRunIsSweptByNextRun: a corral run on the bridge
// killed with SIGKILL leaves its sandbox, record and network; the next
// corral run, on the bridge or not, starts anyway (its sweep at start has
// no bridge yet and leaves the network to the bridge's own sweep), and a
// run on the bridge takes all of it away.
func TestBridgeKill9OfCorralRunIsSweptByNextRun(t *testing.T) {
	w := newBridgeWorld(t)
	netDir := filepath.Join(stateDir, "net", bridgeName)
	killed := w.cmd(context.Background(), "--name", "killed", "--publish", "18998:80", "--egress", allowedSrv, "--", "busybox", "sleep", "600")
	// A file, not a pipe: the sandbox outlives corral and holds it.
	out := outputFile(t)
	killed.Stdout, killed.Stderr = out, out
	if err := killed.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Only if the sweep failed: the sandbox is this test's.
		for _, pid := range cgroupProcsOf(t, "killed") {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	done := make(chan struct{})
	go func() { _ = killed.Wait(); close(done) }()
	waitRecord(t, netDir, "killed", done, out)
	// Its sandbox is up once its cgroup holds the command.
	deadline := time.Now().Add(15 * time.Second)
	for len(cgroupProcsOf(t, "killed")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the sandbox did not start: %s", readAll(out))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := killed.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-done

	// Not on the bridge: it starts, and leaves the bridge's part alone.
	if r := corral(t, "run", "--name", "plain", "--", "/bin/true"); r.code != 0 {
		t.Fatalf("a run after the kill -9: %s", r)
	}
	if r := w.run(t, "--name", "next", "--", "/bin/true"); r.code != 0 {
		t.Fatalf("a bridge run after the kill -9: %s", r)
	}
	if pids := cgroupProcsOf(t, "killed"); len(pids) > 0 {
		t.Errorf("the killed run's sandbox still runs: %v", pids)
	}
	w.assertClean(t, stateDir)
	assertNetworkGone(t, w.host, netDir)
	assertNoLeftovers(t)
}

// cgroupProcsOf lists the processes of the sandbox name's cgroup (none
// if it has none).
func cgroupProcsOf(t *testing.T, name string) []int {
	t.Helper()
	pids, _ := host.Procs(filepath.Join(cgroupParent, name))
	return pids
}

// outputFile is a file for a command's output, removed with the test.
func outputFile(t *testing.T) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func readAll(f *os.File) string {
	data, _ := os.ReadFile(f.Name())
	return string(data)
}
