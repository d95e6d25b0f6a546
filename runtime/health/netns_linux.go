package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// dialIn dials from inside the namespace. A socket belongs to the network
// namespace of the thread that creates it, for its whole life: so one
// thread enters the namespace, creates the socket and comes back, and the
// connect happens from there on, in the process's own namespace like any
// other I/O.
//
// The switch is done on a goroutine of its own, locked to its thread: if
// the thread cannot come back, the goroutine ends still locked, and the
// runtime then ends the thread instead of reusing it.
func (n NetNS) dialIn(ctx context.Context, network, address string) (net.Conn, error) {
	// One socket, one namespace: a name with several addresses would
	// have its later attempts made from the host's namespace.
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	if _, err := netip.ParseAddr(host); err != nil {
		return nil, fmt.Errorf("dial %s in %s: give an IP address, not a name", address, n)
	}
	target, err := os.Open("/proc/" + strconv.Itoa(n.Pid) + "/ns/net")
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", n, unwrapPath(err))
	}
	defer target.Close()
	type result struct {
		conn net.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		conn, err := n.dialLocked(ctx, int(target.Fd()), network, address)
		done <- result{conn, err}
	}()
	r := <-done
	return r.conn, r.err
}

// dialLocked is dialIn's goroutine.
func (n NetNS) dialLocked(ctx context.Context, target int, network, address string) (net.Conn, error) {
	runtime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("open own network namespace: %w", err)
	}
	defer unix.Close(self)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("enter %s: %w", n, err)
	}
	inside := true
	leave := func() error {
		if !inside {
			return nil
		}
		if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
			// Stay locked: this thread must not run anything else.
			return fmt.Errorf("return from %s: %w", n, err)
		}
		inside = false
		runtime.UnlockOSThread()
		return nil
	}
	d := net.Dialer{
		// Called once the socket exists, before the connect.
		ControlContext: func(context.Context, string, string, syscall.RawConn) error { return leave() },
	}
	conn, err := d.DialContext(ctx, network, address)
	// Still inside if no socket was made, or if coming back failed.
	if lerr := leave(); lerr != nil {
		if conn != nil {
			conn.Close()
		}
		return nil, lerr
	}
	return conn, err
}

// unwrapPath drops the *PathError's repetition of the path.
func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
