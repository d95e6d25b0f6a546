package integration

import (
	"bufio"
	"context"
	"fmt"
	"github.com/corral-dev/corral/integration/bench/netnsfile"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The bridge tests never touch the host's network: corral runs inside a
// network namespace the test makes ("host"), joined by a veth to another
// ("outside") that plays the world, with TEST-NET addresses only.
const (
	bridgeName   = "crlt0"
	bridgeSubnet = "10.213.0.0/16"
	hostWAN      = "198.51.100.1"
	outsideWAN   = "198.51.100.2"
	allowedSrv   = "203.0.113.10"
	deniedSrv    = "203.0.113.20"
)

// netnsFile makes a network namespace (lo up) bound at a file of the
// test's, removed with the test.
func netnsFile(t *testing.T, name string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := netnsfile.Make(path); err != nil {
		t.Fatalf("make network namespace %s: %v", name, err)
	}
	t.Cleanup(func() { _ = netnsfile.Remove(path) })
	return path
}

// inNetns runs fn on a thread in the namespace at path.
func inNetns(t *testing.T, path string, fn func() error) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // ends with the goroutine, in path's namespace
		ns, err := netns.GetFromPath(path)
		if err != nil {
			errc <- err
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			errc <- err
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// bridgeWorld is a host namespace for corral and an outside one with an
// allowed and a denied server.
type bridgeWorld struct {
	host, outside string
}

func newBridgeWorld(t *testing.T) *bridgeWorld {
	t.Helper()
	w := &bridgeWorld{host: netnsFile(t, "host"), outside: netnsFile(t, "outside")}
	// Route sockets only, as runtime/network/link's: the handle's default
	// also opens xfrm and netfilter ones, whose modules a minimal kernel
	// (the cgroup v2 VM's) may not have loaded.
	hostNS, err := netns.GetFromPath(w.host)
	if err != nil {
		t.Fatal(err)
	}
	defer hostNS.Close()
	outNS, err := netns.GetFromPath(w.outside)
	if err != nil {
		t.Fatal(err)
	}
	defer outNS.Close()
	hh, err := netlink.NewHandleAt(hostNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer hh.Close()
	oh, err := netlink.NewHandleAt(outNS, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer oh.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "wan0"}, PeerName: "wan1", PeerNamespace: netlink.NsFd(int(outNS))}
	must(hh.LinkAdd(veth))
	for _, h := range []*netlink.Handle{hh, oh} {
		lo, err := h.LinkByName("lo")
		must(err)
		must(h.LinkSetUp(lo))
	}
	wan0, err := hh.LinkByName("wan0")
	must(err)
	wan1, err := oh.LinkByName("wan1")
	must(err)
	addr := func(s string) *netlink.Addr {
		a, err := netlink.ParseAddr(s)
		must(err)
		return a
	}
	must(hh.AddrAdd(wan0, addr(hostWAN+"/24")))
	must(oh.AddrAdd(wan1, addr(outsideWAN+"/24")))
	lo, err := oh.LinkByName("lo")
	must(err)
	must(oh.AddrAdd(lo, addr(allowedSrv+"/32")))
	must(oh.AddrAdd(lo, addr(deniedSrv+"/32")))
	must(hh.LinkSetUp(wan0))
	must(oh.LinkSetUp(wan1))
	_, dst, _ := net.ParseCIDR("203.0.113.0/24")
	must(hh.RouteAdd(&netlink.Route{LinkIndex: wan0.Attrs().Index, Dst: dst, Gw: net.ParseIP(outsideWAN)}))
	for _, ip := range []string{allowedSrv, deniedSrv} {
		w.serve(t, ip+":80", "hello from "+ip)
	}
	return w
}

// serve answers each TCP connection to addr in the outside namespace
// with text.
func (w *bridgeWorld) serve(t *testing.T, addr, text string) {
	t.Helper()
	var l net.Listener
	if err := inNetns(t, w.outside, func() (err error) {
		l, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, text)
			c.Close()
		}
	}()
}

// get reads the first line of http://addr/path from the namespace ns.
func (w *bridgeWorld) get(t *testing.T, ns, addr, path string) (string, error) {
	t.Helper()
	var line string
	err := inNetns(t, ns, func() error {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.0\r\n\r\n", path)
		b, err := io.ReadAll(bufio.NewReader(c))
		if err != nil {
			return err
		}
		_, body, _ := strings.Cut(string(b), "\r\n\r\n")
		line = strings.TrimSpace(body)
		return nil
	})
	return line, err
}

// corralIn is corral run in the host namespace, with the test's bridge.
func (w *bridgeWorld) cmd(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"run", "--network", "bridge", "--bridge", bridgeName, "--subnet", bridgeSubnet, "--dns", outsideWAN}, args...)
	cmd := corralCmd(ctx, full...)
	nsenter, _ := exec.LookPath("nsenter")
	cmd.Args = append([]string{nsenter, "--net=" + w.host, "--"}, cmd.Args...)
	cmd.Path = nsenter
	return cmd
}

