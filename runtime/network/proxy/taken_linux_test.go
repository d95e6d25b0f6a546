package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
)

// unused is a target no test reaches: Listen fails before forwarding.
var unused = netip.MustParseAddrPort("127.0.0.1:9")

// taken asserts that err is a *TakenError for proto and addr, and returns it.
func taken(t *testing.T, err error, proto string, addr netip.AddrPort) *TakenError {
	t.Helper()
	var te *TakenError
	if !errors.As(err, &te) {
		t.Fatalf("Listen %s %s: %v, want a *TakenError", proto, addr, err)
	}
	if te.Proto != proto || te.Addr != addr.String() {
		t.Errorf("TakenError for %s %s, want %s %s", te.Proto, te.Addr, proto, addr)
	}
	if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("%v does not unwrap to EADDRINUSE", err)
	}
	return te
}

// TestListenTakenByAnotherProcess: a port another process holds is
// refused, with that process's pid and command in the error; Owner also
// finds it for the wildcard, which overlaps its address.
func TestListenTakenByAnotherProcess(t *testing.T) {
	for _, proto := range []string{"tcp", "udp"} {
		t.Run(proto, func(t *testing.T) {
			pid, addr := holdInChild(t, proto)
			p, err := Listen(proto, addr, unused)
			if err == nil {
				p.Close()
			}
			te := taken(t, err, proto, addr)
			owner := fmt.Sprintf("pid %d (%s)", pid, comm(t, pid))
			if te.Owner != owner {
				t.Errorf("owner %q, want %q", te.Owner, owner)
			}
			want := fmt.Sprintf("port %d/%s on 127.0.0.1 is taken by %s", addr.Port(), proto, owner)
			if err.Error() != want {
				t.Errorf("error %q, want %q", err, want)
			}
			wild := netip.AddrPortFrom(netip.IPv4Unspecified(), addr.Port())
			if got := Owner(proto, wild); got != owner {
				t.Errorf("Owner(%s, %s) = %q, want %q", proto, wild, got, owner)
			}
		})
	}
}

// TestListenTakenByThisProcess: a port this process holds, on a socket
// of its own or of another Proxy, is refused the same way, naming this
// process.
func TestListenTakenByThisProcess(t *testing.T) {
	self := fmt.Sprintf("pid %d (", os.Getpid())

	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().(*net.TCPAddr).AddrPort()
	_, err = Listen("tcp", addr, unused)
	if te := taken(t, err, "tcp", addr); !strings.HasPrefix(te.Owner, self) {
		t.Errorf("owner %q, want this process, %s...)", te.Owner, self)
	}

	for _, proto := range []string{"tcp", "udp"} {
		p := listen(t, Config{}, proto, "127.0.0.1:0", unused)
		_, err := Listen(proto, p.Addr(), unused)
		if te := taken(t, err, proto, p.Addr()); !strings.HasPrefix(te.Owner, self) {
			t.Errorf("%s: owner %q, want this process, %s...)", proto, te.Owner, self)
		}
	}
}

