package proxy

import (
	"bytes"
	"fmt"
	"net"
	"testing"
	"time"
)

// udpConn is a client socket connected to p.
func udpConn(t *testing.T, p *Proxy) *net.UDPConn {
	t.Helper()
	c, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(p.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// exchange sends msg on c and returns the datagram that comes back.
func exchange(t *testing.T, c *net.UDPConn, msg []byte) []byte {
	t.Helper()
	if _, err := c.Write(msg); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, maxDatagram)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("no reply to %d bytes: %v", len(msg), err)
	}
	return buf[:n]
}

// sessions is the number of p's live UDP sessions.
func sessions(p *Proxy) int {
	u := p.fwd.(*udpProxy)
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.sessions)
}

func upper(b []byte) []byte { return bytes.ToUpper(b) }

// TestUDPClientsGetTheirOwnReplies: two clients, each with a session of
// its own (the target sees two sources), each gets the reply to its own
// datagrams, and a datagram near the largest arrives whole both ways.
func TestUDPClientsGetTheirOwnReplies(t *testing.T) {
	target, seen := udpServer(t, "127.0.0.2:0", upper)
	p := listen(t, Config{}, "udp", "127.0.0.1:0", target)
	a, b := udpConn(t, p), udpConn(t, p)

	for i := range 3 {
		for _, c := range []struct {
			conn *net.UDPConn
			name string
		}{{a, "a"}, {b, "b"}} {
			msg := fmt.Sprintf("from %s, %d", c.name, i)
			if got := string(exchange(t, c.conn, []byte(msg))); got != string(upper([]byte(msg))) {
				t.Fatalf("client %s sent %q, got %q", c.name, msg, got)
			}
		}
	}
	if got := seen(); len(got) != 2 {
		t.Errorf("the target saw sources %v, want one per client", got)
	}
	if n := sessions(p); n != 2 {
		t.Errorf("%d sessions, want 2", n)
	}

	big := bytes.Repeat([]byte("datagram"), 65000/8)
	if got := exchange(t, a, big); !bytes.Equal(got, upper(big)) {
		t.Fatalf("a %d-byte datagram came back as %d bytes", len(big), len(got))
	}
}

// TestUDPIdleSessionExpires: a session with no datagram for IdleTimeout
// ends and closes its socket; the client's next datagram makes a new one.
func TestUDPIdleSessionExpires(t *testing.T) {
	target, seen := udpServer(t, "127.0.0.2:0", upper)
	fds := countFDs(t)
	p := listen(t, Config{IdleTimeout: 50 * time.Millisecond}, "udp", "127.0.0.1:0", target)
	c := udpConn(t, p)
	fds += 2 // the proxy's listening socket and the client's

	if got := string(exchange(t, c, []byte("one"))); got != "ONE" {
		t.Fatalf("got %q", got)
	}
	eventually(t, func() (bool, string) {
		return sessions(p) == 0, fmt.Sprintf("%d sessions after the idle timeout", sessions(p))
	})
	eventually(t, func() (bool, string) {
		n := countFDs(t)
		return n <= fds, fmt.Sprintf("%d fds, %d without the session: its socket is left open", n, fds)
	})

	if got := string(exchange(t, c, []byte("two"))); got != "TWO" {
		t.Fatalf("after expiry: got %q", got)
	}
	if n := sessions(p); n != 1 {
		t.Errorf("%d sessions after the client came back, want 1", n)
	}
	t.Logf("target saw %v", seen())
}

// TestUDPSessionCap: with MaxSessions clients in session, a new client's
// datagrams are dropped, not forwarded; the clients in session go on.
func TestUDPSessionCap(t *testing.T) {
	target, seen := udpServer(t, "127.0.0.2:0", upper)
	p := listen(t, Config{MaxSessions: 1}, "udp", "127.0.0.1:0", target)
	a, b := udpConn(t, p), udpConn(t, p)

	if got := string(exchange(t, a, []byte("a"))); got != "A" {
		t.Fatalf("got %q", got)
	}
	if _, err := b.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	u := p.fwd.(*udpProxy)
	eventually(t, func() (bool, string) {
		return u.dropped.Load() == 1, "the datagram of a client over the cap was not dropped"
	})
	if got := seen(); len(got) != 1 {
		t.Errorf("the target saw sources %v, want only the first client's", got)
	}
	if got := string(exchange(t, a, []byte("a again"))); got != "A AGAIN" {
		t.Fatalf("got %q", got)
	}
}
