package link

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
)

// The main goroutine keeps the main thread for itself. The tests switch
// network namespaces on locked threads; a goroutine that ends locked
// takes its thread with it, except the main thread, which Go parks
// instead, in whatever namespace it was left, and which is what
// /proc/self shows.
func init() { runtime.LockOSThread() }

// TestMain fails the run if the machine's own network namespace (the
// main thread's: it never leaves it) changed while the tests ran: every
// test must work in namespaces of its own, and a subtest, which runs on
// a thread of its own, must make its own.
func TestMain(m *testing.M) {
	before, err := hostNetwork()
	if err != nil {
		fmt.Fprintln(os.Stderr, "read the host's network:", err)
		os.Exit(1)
	}
	code := m.Run()
	after, err := hostNetwork()
	if err != nil {
		fmt.Fprintln(os.Stderr, "read the host's network:", err)
		os.Exit(1)
	}
	if after != before {
		fmt.Fprintf(os.Stderr, "the tests changed the host's network namespace:\nbefore:\n%s\nafter:\n%s\n", before, after)
		code = 1
	}
	os.Exit(code)
}

// hostNetwork describes the links, addresses and routes of the calling
// thread's network namespace (read only).
func hostNetwork() (string, error) {
	var b strings.Builder
	var links []netlink.Link
	if err := retryDump(func() (err error) { links, err = netlink.LinkList(); return err }); err != nil {
		return "", err
	}
	for _, l := range links {
		fmt.Fprintf(&b, "link %s %s %s\n", l.Attrs().Name, l.Type(), l.Attrs().Alias)
	}
	var addrs []netlink.Addr
	if err := retryDump(func() (err error) { addrs, err = netlink.AddrList(nil, netlink.FAMILY_ALL); return err }); err != nil {
		return "", err
	}
	for _, a := range addrs {
		fmt.Fprintf(&b, "addr %s %d\n", a.IPNet, a.LinkIndex)
	}
	var routes []netlink.Route
	err := retryDump(func() (err error) {
		routes, err = netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
		return err
	})
	if err != nil {
		return "", err
	}
	for _, r := range routes {
		fmt.Fprintf(&b, "route %s via %s dev %d table %d\n", r.Dst, r.Gw, r.LinkIndex, r.Table)
	}
	return b.String(), nil
}

// hostNS puts the test's goroutine, locked to its thread, into a network
// namespace of its own, the test's "host", for the rest of the test: the
// machine's own namespace is never changed. The namespace goes (and
// every link in it) when the test ends. It returns a handle of it, open
// until then.
func hostNS(t *testing.T) netns.NsHandle {
	t.Helper()
	testenv.NeedRoot(t, "makes network namespaces")
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ns.Close()
		if err := netns.Set(orig); err != nil {
			// Stay locked: the thread ends with the test's goroutine.
			t.Errorf("return to the original network namespace: %v", err)
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
	return ns
}

// inNS runs fn on a thread of its own inside the namespace bound at
// path, and comes back (or lets the thread end).
func inNS(t *testing.T, path string, fn func() error) error {
	t.Helper()
	target, err := netns.GetFromPath(path)
	if err != nil {
		return err
	}
	defer target.Close()
	return inHandle(target, fn)
}

// inHandle runs fn on a thread of its own inside the namespace ns.
func inHandle(ns netns.NsHandle, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := netns.Get()
		if err != nil {
			done <- err
			return
		}
		defer self.Close()
		if err := netns.Set(ns); err != nil {
			done <- err
			return
		}
		err = fn()
		if netns.Set(self) == nil {
			runtime.UnlockOSThread()
		}
		done <- err
	}()
	return <-done
}

// sandbox is one attached sandbox of a test.
type sandbox struct {
	nsPath, veth string
	addr         netip.Prefix
}

// attach attaches a sandbox named name on bridge with addr, detached
// when the test ends.
func attach(t *testing.T, dir, bridge, name string, addr netip.Prefix, gw netip.Addr) sandbox {
	t.Helper()
	s := sandbox{nsPath: filepath.Join(dir, name), veth: VethName(bridge, name), addr: addr}
	if err := Attach(s.nsPath, bridge, s.veth, addr, gw); err != nil {
		t.Fatalf("Attach %s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := Detach(s.nsPath, s.veth); err != nil {
			t.Errorf("Detach %s: %v", name, err)
		}
	})
	return s
}

// mountsUnder lists the mounts of the calling thread's mount namespace
// at or under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/thread-self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// linkNames lists the links of the calling thread's network namespace.
func linkNames(t *testing.T) []string {
	t.Helper()
	var links []netlink.Link
	if err := retryDump(func() (err error) { links, err = netlink.LinkList(); return err }); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		out = append(out, l.Attrs().Name)
	}
	return out
}

// openFDs counts the process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// tempDir is a t.TempDir whose leftover mounts, if a test fails before
// detaching, are unmounted first, so that its removal does not fail too.
func tempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		for _, m := range mountsUnder(t, dir) {
			_ = unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	return dir
}
