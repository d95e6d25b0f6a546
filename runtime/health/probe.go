package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/corral-dev/corral/spec"
)

// Prober makes one health check. ok says whether it passed; detail says
// what was seen, in words for an operator (an HTTP status, an exit code
// and the command's output, an error). Probe honours ctx's deadline.
type Prober interface {
	Probe(ctx context.Context) (ok bool, detail string)
}

// ProberFunc adapts a function to a Prober.
type ProberFunc func(ctx context.Context) (ok bool, detail string)

// Probe calls f(ctx).
func (f ProberFunc) Probe(ctx context.Context) (bool, string) { return f(ctx) }

// DetailMax bounds a check's detail, in bytes.
const DetailMax = 4 << 10

// address is where the network checks dial: the service's port on the
// loopback of its network namespace.
func address(h spec.Health) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(h.Port))
}

// withTimeout bounds ctx by d, if d is set.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// failure describes err from an attempt that began at began: a plain
// "timed out" when ctx ended it, the error otherwise.
func failure(ctx context.Context, began time.Time, what string, err error) string {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Sprintf("%s: timed out after %s", what, time.Since(began).Round(time.Millisecond))
	case ctx.Err() != nil:
		return what + ": canceled"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // it repeats the method and URL
	}
	return what + ": " + err.Error()
}

type tcpProber struct {
	addr    string
	timeout time.Duration
	netns   NetNS
}

// TCP checks that a connection to h.Port on 127.0.0.1 in netns is
// accepted within h.Timeout. The connection is closed at once.
func TCP(h spec.Health, netns NetNS) Prober {
	return &tcpProber{addr: address(h), timeout: h.Timeout, netns: netns}
}

func (p *tcpProber) Probe(ctx context.Context) (bool, string) {
	ctx, cancel := withTimeout(ctx, p.timeout)
	defer cancel()
	began := time.Now()
	conn, err := p.netns.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return false, failure(ctx, began, "connect to "+p.addr, err)
	}
	conn.Close()
	return true, "connected to " + p.addr
}

type httpProber struct {
	url      string
	min, max int
	timeout  time.Duration
	client   *http.Client
}

// HTTP checks that a GET of h.Path from h.Port on 127.0.0.1 in netns
// answers, within h.Timeout, with a status from h.StatusMin to
// h.StatusMax. Redirects are not followed (a 3xx is the answer), no proxy
// is used, and no connection is kept between checks.
func HTTP(h spec.Health, netns NetNS) Prober {
	path := h.Path
	if path == "" {
		path = spec.DefaultHealthHTTPPath
	}
	return &httpProber{
		url: "http://" + address(h) + path,
		min: h.StatusMin, max: h.StatusMax,
		timeout: h.Timeout,
		client: &http.Client{
			Transport: &http.Transport{
				DialContext:       netns.DialContext,
				DisableKeepAlives: true,
				// No Proxy: the environment's proxy is not the sandbox's.
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
}

func (p *httpProber) Probe(ctx context.Context) (bool, string) {
	ctx, cancel := withTimeout(ctx, p.timeout)
	defer cancel()
	what := "GET " + p.url
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url, nil)
	if err != nil {
		return false, what + ": " + err.Error()
	}
	req.Header.Set("User-Agent", "corral-health-check")
	began := time.Now()
	resp, err := p.client.Do(req)
	if err != nil {
		return false, failure(ctx, began, what, err)
	}
	resp.Body.Close()
	if resp.StatusCode < p.min || resp.StatusCode > p.max {
		return false, fmt.Sprintf("%s: %s (healthy: %s)", what, resp.Status, statusRange(p.min, p.max))
	}
	return true, what + ": " + resp.Status
}

func statusRange(min, max int) string {
	if min == max {
		return strconv.Itoa(min)
	}
	return fmt.Sprintf("%d-%d", min, max)
}

type execProber struct {
	run  func(ctx context.Context, argv []string) (int, []byte, error)
	argv []string
}

// ExecProber checks that argv, run by run (such as sandbox.Sandbox.Exec),
// exits 0. The caller's ctx bounds it. The detail is the exit code and
// what argv printed.
func ExecProber(run func(ctx context.Context, argv []string) (int, []byte, error), argv []string) Prober {
	return &execProber{run: run, argv: argv}
}

func (p *execProber) Probe(ctx context.Context) (bool, string) {
	if len(p.argv) == 0 {
		return false, "no command to run"
	}
	began := time.Now()
	code, out, err := p.run(ctx, p.argv)
	output := cleanOutput(out)
	if err != nil {
		detail := failure(ctx, began, "run "+strconv.Quote(p.argv[0]), err)
		if output != "" {
			detail += ": " + output
		}
		return false, truncate(detail)
	}
	detail := "exit " + strconv.Itoa(code)
	if output != "" {
		detail += ": " + output
	}
	return code == 0, truncate(detail)
}

// cleanOutput makes a command's output fit for a one-line detail: valid
// UTF-8, without surrounding white space.
func cleanOutput(out []byte) string {
	return strings.TrimSpace(strings.ToValidUTF8(string(out), "\uFFFD"))
}

// truncate cuts s to DetailMax bytes, on a character boundary.
func truncate(s string) string {
	if len(s) <= DetailMax {
		return s
	}
	cut := DetailMax - len("...")
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}
