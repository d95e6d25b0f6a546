package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"
)

// tcpProxy accepts on the host port and pipes each connection to a
// connection of its own to the target.
type tcpProxy struct {
	cfg    Config
	ln     *net.TCPListener
	target netip.AddrPort

	// ctx ends with close, so that dials in flight give up at once
	// instead of after DialTimeout.
	ctx    context.Context
	cancel context.CancelFunc
	// slots holds a token for each connection being forwarded.
	slots chan struct{}

	mu     sync.Mutex
	closed bool
	conns  map[*net.TCPConn]struct{} // every open socket, client and target sides

	wg sync.WaitGroup
}

func listenTCP(cfg Config, host, target netip.AddrPort) (*Proxy, error) {
	lc := net.ListenConfig{Control: control}
	l, err := lc.Listen(context.Background(), network("tcp", host.Addr()), host.String())
	if err != nil {
		return nil, err
	}
	ln := l.(*net.TCPListener)
	ctx, cancel := context.WithCancel(context.Background())
	t := &tcpProxy{
		cfg:    cfg,
		ln:     ln,
		target: target,
		ctx:    ctx,
		cancel: cancel,
		slots:  make(chan struct{}, cfg.MaxConns),
		conns:  make(map[*net.TCPConn]struct{}),
	}
	t.wg.Add(1)
	go t.serve()
	return &Proxy{addr: unmapped(ln.Addr().(*net.TCPAddr).AddrPort()), fwd: t}, nil
}

func (t *tcpProxy) serve() {
	defer t.wg.Done()
	for failures := 0; ; {
		c, err := t.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-t.ctx.Done():
				return
			case <-time.After(backoff(failures)):
			}
			failures++
			continue
		}
		failures = 0
		select {
		case t.slots <- struct{}{}:
		default:
			// Full. A reset tells the client at once, where leaving it in
			// the backlog would look like a slow sandbox to it, and a
			// flood would then fill the backlog for everyone else too.
			reset(c)
			continue
		}
		if !t.track(c) {
			c.Close()
			<-t.slots
			return
		}
		t.wg.Add(1)
		go t.forward(c)
	}
}

// forward dials the target for client and copies both ways until both
// sides are done.
func (t *tcpProxy) forward(client *net.TCPConn) {
	defer t.wg.Done()
	defer func() { <-t.slots }()
	defer t.release(client)

	d := net.Dialer{Timeout: t.cfg.DialTimeout}
	c, err := d.DialContext(t.ctx, "tcp", t.target.String())
	if err != nil {
		// A reset, not a FIN: the client must not take the sandbox's
		// absence for an empty answer.
		_ = client.SetLinger(0)
		return
	}
	target := c.(*net.TCPConn)
	if !t.track(target) {
		target.Close()
		return
	}
	defer t.release(target)

	// Each direction ends on its own: an EOF is passed on as a half-close
	// and the other direction goes on, as the two ends of a TCP
	// connection may. An error in either (a reset, a write to a peer
	// gone) resets both, so that the other direction, which may be
	// waiting on a peer that will never speak, ends too.
	abort := func() {
		reset(client)
		reset(target)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := pipe(client, target); err != nil {
			abort()
		}
	}()
	if err := pipe(target, client); err != nil {
		abort()
	}
	<-done
}

// pipe copies src to dst until src's EOF, which it passes on to dst as a
// half-close.
func pipe(dst, src *net.TCPConn) error {
	// TCPConn to TCPConn: io.Copy splices in the kernel.
	if _, err := io.Copy(dst, src); err != nil {
		return err
	}
	return dst.CloseWrite()
}

// reset closes c with an RST rather than a FIN.
func reset(c *net.TCPConn) {
	_ = c.SetLinger(0)
	c.Close()
}

// track records c so that close can reach it, unless the proxy is closing.
func (t *tcpProxy) track(c *net.TCPConn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// release closes c and forgets it.
func (t *tcpProxy) release(c *net.TCPConn) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
	c.Close()
}

func (t *tcpProxy) close() error {
	err := t.ln.Close()
	t.cancel()
	t.mu.Lock()
	t.closed = true
	for c := range t.conns {
		// A connection cut short is reset: a FIN would tell a client
		// that reads to EOF that it has the whole answer.
		reset(c)
	}
	t.mu.Unlock()
	t.wg.Wait()
	return err
}