func (w *bridgeWorld) run(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return finish(t, w.cmd(ctx, args...))
}

// start runs a sandbox in the background until the test ends, and waits
// until addr (from the host namespace) answers with a body.
func (w *bridgeWorld) start(t *testing.T, addr string, args ...string) {
	t.Helper()
	cmd := w.cmd(context.Background(), args...)
	out, err := os.Create(filepath.Join(t.TempDir(), "out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		// An answer, not only a connection: a loopback proxy accepts
		// before the sandbox's server listens, and then closes at once.
		if got, err := w.get(t, w.host, addr, "/"); err == nil && got != "" {
			return
		}
		select {
		case <-done:
			data, _ := os.ReadFile(out.Name())
			t.Fatalf("sandbox ended before %s answered:\n%s", addr, data)
		default:
		}
		if time.Now().After(deadline) {
			data, _ := os.ReadFile(out.Name())
			t.Fatalf("%s did not answer within 15s:\n%s", addr, data)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// webRoot is a directory with an index and a name file for httpd.
func webRoot(t *testing.T, name string) string {
	dir := filepath.Join(sharedDir(t), "www-"+name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, body := range map[string]string{"index.html": "index of " + name + "\n", "name": name + "\n"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestBridgeEgressAllowlist: on the bridge, an allowed destination
// connects and a denied one is refused at once (not dropped: the client
// does not wait for its timeout); without a list everything is reached.
func TestBridgeEgressAllowlist(t *testing.T) {
	w := newBridgeWorld(t)
	probe := "for ip in " + allowedSrv + " " + deniedSrv + "; do busybox nc -w 10 $ip 80 </dev/null || echo refused $ip; done"
	start := time.Now()
	r := w.run(t, "--egress", allowedSrv, "--", "/bin/sh", "-c", probe)
	took := time.Since(start)
	t.Logf("with --egress %s (%s): %s", allowedSrv, took, r)
	if r.code != 0 || !strings.Contains(r.stdout, "hello from "+allowedSrv) || !strings.Contains(r.stdout, "refused "+deniedSrv) || strings.Contains(r.stdout, "hello from "+deniedSrv) {
		t.Fatalf("with --egress %s: %s", allowedSrv, r)
	}
	if took > 8*time.Second {
		t.Errorf("the denied connection took %s: it must be refused, not dropped", took)
	}
	r = w.run(t, "--", "/bin/sh", "-c", probe)
	if !strings.Contains(r.stdout, "hello from "+allowedSrv) || !strings.Contains(r.stdout, "hello from "+deniedSrv) {
		t.Errorf("without a list: %s", r)
	}
	// The gateway (a host address) is outside the sandbox too.
	r = w.run(t, "--egress", allowedSrv, "--", "/bin/sh", "-c", "busybox nc -w 10 10.213.0.1 22 </dev/null; echo rc=$?")
	if !strings.Contains(r.stdout, "rc=1") {
		t.Errorf("to the gateway: %s", r)
	}
	w.assertClean(t, stateDir)
}

// TestBridgePublishedPortAndNames: a published port answers from the
// outside world, from the host's own address and from its loopback (the
// proxy); a second sandbox reaches the first by its name.
func TestBridgePublishedPortAndNames(t *testing.T) {
	w := newBridgeWorld(t)
	www := webRoot(t, "web")
	w.start(t, "127.0.0.1:8080", "--name", "web", "--mount", www+":/www", "--publish", "8080:80", "--", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	for _, tc := range []struct{ ns, addr string }{
		{w.outside, hostWAN + ":8080"},
		{w.host, hostWAN + ":8080"},
		{w.host, "127.0.0.1:8080"},
	} {
		if got, err := w.get(t, tc.ns, tc.addr, "/name"); err != nil || got != "web" {
			t.Errorf("GET %s/name from %s: %q, %v", tc.addr, filepath.Base(tc.ns), got, err)
		}
	}
	r := w.run(t, "--name", "client", "--", "busybox", "wget", "-qO-", "http://web/name")
	if r.code != 0 || strings.TrimSpace(r.stdout) != "web" {
		t.Errorf("client to web by name: %s", r)
	}
	r = w.run(t, "--name", "locked", "--egress", "none", "--", "/bin/sh", "-c", "busybox wget -T 10 -qO- http://web/name || echo refused")
	if !strings.Contains(r.stdout, "refused") {
		t.Errorf("a sandbox with egress none reached web: %s", r)
	}
	// A second publish of the same port is refused, naming the owner.
	r = w.run(t, "--name", "other", "--publish", "8080:80", "--", "/bin/true")
	if r.code != 125 || !strings.Contains(r.stderr, "8080") || !strings.Contains(r.stderr, "taken") {
		t.Errorf("a taken port: %s", r)
	}
}

// assertClean checks that nothing of corral's is left in the host
// namespace: no veth on the bridge, no address record.
func (w *bridgeWorld) assertClean(t *testing.T, state string) {
	t.Helper()
	for _, l := range linksIn(t, w.host) {
		if l.Type() == "veth" && l.Attrs().Name != "wan0" {
			t.Errorf("veth %s left", l.Attrs().Name)
		}
	}
	recs, _ := filepath.Glob(filepath.Join(state, "net", bridgeName, "records", "*"))
	if len(recs) > 0 {
		t.Errorf("records left: %v", recs)
	}
}

// TestBridgeDaemonAdoption: a daemon's bridge services keep their
// addresses, published ports (the loopback proxy too) and egress lists
// across the daemon's kill -9 and adoption; stopping them leaves nothing.
func TestBridgeDaemonAdoption(t *testing.T) {
	w := newBridgeWorld(t)
	www := webRoot(t, "daemon-web")
	d := newDaemon(t, fmt.Sprintf(`
  web:
    command: [busybox, httpd, -f, -p, "80", -h, /www]
    network: bridge
    publish: ["8081:80"]
    mounts: ["%s:/www"]
  locked:
    command: [/bin/sh, -c, "while :; do busybox nc -w 5 %s 80 </dev/null >/dev/null 2>&1 && echo reached || echo refused; sleep 0.2; done"]
    network: bridge
    egress: ["%s"]
`, www, deniedSrv, allowedSrv))
	d.daemonExtra = fmt.Sprintf("  bridge: %s\n  subnet: %s\n  dns: [%s]\n", bridgeName, bridgeSubnet, outsideWAN)
	d.write(d.services)
	d.netns = w.host
	d.start()
	web := d.waitRunning("web")
	d.waitRunning("locked")
	check := func(when string) {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			got, err := w.get(t, w.outside, hostWAN+":8081", "/name")
			lo, lerr := w.get(t, w.host, "127.0.0.1:8081", "/name")
			if err == nil && got == "daemon-web" && lerr == nil && lo == "daemon-web" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: GET from outside: %q, %v; from the host's loopback: %q, %v", when, got, err, lo, lerr)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	check("before the kill")
	d.kill9()
	d.restart()
	if st := d.waitRunning("web"); st.PID != web.PID {
		t.Fatalf("web restarted (pid %d, was %d): want it adopted", st.PID, web.PID)
	}
	check("after the kill -9 and adoption")
	r := d.ctl("logs", "locked")
	if strings.Contains(r.stdout, "reached") || !strings.Contains(r.stdout, "refused") {
		t.Errorf("locked reached %s: %s", deniedSrv, r)
	}
	d.stop()
	w.assertClean(t, d.stateDir)
}

// withLinks runs fn with a netlink handle (route sockets only: the VM's
// kernel has no xfrm) in the network namespace at path.
func withLinks(t *testing.T, path string, fn func(*netlink.Handle)) {
	t.Helper()
	ns, err := netns.GetFromPath(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	fn(h)
}

// linksIn lists the links of the network namespace at path.
func linksIn(t *testing.T, path string) []netlink.Link {
	t.Helper()
	var links []netlink.Link
	withLinks(t, path, func(h *netlink.Handle) {
		var err error
		if links, err = h.LinkList(); err != nil {
			t.Fatal(err)
		}
	})
	return links
}
