package health

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
)

// serveEnv makes the test binary a small HTTP server on 127.0.0.1 in its
// own network namespace: it prints its port, and serves until its stdin
// closes.
const serveEnv = "CORRAL_HEALTH_TEST_SERVE"

func TestMain(m *testing.M) {
	if os.Getenv(serveEnv) != "" {
		if err := serve(); err != nil {
			fmt.Fprintln(os.Stderr, "serve:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func serve() error {
	// A new network namespace has only a loopback, and it is down.
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return err
	}
	unix.Close(fd)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Println(l.Addr().(*net.TCPAddr).Port)
	go func() {
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	return http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/down" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
}

// serverInNetNS starts the test binary as a server in a new network
// namespace, and returns its PID and port.
func serverInNetNS(t *testing.T) (pid, port int) {
	t.Helper()
	testenv.NeedRoot(t, "makes a network namespace and enters it")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), serveEnv+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET}
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
		_ = cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("server's port: %v", err)
	}
	if port, err = strconv.Atoi(strings.TrimSpace(line)); err != nil {
		t.Fatalf("server's port: %q", line)
	}
	if netnsOf(t, "/proc/"+strconv.Itoa(cmd.Process.Pid)) == netnsOf(t, "/proc/self") {
		t.Fatal("the server shares the test's network namespace: the test would prove nothing")
	}
	return cmd.Process.Pid, port
}

func netnsOf(t *testing.T, proc string) string {
	t.Helper()
	ns, err := os.Readlink(filepath.Join(proc, "ns/net"))
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

func TestProbesInNetNS(t *testing.T) {
	pid, port := serverInNetNS(t)
	ns := NetNS{Pid: pid}
	other := port + 1
	if other > 65535 {
		other = port - 1
	}
	ctx := context.Background()
	for _, tc := range []struct {
		desc       string
		probe      Prober
		wantOK     bool
		wantDetail string // a substring
	}{
		{"tcp, in the namespace", TCP(tcpCheck(port), ns), true, "connected to 127.0.0.1:" + strconv.Itoa(port)},
		{"http, in the namespace", HTTP(httpCheck(port, "/"), ns), true, ": 200 OK"},
		{"http 503, in the namespace", HTTP(httpCheck(port, "/down"), ns), false, ": 503 Service Unavailable"},
		{"tcp, another port of the namespace", TCP(tcpCheck(other), ns), false, "connection refused"},
		// The port is open only in the namespace.
		{"tcp, from the host", TCP(tcpCheck(port), NetNS{}), false, "connection refused"},
		{"http, from the host", HTTP(httpCheck(port, "/"), NetNS{}), false, "connection refused"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			ok, detail := tc.probe.Probe(ctx)
			if ok != tc.wantOK || !strings.Contains(detail, tc.wantDetail) {
				t.Errorf("Probe = %v, %q; want %v, ...%q...", ok, detail, tc.wantOK, tc.wantDetail)
			}
		})
	}
}

// TestNetNSThreadsComeBack: after many concurrent dials in a namespace,
// every thread of the process is back in the process's own namespace.
func TestNetNSThreadsComeBack(t *testing.T) {
	pid, port := serverInNetNS(t)
	probe := HTTP(httpCheck(port, "/"), NetNS{Pid: pid})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 10 {
				if ok, detail := probe.Probe(context.Background()); !ok {
					t.Errorf("Probe = false, %q", detail)
					return
				}
			}
		})
	}
	wg.Wait()
	own := netnsOf(t, "/proc/self")
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if err != nil {
			continue // the thread ended meanwhile
		}
		if ns != own {
			t.Errorf("thread %s is in %s, not in the process's %s", task.Name(), ns, own)
		}
	}
}

func TestNetNSGone(t *testing.T) {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal("run true:", err)
	}
	ns := NetNS{Pid: cmd.Process.Pid}
	ok, detail := TCP(tcpCheck(80), ns).Probe(context.Background())
	want := "connect to 127.0.0.1:80: open network namespace of pid " + strconv.Itoa(cmd.Process.Pid) + ": no such file or directory"
	if ok || detail != want {
		t.Errorf("Probe = %v, %q; want false, %q", ok, detail, want)
	}
}
