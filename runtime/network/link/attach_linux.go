package link

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"time"

	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Attach makes a sandbox's network: a new network namespace bound at
// nsPath (a file it creates, in a directory that exists), with lo up and
// eth0, the peer of the veth hostVeth attached to bridge; eth0 has addr
// and the default route via gw. On any error nothing of it is left: no
// file, no mount, no veth.
//
// The namespace is the sandbox's alone, so, as with its own host, a
// service without capabilities may bind any port (a web server on 80
// needs no CAP_NET_BIND_SERVICE) and send pings. Sandboxes get no IPv6
// (no address, no route, no firewall for it): it is disabled inside.
func Attach(nsPath, bridge, hostVeth string, addr netip.Prefix, gw netip.Addr) (err error) {
	if err := checkName("veth", hostVeth); err != nil {
		return err
	}
	if !addr.Addr().Is4() || !gw.Is4() || !addr.Contains(gw) || addr.Addr() == gw || addr.Bits() > 30 {
		return fmt.Errorf("attach %s: address %s and gateway %s: want two IPv4 addresses of one subnet of at most /30", hostVeth, addr, gw)
	}
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return fmt.Errorf("attach %s to bridge %s: %w", hostVeth, bridge, err)
	}
	if br.Type() != "bridge" {
		return fmt.Errorf("attach %s to bridge %s: it is a %s, not a bridge", hostVeth, bridge, br.Type())
	}
	ns, err := newNamespace(nsPath)
	if err != nil {
		return fmt.Errorf("attach %s: %w", hostVeth, err)
	}
	defer ns.Close()
	defer func() {
		if err != nil {
			_ = unbind(nsPath)
		}
	}()
	if err := failpoint("namespace"); err != nil {
		return err
	}
	// Made with its peer already inside, on the bridge and up, in one
	// request, so that no eth0 ever shows in the host's namespace.
	veth := &netlink.Veth{LinkAttrs: netlink.NewLinkAttrs(), PeerName: "eth0", PeerNamespace: netlink.NsFd(ns.Fd())}
	veth.Name, veth.MasterIndex, veth.Flags = hostVeth, br.Attrs().Index, net.FlagUp
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("attach %s: create veth: %w", hostVeth, err)
	}
	defer func() {
		if err != nil {
			// Its peer goes with it.
			_ = netlink.LinkDel(veth)
		}
	}()
	if err := failpoint("veth"); err != nil {
		return err
	}
	if err := failpoint("bridge"); err != nil {
		return err
	}
	if err := configureInside(ns, addr, gw); err != nil {
		return fmt.Errorf("attach %s: in %s: %w", hostVeth, nsPath, err)
	}
	return failpoint("inside")
}

// failpoint, when set by a test, makes Attach fail after a stage.
var failpoint = func(stage string) error { return nil }

// configureInside sets lo and eth0 up, gives eth0 its address and the
// default route via gw: through a netlink socket made in the namespace,
// so that no thread of ours has to stay there.
func configureInside(ns *os.File, addr netip.Prefix, gw netip.Addr) error {
	h, err := netlink.NewHandleAt(netns.NsHandle(ns.Fd()), unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	eth0, err := h.LinkByName("eth0")
	if err != nil {
		return err
	}
	if err := h.AddrAdd(eth0, &netlink.Addr{IPNet: ipNet(addr)}); err != nil {
		return fmt.Errorf("add address %s to eth0: %w", addr, err)
	}
	if err := h.LinkSetUp(eth0); err != nil {
		return fmt.Errorf("set eth0 up: %w", err)
	}
	def := &netlink.Route{
		LinkIndex: eth0.Attrs().Index,
		Dst:       &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)},
		Gw:        gw.AsSlice(),
	}
	if err := h.RouteAdd(def); err != nil {
		return fmt.Errorf("add default route via %s: %w", gw, err)
	}
	return nil
}

// sysctls are the settings of each sandbox's namespace. IPv6's are
// optional: a kernel booted without IPv6 has none to disable.
var sysctls = []struct {
	key, value string
	optional   bool
}{
	{"net/ipv4/ip_unprivileged_port_start", "0", false},
	{"net/ipv4/ping_group_range", "0 2147483647", false},
	// default first: it is what eth0, made after, starts with.
	{"net/ipv6/conf/default/disable_ipv6", "1", true},
	{"net/ipv6/conf/all/disable_ipv6", "1", true},
}

// newNamespace makes a network namespace, binds it at path and applies
// sysctls in it. It returns an open handle of the namespace.
//
// unshare moves only the calling thread: the work is done on a goroutine
// locked to its thread, which then comes back to the namespace it had.
// If it cannot, the goroutine ends still locked, and the Go runtime ends
// the thread with it rather than run anything else in the sandbox's
// namespace.
func newNamespace(path string) (*os.File, error) {
	type result struct {
		ns  *os.File
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		ns, back, err := inNewNamespace(func() (*os.File, error) { return bindHere(path) })
		if back {
			runtime.UnlockOSThread()
		}
		done <- result{ns, err}
	}()
	r := <-done
	return r.ns, r.err
}

// inNewNamespace runs fn in a new network namespace and comes back; back
// is false if the thread could not come back.
func inNewNamespace(fn func() (*os.File, error)) (ns *os.File, back bool, err error) {
	self, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, true, fmt.Errorf("open own network namespace: %w", err)
	}
	defer self.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("make network namespace: %w", err)
	}
	ns, err = fn()
	if serr := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); serr != nil {
		return ns, false, err
	}
	return ns, true, err
}

