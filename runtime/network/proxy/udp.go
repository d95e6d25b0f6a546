package proxy

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// udpProxy reads datagrams on the host port and forwards each client's
// through a session: a UDP socket of its own, connected to the target, so
// that the target's replies to it are the replies to that client, which
// go back out of the host port.
type udpProxy struct {
	cfg    Config
	ln     *net.UDPConn
	target netip.AddrPort

	mu       sync.Mutex
	closed   bool
	sessions map[netip.AddrPort]*session
	done     chan struct{} // closed by close, to end a backoff

	// dropped counts datagrams of new clients turned away, the session
	// table being full or the target's socket not to be had.
	dropped atomic.Int64

	wg sync.WaitGroup
}

// session is one client's forwarding.
type session struct {
	client netip.AddrPort
	conn   *net.UDPConn // connected to the target: it receives only the target's datagrams
	last   time.Time    // of the last datagram either way; under udpProxy.mu
}

func listenUDP(cfg Config, host, target netip.AddrPort) (*Proxy, error) {
	// No SO_REUSEADDR (nor SO_REUSEPORT): on UDP either would let another
	// socket that sets it bind the same port and take a share of the
	// datagrams.
	var lc net.ListenConfig
	c, err := lc.ListenPacket(context.Background(), network("udp", host.Addr()), host.String())
	if err != nil {
		return nil, err
	}
	ln := c.(*net.UDPConn)
	u := &udpProxy{
		cfg:      cfg,
		ln:       ln,
		target:   target,
		sessions: make(map[netip.AddrPort]*session),
		done:     make(chan struct{}),
	}
	u.wg.Add(1)
	go u.serve()
	return &Proxy{addr: unmapped(ln.LocalAddr().(*net.UDPAddr).AddrPort()), fwd: u}, nil
}

func (u *udpProxy) serve() {
	defer u.wg.Done()
	buf := make([]byte, maxDatagram)
	for failures := 0; ; {
		n, client, err := u.ln.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-u.done:
				return
			case <-time.After(backoff(failures)):
			}
			failures++
			continue
		}
		failures = 0
		s := u.session(client)
		if s == nil {
			u.dropped.Add(1)
			continue
		}
		// A failed send is a datagram lost, which UDP's users expect.
		_, _ = s.conn.Write(buf[:n])
	}
}

// session is client's session, made if it has none; nil if there is no
// room for another or the proxy is closing.
func (u *udpProxy) session(client netip.AddrPort) *session {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil
	}
	if s, ok := u.sessions[client]; ok {
		s.last = time.Now()
		return s
	}
	if len(u.sessions) >= u.cfg.MaxSessions {
		return nil
	}
	conn, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(u.target))
	if err != nil {
		return nil
	}
	s := &session{client: client, conn: conn, last: time.Now()}
	u.sessions[client] = s
	u.wg.Add(1)
	go u.reply(s)
	return s
}

// reply sends the target's datagrams on s back to its client until s has
// been idle for IdleTimeout or the proxy closes.
func (u *udpProxy) reply(s *session) {
	defer u.wg.Done()
	buf := make([]byte, maxDatagram)
	deadline := time.Now().Add(u.cfg.IdleTimeout)
	for {
		_ = s.conn.SetReadDeadline(deadline)
		n, err := s.conn.Read(buf)
		switch {
		case err == nil:
			_, _ = u.ln.WriteToUDPAddrPort(buf[:n], s.client)
			deadline = u.touch(s)
		case errors.Is(err, os.ErrDeadlineExceeded):
			// No reply for IdleTimeout, but the client may have sent
			// since: the session is idle only if neither side has.
			var idle bool
			if deadline, idle = u.idle(s); idle {
				u.end(s)
				return
			}
		case errors.Is(err, syscall.ECONNREFUSED):
			// An ICMP port unreachable for an earlier datagram: nothing
			// listens in the sandbox yet. The client may try again, and
			// the session stays for it.
		default:
			// Closed by close, or a socket that cannot go on.
			u.end(s)
			return
		}
	}
}

// touch records a datagram on s now and returns when s will be idle.
func (u *udpProxy) touch(s *session) time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	s.last = time.Now()
	return s.last.Add(u.cfg.IdleTimeout)
}

// idle says whether s has been idle for IdleTimeout and, if not, when it
// will be. An idle session leaves the table here, under the lock, so that
// the next datagram of its client makes a new one rather than going to a
// socket about to close.
func (u *udpProxy) idle(s *session) (time.Time, bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	until := s.last.Add(u.cfg.IdleTimeout)
	if time.Now().Before(until) {
		return until, false
	}
	if u.sessions[s.client] == s {
		delete(u.sessions, s.client)
	}
	return until, true
}

// end closes s and forgets it.
func (u *udpProxy) end(s *session) {
	u.mu.Lock()
	if u.sessions[s.client] == s {
		delete(u.sessions, s.client)
	}
	u.mu.Unlock()
	s.conn.Close()
}

func (u *udpProxy) close() error {
	err := u.ln.Close()
	close(u.done)
	u.mu.Lock()
	u.closed = true
	for _, s := range u.sessions {
		s.conn.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
	return err
}
