package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/spec"
)

// portOf is the port of a test server's URL.
func portOf(t *testing.T, rawURL string) int {
	t.Helper()
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// closedPort is a port on 127.0.0.1 that nothing listens on (it was just
// freed).
func closedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func httpCheck(port int, path string) spec.Health {
	h := spec.DefaultHealth(spec.HealthHTTP)
	h.Port, h.Path, h.Timeout = port, path, 2*time.Second
	return h
}

func tcpCheck(port int) spec.Health {
	h := spec.DefaultHealth(spec.HealthTCP)
	h.Port, h.Timeout = port, 2*time.Second
	return h
}

// paths records the paths a test server was asked for.
type paths struct {
	mu  sync.Mutex
	got []string
}

func (p *paths) add(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.got = append(p.got, s)
}

func (p *paths) list() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.got)
}

func TestHTTPOnHost(t *testing.T) {
	var asked paths
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.add(r.URL.RequestURI())
		if r.Header.Get("User-Agent") != "corral-health-check" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		switch r.URL.Path {
		case "/ok", "/":
			w.WriteHeader(http.StatusOK)
		case "/created":
			w.WriteHeader(http.StatusCreated)
		case "/down":
			w.WriteHeader(http.StatusServiceUnavailable)
		case "/moved":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/slow":
			select {
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	defer srv.Close()
	defer close(release)
	port := portOf(t, srv.URL)
	base := "GET http://127.0.0.1:" + strconv.Itoa(port)
	for _, tc := range []struct {
		desc             string
		path             string
		statusMin, max   int
		timeout          time.Duration
		wantOK           bool
		wantDetail       string // a prefix
		wantDetailSuffix string
	}{
		{"200 is healthy", "/ok", 200, 399, 0, true, base + "/ok: 200 OK", ""},
		{"the default path", "", 200, 399, 0, true, base + "/: 200 OK", ""},
		{"a query is kept", "/ok?deep=1", 200, 399, 0, true, base + "/ok?deep=1: 200 OK", ""},
		{"503 is not", "/down", 200, 399, 0, false, base + "/down: 503 Service Unavailable (healthy: 200-399)", ""},
		{"a status outside a narrow range", "/created", 200, 200, 0, false, base + "/created: 201 Created (healthy: 200)", ""},
		{"a redirect is the answer, not followed", "/moved", 200, 399, 0, true, base + "/moved: 302 Found", ""},
		{"a redirect outside the range", "/moved", 200, 299, 0, false, base + "/moved: 302 Found (healthy: 200-299)", ""},
		{"no answer within the timeout", "/slow", 200, 399, 200 * time.Millisecond, false, base + "/slow: timed out after ", ""},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			h := httpCheck(port, tc.path)
			h.StatusMin, h.StatusMax = tc.statusMin, tc.max
			if tc.timeout > 0 {
				h.Timeout = tc.timeout
			}
			began := time.Now()
			ok, detail := HTTP(h, NetNS{}).Probe(context.Background())
			if ok != tc.wantOK || !strings.HasPrefix(detail, tc.wantDetail) {
				t.Errorf("Probe = %v, %q; want %v, %q...", ok, detail, tc.wantOK, tc.wantDetail)
			}
			if tc.timeout > 0 && time.Since(began) > tc.timeout+time.Second {
				t.Errorf("Probe took %s with a timeout of %s", time.Since(began), tc.timeout)
			}
		})
	}
	if got := asked.list(); slices.Contains(got, "/elsewhere") {
		t.Errorf("the server was asked for %q: a redirect was followed", got)
	}

	t.Run("the environment's proxy is not used", func(t *testing.T) {
		t.Setenv("HTTP_PROXY", "http://127.0.0.1:1")
		t.Setenv("http_proxy", "http://127.0.0.1:1")
		t.Setenv("NO_PROXY", "")
		if ok, detail := HTTP(httpCheck(port, "/ok"), NetNS{}).Probe(context.Background()); !ok {
			t.Errorf("Probe = false, %q; want healthy without the proxy", detail)
		}
	})
	t.Run("the caller's deadline counts too", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if ok, detail := HTTP(httpCheck(port, "/slow"), NetNS{}).Probe(ctx); ok || !strings.Contains(detail, "timed out") {
			t.Errorf("Probe = %v, %q; want a timeout", ok, detail)
		}
	})
	t.Run("no connection is kept", func(t *testing.T) {
		var conns sync.WaitGroup
		counting := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		counting.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				conns.Done()
			}
		}
		counting.Start()
		defer counting.Close()
		p := HTTP(httpCheck(portOf(t, counting.URL), "/"), NetNS{})
		for range 3 {
			if ok, detail := p.Probe(context.Background()); !ok {
				t.Fatalf("Probe = false, %q", detail)
			}
		}
		closed := make(chan struct{})
		go func() { conns.Wait(); close(closed) }()
		select {
		case <-closed:
		case <-time.After(2 * time.Second):
			t.Error("connections still open after the checks")
		}
	})
}

