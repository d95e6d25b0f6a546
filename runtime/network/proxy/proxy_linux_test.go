package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// holdEnv makes the test binary a process that holds a port: it binds
// 127.0.0.1:0 for the protocol the variable names, prints its pid and
// address, and keeps them until its stdin closes.
const holdEnv = "CORRAL_PROXY_TEST_HOLD"

func TestMain(m *testing.M) {
	if proto := os.Getenv(holdEnv); proto != "" {
		if err := hold(proto); err != nil {
			fmt.Fprintln(os.Stderr, "hold:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func hold(proto string) error {
	var addr net.Addr
	switch proto {
	case "tcp":
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer l.Close()
		addr = l.Addr()
	case "udp":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			return err
		}
		defer c.Close()
		addr = c.LocalAddr()
	default:
		return fmt.Errorf("protocol %q", proto)
	}
	fmt.Printf("%d %s\n", os.Getpid(), addr)
	_, err := io.Copy(io.Discard, os.Stdin)
	return err
}

// holdInChild starts the test binary as another process holding a port
// for proto on 127.0.0.1, and returns its pid and address. It ends with
// the test.
func holdInChild(t *testing.T, proto string) (int, netip.AddrPort) {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	// A race-enabled binary sleeps a second on its way out, by default.
	cmd.Env = append(os.Environ(), holdEnv+"="+proto, "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("port holder: %v", err)
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("port holder: %v", err)
	}
	var pid int
	var addr string
	if _, err := fmt.Sscan(line, &pid, &addr); err != nil {
		t.Fatalf("port holder said %q: %v", line, err)
	}
	return pid, netip.MustParseAddrPort(addr)
}

// comm is the command name of pid, as the kernel has it.
func comm(t *testing.T, pid int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// listen is Listen that fails the test on an error, and closes the proxy
// when the test ends.
func listen(t *testing.T, cfg Config, proto, host string, target netip.AddrPort) *Proxy {
	t.Helper()
	p, err := cfg.Listen(proto, netip.MustParseAddrPort(host), target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// tcpServer serves handle on each connection to a listener on addr, as a
// sandbox would. It stops, and waits for its handlers, when the test
// ends; handlers should return once their connection is closed.
func tcpServer(t *testing.T, addr string, handle func(*net.TCPConn)) netip.AddrPort {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns = map[net.Conn]bool{}
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return l.Addr().(*net.TCPAddr).AddrPort()
}

// echo sends back what it reads, then passes the peer's EOF on.
func echo(c *net.TCPConn) {
	// Plain reads and writes: a splice from a socket to itself is not
	// what is under test.
	if _, err := io.Copy(struct{ io.Writer }{c}, struct{ io.Reader }{c}); err == nil {
		c.CloseWrite()
	}
}

// udpServer answers each datagram to a socket on addr with reply's
// answer, and records the sources it has seen. It stops when the test
// ends.
func udpServer(t *testing.T, addr string, reply func([]byte) []byte) (netip.AddrPort, func() []netip.AddrPort) {
	t.Helper()
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	conn := c.(*net.UDPConn)
	var (
		mu      sync.Mutex
		sources []netip.AddrPort
		done    = make(chan struct{})
	)
	go func() {
		defer close(done)
		buf := make([]byte, maxDatagram)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			mu.Lock()
			if !containsAddr(sources, from) {
				sources = append(sources, from)
			}
			mu.Unlock()
			conn.WriteToUDPAddrPort(reply(buf[:n]), from)
		}
	}()
	t.Cleanup(func() {
		conn.Close()
		<-done
	})
	seen := func() []netip.AddrPort {
		mu.Lock()
		defer mu.Unlock()
		return append([]netip.AddrPort(nil), sources...)
	}
	return conn.LocalAddr().(*net.UDPAddr).AddrPort(), seen
}

func containsAddr(s []netip.AddrPort, a netip.AddrPort) bool {
	for _, x := range s {
		if x == a {
			return true
		}
	}
	return false
}

// roundTrip sends msg on c and reads as many bytes back.
func roundTrip(c net.Conn, msg string) error {
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	if _, err := c.Write([]byte(msg)); err != nil {
		return err
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != msg {
		return fmt.Errorf("sent %q, got %q back", msg, buf)
	}
	return nil
}

// readEnds reads c until it fails, and fails the test unless that
// happens, by an EOF or a reset, within a few seconds.
func readEnds(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("the client is left hanging: %v", err)
	}
}

// refused dials addr and fails the test unless the connection is ended,
// by an EOF or a reset, within a few seconds. The reset may come before
// the dial has returned, and then is the dial's error.
func refused(t *testing.T, addr netip.AddrPort) {
	t.Helper()
	c, err := net.Dial("tcp", addr.String())
	if errors.Is(err, syscall.ECONNRESET) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	readEnds(t, c)
}

// eventually polls cond until it holds, and fails the test with what
// says why not if it does not within a few seconds. Only for what has no
// event to wait on: a socket or goroutine going away.
func eventually(t *testing.T, cond func() (ok bool, why string)) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(why)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countFDs is the number of fds this process has open.
func countFDs(t *testing.T) int {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(fds)
}

// proxyGoroutines are the stacks of the goroutines running this
// package's own (non-test) code.
func proxyGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		for _, line := range strings.Split(g, "\n") {
			if strings.Contains(line, "/runtime/network/proxy/") && !strings.Contains(line, "_test.go:") {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

// noLeaks waits until no goroutine runs the package's code and the
// process has no more fds than before.
func noLeaks(t *testing.T, fdsBefore int) {
	t.Helper()
	eventually(t, func() (bool, string) {
		if gs := proxyGoroutines(); len(gs) > 0 {
			return false, fmt.Sprintf("%d goroutines left:\n%s", len(gs), strings.Join(gs, "\n\n"))
		}
		// io.Copy's splices keep pipes in a sync.Pool, closed by a
		// finalizer once a GC or two has emptied the pool.
		runtime.GC()
		if n := countFDs(t); n > fdsBefore {
			return false, fmt.Sprintf("%d fds open, %d before", n, fdsBefore)
		}
		return true, ""
	})
}
