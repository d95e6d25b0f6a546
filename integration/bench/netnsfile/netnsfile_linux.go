// Package netnsfile makes the network namespaces the bench and the
// integration tests run corral and containerd in: a new namespace, bound
// at a file, lo up. Neither ever runs what makes links or rules in the
// machine's own namespace.
package netnsfile

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Make makes a network namespace bound at path, a new file, with lo up.
// On error nothing of it is left.
func Make(path string) (err error) {
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return fmt.Errorf("make network namespace file: %w", err)
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, now in the new namespace, ends
		// with the goroutine instead of going back to the pool.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return fmt.Errorf("make network namespace: %w", err)
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, Remove(path))
		}
	}()
	h, err := Handle(path)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("namespace's lo: %w", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set the namespace's lo up: %w", err)
	}
	return nil
}

// Handle is a netlink handle (route sockets) in the namespace at path;
// the caller closes it.
func Handle(path string) (*netlink.Handle, error) {
	ns, err := netns.GetFromPath(path)
	if err != nil {
		return nil, fmt.Errorf("open network namespace %s: %w", path, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink in %s: %w", path, err)
	}
	return h, nil
}

// Remove unbinds and removes the namespace's file: the namespace ends
// once nothing runs in it.
func Remove(path string) error {
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unbind network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}