func TestHTTPRefused(t *testing.T) {
	port := closedPort(t)
	ok, detail := HTTP(httpCheck(port, "/"), NetNS{}).Probe(context.Background())
	want := "GET http://127.0.0.1:" + strconv.Itoa(port) + "/: dial tcp 127.0.0.1:" + strconv.Itoa(port) + ": connect: connection refused"
	if ok || detail != want {
		t.Errorf("Probe = %v, %q; want false, %q", ok, detail, want)
	}
}

func TestTCPOnHost(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	if ok, detail := TCP(tcpCheck(port), NetNS{}).Probe(context.Background()); !ok || detail != "connected to 127.0.0.1:"+strconv.Itoa(port) {
		t.Errorf("Probe of a listening port = %v, %q", ok, detail)
	}
	closed := closedPort(t)
	ok, detail := TCP(tcpCheck(closed), NetNS{}).Probe(context.Background())
	if ok || !strings.HasSuffix(detail, "connection refused") || !strings.HasPrefix(detail, "connect to 127.0.0.1:"+strconv.Itoa(closed)+": ") {
		t.Errorf("Probe of a closed port = %v, %q; want refused", ok, detail)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if ok, detail := TCP(tcpCheck(port), NetNS{}).Probe(ctx); ok || !strings.HasSuffix(detail, ": canceled") {
		t.Errorf("Probe with a canceled context = %v, %q; want canceled", ok, detail)
	}
}

func TestExecProber(t *testing.T) {
	boom := errors.New("sandbox web: exec \"check\": command not found")
	for _, tc := range []struct {
		desc       string
		code       int
		out        string
		err        error
		wantOK     bool
		wantDetail string
	}{
		{"exit 0", 0, "", nil, true, "exit 0"},
		{"exit 0 with output", 0, "all good\n", nil, true, "exit 0: all good"},
		{"exit 1", 1, "  db down\n\n", nil, false, "exit 1: db down"},
		{"killed", 137, "", nil, false, "exit 137"},
		{"could not run", -1, "", boom, false, "run \"check\": " + boom.Error()},
		{"invalid UTF-8 is replaced", 2, "bad \xff byte", nil, false, "exit 2: bad \uFFFD byte"},
		{"long output is cut", 1, strings.Repeat("x", 2*DetailMax), nil, false, "exit 1: " + strings.Repeat("x", DetailMax-len("exit 1: ...")) + "..."},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			type key struct{}
			ctx := context.WithValue(context.Background(), key{}, "the caller's")
			var gotArgv []string
			run := func(c context.Context, argv []string) (int, []byte, error) {
				if c.Value(key{}) != "the caller's" {
					t.Error("run did not get the caller's context")
				}
				gotArgv = argv
				return tc.code, []byte(tc.out), tc.err
			}
			ok, detail := ExecProber(run, []string{"check", "--quick"}).Probe(ctx)
			if ok != tc.wantOK || detail != tc.wantDetail {
				t.Errorf("Probe = %v, %q; want %v, %q", ok, detail, tc.wantOK, tc.wantDetail)
			}
			if !slices.Equal(gotArgv, []string{"check", "--quick"}) {
				t.Errorf("run got argv %q", gotArgv)
			}
		})
	}
	t.Run("timed out", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
		defer cancel()
		run := func(ctx context.Context, argv []string) (int, []byte, error) {
			<-ctx.Done()
			return -1, []byte("partial"), ctx.Err()
		}
		ok, detail := ExecProber(run, []string{"check"}).Probe(ctx)
		if ok || !strings.HasPrefix(detail, `run "check": timed out after `) || !strings.HasSuffix(detail, ": partial") {
			t.Errorf("Probe = %v, %q; want a timeout with the output", ok, detail)
		}
	})
}

func TestProberFunc(t *testing.T) {
	var p Prober = ProberFunc(func(context.Context) (bool, string) { return true, "fine" })
	if ok, detail := p.Probe(context.Background()); !ok || detail != "fine" {
		t.Errorf("Probe = %v, %q", ok, detail)
	}
}

func TestDialInNeedsAnIP(t *testing.T) {
	_, err := NetNS{Pid: 1}.DialContext(context.Background(), "tcp", "localhost:80")
	if err == nil || !strings.Contains(err.Error(), "give an IP address") {
		t.Errorf("DialContext with a name: %v, want an error asking for an IP", err)
	}
}
