package bridge

import (
	"errors"
	"fmt"
	"github.com/corral-dev/corral/integration/bench/netnsfile"
	"net"
	"os/exec"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// The namespace's network: TEST-NET addresses only (RFC 5737), so that
// nothing the bench does could reach a real host even if it leaked.
const (
	bridgeName = "crlbench0"
	subnet     = "198.51.100.0/24"
	// hostAddr is the namespace's own non-loopback address, on a link
	// of its own: a published port reached at it goes through corral's
	// DNAT.
	hostAddr   = "203.0.113.1"
	hostPrefix = hostAddr + "/24"
	// dns is the resolver the sandboxes are told of; none of them asks.
	dns = "203.0.113.53"
	// uplink holds hostAddr: a veth (the kernel may have no dummy
	// links), whose peer, uplinkPeer, is in the namespace too and has no
	// address.
	uplink     = "bench0"
	uplinkPeer = "bench1"
)

// world is a network namespace bound at a file, where corral runs and the
// bench's clients connect: lo up, and uplink holding hostAddr.
type world struct {
	path    string
	nsenter string
}

// newWorld makes the namespace bound at path.
func newWorld(path string) (_ *world, err error) {
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, fmt.Errorf("the bridge part runs corral with nsenter: %w", err)
	}
	if err := netnsfile.Make(path); err != nil {
		return nil, err
	}
	w := &world{path: path, nsenter: nsenter}
	defer func() {
		if err != nil {
			err = errors.Join(err, w.close())
		}
	}()
	h, err := w.handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: uplink}, PeerName: uplinkPeer}
	if err := h.LinkAdd(veth); err != nil {
		return nil, fmt.Errorf("add %s in the namespace: %w", uplink, err)
	}
	addr, err := netlink.ParseAddr(hostPrefix)
	if err != nil {
		return nil, err
	}
	if err := h.AddrAdd(veth, addr); err != nil {
		return nil, fmt.Errorf("address %s: %w", hostPrefix, err)
	}
	for _, name := range []string{uplinkPeer, uplink} {
		l, err := h.LinkByName(name)
		if err != nil {
			return nil, err
		}
		if err := h.LinkSetUp(l); err != nil {
			return nil, fmt.Errorf("set %s up: %w", name, err)
		}
	}
	return w, nil
}

// handle is a netlink handle in the namespace; the caller closes it.
func (w *world) handle() (*netlink.Handle, error) { return netnsfile.Handle(w.path) }

// wrap is the command that runs the rest of its arguments in the
// namespace; it execs them, so their PID is its.
func (w *world) wrap() []string {
	return []string{w.nsenter, "--net=" + w.path, "--"}
}

// dial connects to addr from inside the namespace. A socket stays in the
// namespace it was made in: the connection is then used from any thread.
func (w *world) dial(addr string) (*net.TCPConn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: see newWorld
		ns, err := netns.GetFromPath(w.path)
		if err != nil {
			res <- result{err: err}
			return
		}
		defer ns.Close()
		if err := netns.Set(ns); err != nil {
			res <- result{err: err}
			return
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		res <- result{c, err}
	}()
	r := <-res
	if r.err != nil {
		return nil, r.err
	}
	return r.c.(*net.TCPConn), nil
}

// veths lists corral's veths in the namespace (all but uplink's pair):
// there must be none once its sandboxes are gone.
func (w *world) veths() ([]string, error) {
	h, err := w.handle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("list the namespace's links: %w", err)
	}
	var names []string
	for _, l := range links {
		if name := l.Attrs().Name; l.Type() == "veth" && name != uplink && name != uplinkPeer {
			names = append(names, l.Attrs().Name)
		}
	}
	return names, nil
}

// close unbinds the namespace and removes its file: it goes, with all
// that corral made in it, once the last process in it has exited.
func (w *world) close() error { return netnsfile.Remove(w.path) }
