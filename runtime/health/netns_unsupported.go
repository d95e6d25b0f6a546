//go:build !linux

package health

import (
	"context"
	"net"
)

func (n NetNS) dialIn(context.Context, string, string) (net.Conn, error) {
	return nil, ErrNetNSUnsupported
}
