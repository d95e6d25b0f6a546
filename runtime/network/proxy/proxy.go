// Package proxy publishes a sandbox's port on the host by copying its
// traffic in corral's own process, as docker-proxy does for Docker.
//
// Traffic from other hosts, and to the host's other addresses, reaches the
// sandbox through nftables DNAT. Traffic to a loopback address cannot:
// DNAT leaves its source a loopback address, which the kernel will not
// route off lo unless route_localnet is set, and setting it lets hosts on
// the link reach services bound to the host's loopback (CVE-2020-8558).
// So a Proxy listens on the host address itself and forwards each TCP
// connection, or each UDP client's datagrams, to the sandbox.
//
// Its listening socket also reserves the host port for the sandbox: a port
// that another process holds is found when the proxy starts, as a
// *TakenError naming that process, rather than later as clients that
// silently reach someone else.
//
// The sandbox sees every proxied client as coming from the host, not from
// the client's own address: the price of a userland proxy, and one reason
// it carries only what DNAT cannot.
package proxy

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"syscall"
	"time"
)

// Defaults of Config.
const (
	// DefaultDialTimeout is long enough for a loaded sandbox to answer,
	// short enough that a client of a dead one is not left hanging.
	DefaultDialTimeout = 5 * time.Second
	// DefaultMaxConns bounds the fds one published TCP port can take far
	// below the daemon's limit: up to six a connection, its two sockets
	// and the pipe of each direction's splice.
	DefaultMaxConns = 1024
	// DefaultMaxSessions bounds the fds and 64 KiB buffers one published
	// UDP port can take.
	DefaultMaxSessions = 1024
	// DefaultIdleTimeout is how long a UDP session outlives its last
	// datagram, as conntrack's generic UDP timeout does.
	DefaultIdleTimeout = 30 * time.Second
)

// maxDatagram holds any UDP payload whole (at most 65507 bytes over IPv4,
// 65527 over IPv6): a datagram cut short would reach the other side as a
// different, valid one.
const maxDatagram = 64 << 10

// ErrProtocol: the protocol is neither "tcp" nor "udp".
var ErrProtocol = errors.New("protocol is not tcp or udp")

// TakenError is the error of Listen when the host port is already bound.
type TakenError struct {
	Proto string // "tcp" or "udp"
	Addr  string // the host address and port asked for, like "0.0.0.0:8080"
	// Owner is the process that holds the port, like "pid 1234 (nginx)",
	// or "" when it could not be found.
	Owner string

	err error // the bind's own error (EADDRINUSE)
}

func (e *TakenError) Error() string {
	where := e.Addr + "/" + e.Proto
	if ap, err := netip.ParseAddrPort(e.Addr); err == nil {
		where = fmt.Sprintf("port %d/%s on %s", ap.Port(), e.Proto, ap.Addr())
	}
	if e.Owner == "" {
		return where + " is taken"
	}
	return where + " is taken by " + e.Owner
}

// Unwrap is the bind's error, so errors.Is(err, syscall.EADDRINUSE) holds.
func (e *TakenError) Unwrap() error { return e.err }

// Config tunes a Proxy. Its zero value is the defaults; a zero field is
// that field's default.
type Config struct {
	// DialTimeout bounds each TCP connect to the target. A client whose
	// connect fails is reset at once.
	DialTimeout time.Duration
	// MaxConns bounds the TCP connections forwarded at once. A client
	// beyond it is reset as soon as it is accepted.
	MaxConns int
	// MaxSessions bounds the UDP clients forwarded at once. Datagrams
	// from a new client beyond it are dropped.
	MaxSessions int
	// IdleTimeout ends a UDP session that has carried no datagram either
	// way for this long.
	IdleTimeout time.Duration
}

func (c Config) withDefaults() Config {
	if c.DialTimeout <= 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.MaxConns <= 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	return c
}

// Proxy forwards one host address and port to one target until Close.
type Proxy struct {
	addr netip.AddrPort
	fwd  forwarder

	once sync.Once
	err  error
}

// forwarder is the TCP or the UDP half of a Proxy.
type forwarder interface {
	// close stops the forwarder and returns when all its goroutines have.
	close() error
}

// Listen is Config{}.Listen: forwarding with the defaults.
func Listen(proto string, host, target netip.AddrPort) (*Proxy, error) {
	return Config{}.Listen(proto, host, target)
}

// Listen binds proto ("tcp" or "udp") on host and forwards what arrives
// there to target until Close. Port 0 in host picks a free port (see
// Addr).
//
// A wildcard host address binds the wildcard, so that the port is the
// sandbox's on every address of that family: 0.0.0.0 reserves it for
// IPv4, :: for IPv6 only (the socket is v6only), so that a port published
// on both, as "-p 8080" is, takes two proxies that do not collide.
//
// If the port is taken, the error is a *TakenError.
func (c Config) Listen(proto string, host, target netip.AddrPort) (*Proxy, error) {
	if !host.IsValid() || !target.IsValid() {
		return nil, fmt.Errorf("proxy %s %s to %s: invalid address", proto, host, target)
	}
	if target.Port() == 0 || target.Addr().IsUnspecified() {
		return nil, fmt.Errorf("proxy %s %s to %s: the target needs an address and a port", proto, host, target)
	}
	// 4-in-6 addresses are the IPv4 addresses they carry: bind the IPv4
	// socket, which is the one that reserves that port.
	host, target = unmapped(host), unmapped(target)
	c = c.withDefaults()

	var (
		p   *Proxy
		err error
	)
	switch proto {
	case "tcp":
		p, err = listenTCP(c, host, target)
	case "udp":
		p, err = listenUDP(c, host, target)
	default:
		return nil, fmt.Errorf("proxy %q %s to %s: %w", proto, host, target, ErrProtocol)
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, &TakenError{Proto: proto, Addr: host.String(), Owner: Owner(proto, host), err: err}
	}
	if err != nil {
		return nil, fmt.Errorf("proxy %s %s to %s: %w", proto, host, target, err)
	}
	return p, nil
}

// Addr is where p listens, with the port the kernel chose if 0 was asked.
func (p *Proxy) Addr() netip.AddrPort { return p.addr }

// Close stops accepting, closes every forwarded connection and UDP
// session, and returns when all of p's goroutines have returned; the host
// port is free again. Later calls return the first call's result.
func (p *Proxy) Close() error {
	p.once.Do(func() { p.err = p.fwd.close() })
	return p.err
}

// network is the Go network for addr's family: "tcp4" or "tcp6" (and so
// for udp). An IPv6 listener is then v6only, and an IPv4 one takes no
// IPv6 traffic, so each address family is published on its own.
func network(proto string, addr netip.Addr) string {
	if addr.Is4() {
		return proto + "4"
	}
	return proto + "6"
}

// unmapped is addr with a 4-in-6 address as the IPv4 address it carries.
func unmapped(addr netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(addr.Addr().Unmap(), addr.Port())
}

// backoff is the wait after the n-th failure in a row of an accept or a
// read on a listening socket: such failures (out of fds, out of buffers)
// pass as other connections end, and spinning on them would only burn
// the CPU those need.
func backoff(n int) time.Duration {
	d := 5 * time.Millisecond << min(n, 8)
	return min(d, time.Second)
}
