package proxy

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// control sets a TCP listening socket's options before its bind.
//
// SO_REUSEADDR, as every TCP server has it: the port can be bound again
// while connections of an earlier proxy on it linger in TIME_WAIT, yet
// never while another socket listens on it. SO_REUSEPORT is left off: it
// would let another process that sets it listen on the port too and take
// a share of the connections.
func control(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