// bindHere binds the calling thread's network namespace at path, a new
// file, and applies sysctls. The mount's target is the file's own fd (by
// /proc), not its path: nothing swapped in at path between the two is
// mounted on.
func bindHere(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("create %s: %w", path, err)
	}
	err = unix.Mount("/proc/thread-self/ns/net", "/proc/thread-self/fd/"+strconv.Itoa(fd), "", unix.MS_BIND, "")
	unix.Close(fd)
	if err != nil {
		_ = unix.Unlink(path)
		return nil, fmt.Errorf("bind network namespace at %s: %w", path, err)
	}
	ns, err := setSysctls()
	if err != nil {
		_ = unbind(path)
		return nil, err
	}
	return ns, nil
}

// setSysctls applies sysctls in the calling thread's network namespace
// (/proc/sys/net is the thread's), and returns a handle of it.
func setSysctls() (*os.File, error) {
	for _, s := range sysctls {
		p := filepath.Join("/proc/sys", s.key)
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if errors.Is(err, os.ErrNotExist) && s.optional {
			continue
		}
		if err == nil {
			_, err = f.WriteString(s.value)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return nil, fmt.Errorf("set %s to %q: %w", s.key, s.value, err)
		}
	}
	ns, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open network namespace: %w", err)
	}
	return ns, nil
}

// Detach undoes Attach: it deletes the veth hostVeth (eth0 with it) and
// unbinds and removes nsPath. What is already gone is fine. A link named
// hostVeth that is not a veth is left alone, and refused. A symlink at
// nsPath is removed, never followed.
func Detach(nsPath, hostVeth string) error {
	if err := checkName("veth", hostVeth); err != nil {
		return err
	}
	l, err := netlink.LinkByName(hostVeth)
	switch {
	case errors.As(err, &netlink.LinkNotFoundError{}):
	case err != nil:
		return fmt.Errorf("detach %s: %w", hostVeth, err)
	case l.Type() != "veth":
		return fmt.Errorf("detach %s: it is a %s, not a sandbox's veth: left alone", hostVeth, l.Type())
	default:
		if err := netlink.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
			return fmt.Errorf("detach %s: delete: %w", hostVeth, err)
		}
	}
	if nsPath == "" {
		return nil // a veth whose namespace is not known (a sweep's orphan)
	}
	if err := unbind(nsPath); err != nil {
		return fmt.Errorf("detach %s: %w", hostVeth, err)
	}
	return nil
}

// unbind unmounts everything mounted at path, never following a final
// symlink, then removes it. MNT_DETACH: a process with the file open
// does not make it fail; the namespace lives on only while a process is
// in it or holds it.
func unbind(path string) error {
	for n := 0; ; n++ {
		err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not (or no longer) a mount point
		}
		if err != nil {
			return fmt.Errorf("unmount %s: %w", path, err)
		}
		if n == 16 {
			return fmt.Errorf("unmount %s: still a mount point after %d unmounts", path, n+1)
		}
	}
	if err := unix.Unlink(path); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", path, err)
	}
	return nil
}

// Release is Detach for a sandbox whose processes are all gone: it
// unbinds and removes nsPath, and the kernel, which destroys a namespace
// nothing holds, takes eth0 and its peer hostVeth with it. Namespaces
// ending together are destroyed in one batch, one RCU grace period for
// all, where deleting each veth waits one of its own: stopping many
// sandboxes at once is many times faster. Release waits, on the kernel's
// link events (no polling), until hostVeth is gone, for up to wait; then
// (something still holds the namespace) it deletes the veth itself.
func Release(nsPath, hostVeth string, wait time.Duration) error {
	if err := checkName("veth", hostVeth); err != nil {
		return err
	}
	events, err := mdnetlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return Detach(nsPath, hostVeth)
	}
	defer events.Close()
	// Listening before looking: the deletion cannot come in between.
	if err := events.JoinGroup(unix.RTNLGRP_LINK); err != nil {
		return Detach(nsPath, hostVeth)
	}
	l, err := netlink.LinkByName(hostVeth)
	switch {
	case errors.As(err, &netlink.LinkNotFoundError{}):
		return unbindNS(nsPath, hostVeth)
	case err != nil:
		return fmt.Errorf("release %s: %w", hostVeth, err)
	case l.Type() != "veth":
		return fmt.Errorf("release %s: it is a %s, not a sandbox's veth: left alone", hostVeth, l.Type())
	}
	if err := unbindNS(nsPath, hostVeth); err != nil {
		return err
	}
	if err := events.SetReadDeadline(time.Now().Add(wait)); err != nil {
		return Detach("", hostVeth)
	}
	index := uint32(l.Attrs().Index)
	for {
		msgs, err := events.Receive()
		if err != nil {
			// The deadline, or a lost event (ENOBUFS): make sure.
			return Detach("", hostVeth)
		}
		for _, m := range msgs {
			// struct ifinfomsg: family, pad, type (u16), index (s32).
			if m.Header.Type == unix.RTM_DELLINK && len(m.Data) >= 8 && binary.NativeEndian.Uint32(m.Data[4:8]) == index {
				return nil
			}
		}
	}
}

func unbindNS(nsPath, hostVeth string) error {
	if nsPath == "" {
		return nil
	}
	if err := unbind(nsPath); err != nil {
		return fmt.Errorf("release %s: %w", hostVeth, err)
	}
	return nil
}
