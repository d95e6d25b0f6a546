package bridge

import (
	"context"
	"net"
	"testing"
	"time"
)

// The sink counts what it was sent and the echo answers every byte, over
// real loopback connections.
func TestServe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln) }()
	dial := func() *net.TCPConn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		return c.(*net.TCPConn)
	}
	c := dial()
	sent, took, err := sendFor(c, 20*time.Millisecond)
	c.Close()
	if err != nil || sent < sinkBuffer || took < 20*time.Millisecond {
		t.Errorf("sink: sent %d in %s: %v", sent, took, err)
	}
	c = dial()
	rtts, err := pingPong(c, 100)
	c.Close()
	if err != nil || len(rtts) != 100 {
		t.Errorf("echo: %d round trips: %v", len(rtts), err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after its context ended: %v", err)
	}
}