// TestCloseReleasesEverything: Close cuts the connections and sessions in
// flight, frees the port (a new Proxy can listen on it), and leaves no
// goroutine of the package and no fd behind.
func TestCloseReleasesEverything(t *testing.T) {
	tcpTarget := tcpServer(t, "127.0.0.2:0", echo)
	udpTarget, _ := udpServer(t, "127.0.0.2:0", upper)
	fds := countFDs(t)

	tp, err := Listen("tcp", netip.MustParseAddrPort("127.0.0.1:0"), tcpTarget)
	if err != nil {
		t.Fatal(err)
	}
	up, err := Listen("udp", netip.MustParseAddrPort("127.0.0.1:0"), udpTarget)
	if err != nil {
		tp.Close()
		t.Fatal(err)
	}
	// Many of each, so that a Close that returned before its goroutines
	// had would likely be caught with some still running.
	var tcs []net.Conn
	var ucs []*net.UDPConn
	for range 16 {
		tc, err := net.Dial("tcp", tp.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		tcs = append(tcs, tc)
		if err := roundTrip(tc, "live"); err != nil {
			t.Fatal(err)
		}
		uc, err := net.DialUDP("udp", nil, net.UDPAddrFromAddrPort(up.Addr()))
		if err != nil {
			t.Fatal(err)
		}
		ucs = append(ucs, uc)
		if got := string(exchange(t, uc, []byte("live"))); got != "LIVE" {
			t.Fatalf("got %q", got)
		}
	}

	if err := tp.Close(); err != nil {
		t.Errorf("close tcp: %v", err)
	}
	if err := up.Close(); err != nil {
		t.Errorf("close udp: %v", err)
	}
	if err := tp.Close(); err != nil {
		t.Errorf("close again: %v", err)
	}
	if gs := proxyGoroutines(); len(gs) > 0 {
		t.Errorf("Close returned with %d goroutines left:\n%s", len(gs), strings.Join(gs, "\n\n"))
	}
	for _, tc := range tcs {
		readEnds(t, tc)
		tc.Close()
	}
	for _, uc := range ucs {
		uc.Close()
	}

	for _, p := range []*Proxy{tp, up} {
		proto := "tcp"
		if p == up {
			proto = "udp"
		}
		again, err := Listen(proto, p.Addr(), unused)
		if err != nil {
			t.Fatalf("the closed proxy's port is not free: %v", err)
		}
		again.Close()
	}
	noLeaks(t, fds)
}

// netnsEnv makes the test binary run TestWildcardReservesThePort's body in
// the new network namespace it was started in.
const netnsEnv = "CORRAL_PROXY_TEST_NETNS"

// TestWildcardReservesThePort: a Proxy on 0.0.0.0 has the port on every
// IPv4 address, 127.0.0.1 included, and carries its traffic; one on ::
// has it for IPv6 only. It runs in a network namespace of its own, with
// only a loopback, so that binding the wildcard opens nothing on the
// machine's real interfaces.
func TestWildcardReservesThePort(t *testing.T) {
	if os.Getenv(netnsEnv) == "" {
		testenv.NeedRoot(t, "makes a network namespace")
		cmd := exec.Command(os.Args[0], "-test.run=^TestWildcardReservesThePort$", "-test.v", "-test.count=1")
		cmd.Env = append(os.Environ(), netnsEnv+"=1", "GORACE="+os.Getenv("GORACE")+" atexit_sleep_ms=0")
		cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
		out, err := cmd.CombinedOutput()
		t.Logf("in a new network namespace:\n%s", out)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(out), "--- PASS: TestWildcardReservesThePort") {
			t.Fatal("the test did not run in the namespace")
		}
		return
	}
	loUp(t)

	target := tcpServer(t, "127.0.0.2:0", echo)
	p := listen(t, Config{}, "tcp", "0.0.0.0:0", target)
	port := p.Addr().Port()
	if _, err := net.Listen("tcp4", fmt.Sprintf("127.0.0.1:%d", port)); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("127.0.0.1:%d under a proxy on 0.0.0.0: %v, want EADDRINUSE", port, err)
	}
	c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, "through the wildcard"); err != nil {
		t.Fatal(err)
	}

	// The other way round: 127.0.0.1 held, the wildcard is refused.
	for _, proto := range []string{"tcp", "udp"} {
		var addr netip.AddrPort
		if proto == "tcp" {
			l, err := net.Listen("tcp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			addr = l.Addr().(*net.TCPAddr).AddrPort()
		} else {
			l, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			addr = l.LocalAddr().(*net.UDPAddr).AddrPort()
		}
		wild := netip.AddrPortFrom(netip.IPv4Unspecified(), addr.Port())
		_, err := Listen(proto, wild, unused)
		te := taken(t, err, proto, wild)
		if !strings.HasPrefix(te.Owner, fmt.Sprintf("pid %d (", os.Getpid())) {
			t.Errorf("%s: owner %q, want this process", proto, te.Owner)
		}
	}

	// :: is v6only: the IPv4 port stays free for a proxy of its own.
	l6, err := net.Listen("tcp6", "[::1]:0")
	if err != nil {
		t.Logf("no IPv6 here, :: not tried: %v", err)
		return
	}
	l6.Close()
	p6 := listen(t, Config{}, "tcp", "[::]:0", target)
	port = p6.Addr().Port()
	if _, err := net.Listen("tcp6", fmt.Sprintf("[::1]:%d", port)); !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("[::1]:%d under a proxy on [::]: %v, want EADDRINUSE", port, err)
	}
	listen(t, Config{}, "tcp", fmt.Sprintf("0.0.0.0:%d", port), target)
	for _, addr := range []string{fmt.Sprintf("[::1]:%d", port), fmt.Sprintf("127.0.0.1:%d", port)} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := roundTrip(c, "to "+addr); err != nil {
			t.Fatal(err)
		}
	}
}

// loUp brings up the loopback of a new network namespace, which starts
// down.
func loUp(t *testing.T) {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		t.Fatal(err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		t.Fatal(err)
	}
}
