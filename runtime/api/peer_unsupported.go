//go:build !linux

package api

import (
	"errors"
	"net"
)

// peerOf fails where SO_PEERCRED is missing: every request is refused.
func peerOf(net.Conn) (peer, error) {
	return peer{}, errors.New("peer credentials are not supported on this system")
}
