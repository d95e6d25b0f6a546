package proxy

import (
	"bytes"
	"crypto/rand"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestTCPCarriesMegabytesBothWaysAndHalfClose: megabytes go through both
// ways at once; the client's CloseWrite reaches the target as an EOF, and
// what the target sends after it still reaches the client, followed by
// the target's own EOF.
func TestTCPCarriesMegabytesBothWaysAndHalfClose(t *testing.T) {
	const size = 4 << 20
	trailer := []byte("-- all read, bye")
	sawEOF := make(chan int64, 1)
	target := tcpServer(t, "127.0.0.2:0", func(c *net.TCPConn) {
		n, err := io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c})
		if err != nil {
			return
		}
		sawEOF <- n
		if _, err := c.Write(trailer); err == nil {
			c.CloseWrite()
		}
	})
	p := listen(t, Config{}, "tcp", "127.0.0.1:0", target)

	payload := make([]byte, size)
	rand.Read(payload)
	c, err := net.Dial("tcp", p.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	wrote := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		wrote <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("read back: %v", err)
	}
	if err := <-wrote; err != nil {
		t.Fatalf("write: %v", err)
	}
	select {
	case n := <-sawEOF:
		if n != size {
			t.Errorf("the target read %d bytes before its EOF, want %d", n, size)
		}
	default:
		t.Error("the client had the target's EOF, yet the target never saw the client's")
	}
	want := append(payload, trailer...)
	if !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes back, want the %d sent and the trailer (equal: %v)", len(got), len(want), bytes.Equal(got[:min(len(got), size)], payload[:min(len(got), size)]))
	}
}

// TestTCPTargetDownResetsClient: with nothing listening at the target,
// the client's connection is ended at once, not left open.
func TestTCPTargetDownResetsClient(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	target := l.Addr().(*net.TCPAddr).AddrPort()
	l.Close()
	p := listen(t, Config{}, "tcp", "127.0.0.1:0", target)
	refused(t, p.Addr())
}

// TestTCPDialTimeoutResetsClient: a target that never answers the
// connect (its accept queue is full, so its SYNs are dropped) costs the
// client DialTimeout, then a reset; the client does not hang.
func TestTCPDialTimeoutResetsClient(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	// A backlog of 0 has room for one connection, never accepted here.
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	target := netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), uint16(sa.(*unix.SockaddrInet4).Port))
	filler, err := net.Dial("tcp", target.String())
	if err != nil {
		t.Fatal(err)
	}
	defer filler.Close()
	// The queue is full once the filler is in it: the listener is then
	// readable.
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if n, err := unix.Poll(pfd, 5000); err != nil || n != 1 {
		t.Fatalf("the filler connection never reached the accept queue: %d, %v", n, err)
	}

	const timeout = 200 * time.Millisecond
	p := listen(t, Config{DialTimeout: timeout}, "tcp", "127.0.0.1:0", target)
	start := time.Now()
	refused(t, p.Addr())
	t.Logf("the client was reset after %v (DialTimeout %v)", time.Since(start).Round(time.Millisecond), timeout)
}

// TestTCPConnectionCap: with MaxConns connections forwarded, the next
// client is reset at once; when one of them ends, a client is served
// again.
func TestTCPConnectionCap(t *testing.T) {
	target := tcpServer(t, "127.0.0.2:0", echo)
	p := listen(t, Config{MaxConns: 2}, "tcp", "127.0.0.1:0", target)

	var held []net.Conn
	for i := range 2 {
		c, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A round trip: the connection has its slot and reaches the target.
		if err := roundTrip(c, "hello"); err != nil {
			t.Fatalf("connection %d of 2: %v", i+1, err)
		}
		held = append(held, c)
	}

	// Over the cap: reset, even though the target would take it.
	refused(t, p.Addr())

	held[0].Close()
	// The slot comes back once the proxy has seen both sides of the
	// closed connection end: try until a connection is served.
	eventually(t, func() (bool, string) {
		c, err := net.Dial("tcp", p.Addr().String())
		if err != nil {
			return false, err.Error()
		}
		defer c.Close()
		if err := roundTrip(c, "again"); err != nil {
			return false, "no connection served after one of the two ended: " + err.Error()
		}
		return true, ""
	})
	if err := roundTrip(held[1], "still"); err != nil {
		t.Fatalf("the connection that stayed: %v", err)
	}
}
