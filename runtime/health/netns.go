package health

import (
	"context"
	"errors"
	"net"
	"strconv"
)

// ErrNetNSUnsupported: dialling in another network namespace needs Linux.
var ErrNetNSUnsupported = errors.New("network namespaces are not supported on this system")

// NetNS is the network namespace that a check dials in.
type NetNS struct {
	// Pid is a process in the namespace: the sandbox's init, as the host
	// sees it. 0 is the host's own namespace (for services on the host's
	// network).
	Pid int
}

func (n NetNS) String() string {
	if n.Pid == 0 {
		return "host network"
	}
	return "network namespace of pid " + strconv.Itoa(n.Pid)
}

// DialContext connects to address in the namespace, as net.Dialer does
// on the host. The connection's socket belongs to the namespace; the rest
// of the process stays where it is.
func (n NetNS) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	if n.Pid == 0 {
		var d net.Dialer
		return d.DialContext(ctx, network, address)
	}
	return n.dialIn(ctx, network, address)
}
