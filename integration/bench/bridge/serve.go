package bridge

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ServeEnv names the address the bench's own binary serves on, instead of
// benchmarking, when it is set in its environment: the same program is
// the server in a sandbox behind a published port and on the host
// namespace's loopback, so that the two paths differ in the network
// alone.
const ServeEnv = "CORRAL_BENCH_SERVE"

// A client's first byte says what the connection is for.
const (
	// modeSink: the server reads everything to EOF, then answers the
	// count of bytes it read (8 bytes, big-endian) and closes.
	modeSink = 's'
	// modeEcho: the server writes back each byte it reads, one at a
	// time, until EOF.
	modeEcho = 'e'
)

// sinkBuffer is the size of the sink's and the source's reads and writes:
// large, so that the program's own per-call cost is small beside the
// network's.
const sinkBuffer = 256 << 10

// ServeMain serves on addr until SIGTERM or SIGINT, and returns the
// process's exit status: 0 on a signal, so that the supervisor of the
// server (corral run, the bench's child group) sees a clean stop.
func ServeMain(addr string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "corral-bench serve:", err)
		return 1
	}
	if err := Serve(ctx, ln); err != nil {
		fmt.Fprintln(os.Stderr, "corral-bench serve:", err)
		return 1
	}
	return 0
}

// Serve accepts connections on ln until ctx ends, then closes it.
func Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			_ = serveConn(c)
		}()
	}
}

func serveConn(c net.Conn) error {
	mode := make([]byte, 1)
	if _, err := io.ReadFull(c, mode); err != nil {
		return err
	}
	switch mode[0] {
	case modeSink:
		buf := make([]byte, sinkBuffer)
		var n uint64
		for {
			k, err := c.Read(buf)
			n += uint64(k)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				return err
			}
		}
		_, err := c.Write(binary.BigEndian.AppendUint64(nil, n))
		return err
	case modeEcho:
		b := make([]byte, 1)
		for {
			if _, err := io.ReadFull(c, b); err != nil {
				if errors.Is(err, io.EOF) {
					return nil
				}
				return err
			}
			if _, err := c.Write(b); err != nil {
				return err
			}
		}
	}
	return fmt.Errorf("unknown mode %q", mode[0])
}

// sendFor writes to c's sink for about d, then half-closes c and waits for
// the sink's count, which must be what it sent. It returns the bytes sent
// and the time from the first write to the count's arrival: all of them
// had been read by the server by then.
func sendFor(c *net.TCPConn, d time.Duration) (int64, time.Duration, error) {
	buf := make([]byte, sinkBuffer)
	if _, err := c.Write([]byte{modeSink}); err != nil {
		return 0, 0, err
	}
	var sent int64
	t0 := time.Now()
	for end := t0.Add(d); time.Now().Before(end); {
		k, err := c.Write(buf)
		sent += int64(k)
		if err != nil {
			return sent, 0, fmt.Errorf("send: %w", err)
		}
	}
	if err := c.CloseWrite(); err != nil {
		return sent, 0, err
	}
	var count [8]byte
	if _, err := io.ReadFull(c, count[:]); err != nil {
		return sent, 0, fmt.Errorf("read the sink's count: %w", err)
	}
	took := time.Since(t0)
	if got := int64(binary.BigEndian.Uint64(count[:])); got != sent {
		return sent, took, fmt.Errorf("sent %d bytes, the sink read %d", sent, got)
	}
	return sent, took, nil
}

// pingPong sends n one-byte requests on c, each after the previous
// answer, and returns each round trip's time.
func pingPong(c net.Conn, n int) ([]time.Duration, error) {
	if _, err := c.Write([]byte{modeEcho}); err != nil {
		return nil, err
	}
	rtts := make([]time.Duration, 0, n)
	b := []byte{'x'}
	for range n {
		t0 := time.Now()
		if _, err := c.Write(b); err != nil {
			return rtts, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return rtts, fmt.Errorf("read the echo: %w", err)
		}
		rtts = append(rtts, time.Since(t0))
	}
	return rtts, nil
}
