package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/api/apitest"
)

var (
	t0 = time.Date(2026, 11, 25, 21, 42, 0, 123456000, time.UTC)

	web = api.ServiceDetail{
		Service: api.Service{
			Name: "web", State: "running", Desired: "up", PID: 4242, StartedAt: t0, Restarts: 2,
			Message:     "running since 21:42",
			LastExit:    &api.Exit{Time: t0.Add(-time.Minute), Code: 137, Signal: 9, OOMKills: 1, Reason: "killed by the kernel OOM killer (memory limit 64MiB)", Ran: 90 * time.Second},
			MemoryUsage: 12 << 20, MemoryLimit: 64 << 20, CPUUsage: 1500 * time.Millisecond, PidsCurrent: 3, PidsLimit: 64,
		},
		Command: []string{"/bin/web", "--port", "8080"},
		Cgroup:  "/corral/web",
		LogFile: "/var/log/corral/web/output.log",
		Exits: []api.Exit{
			{Time: t0.Add(-2 * time.Minute), Code: 3, Reason: "exited with code 3", Ran: time.Second},
			{Time: t0.Add(-time.Minute), Code: 137, Signal: 9, OOMKills: 1, Reason: "killed by the kernel OOM killer (memory limit 64MiB)", Ran: 90 * time.Second},
		},
	}
	db = api.ServiceDetail{
		Service: api.Service{Name: "db", State: "stopped", Desired: "down"},
		Command: []string{"/bin/db"},
	}
)

func TestList(t *testing.T) {
	ctx := testContext(t)
	srv := apitest.NewServer(t, apitest.NewBackend(web, db))
	got, err := srv.Client().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []api.Service{web.Service, db.Service}; !reflect.DeepEqual(got, want) {
		t.Errorf("List:\n got %+v\nwant %+v", got, want)
	}
}

func TestListEmpty(t *testing.T) {
	ctx := testContext(t)
	srv := apitest.NewServer(t, apitest.NewBackend())
	got, err := srv.Client().List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got == nil || len(got) != 0 {
		t.Errorf("List = %#v, want an empty list", got)
	}
	status, _, body := rawRequest(t, srv.Socket, "GET", "/v1/services", "")
	if status != http.StatusOK || strings.TrimSpace(body) != "[]" {
		t.Errorf("GET /v1/services = %d %q, want 200 []", status, body)
	}
}

func TestStatus(t *testing.T) {
	ctx := testContext(t)
	odd := api.ServiceDetail{Service: api.Service{Name: "a b/c?d", State: "stopped"}}
	srv := apitest.NewServer(t, apitest.NewBackend(web, odd))
	c := srv.Client()

	got, err := c.Status(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*got, web) {
		t.Errorf("Status(web):\n got %+v\nwant %+v", *got, web)
	}
	// A name is escaped on its way.
	if got, err := c.Status(ctx, odd.Name); err != nil || got.Name != odd.Name {
		t.Errorf("Status(%q) = %+v, %v", odd.Name, got, err)
	}

	_, err = c.Status(ctx, "nope")
	if !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("Status(nope) = %v, want not found", err)
	}
	if want := `service "nope" not found`; err.Error() != want {
		t.Errorf("Status(nope) error reads %q, want %q", err, want)
	}
}

func TestStartStopRestart(t *testing.T) {
	ctx := testContext(t)
	b := apitest.NewBackend(web, db)
	srv := apitest.NewServer(t, b)
	c := srv.Client()

	if err := c.Start(ctx, []string{"db"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Status(ctx, "db"); got.State != "running" || got.Desired != "up" {
		t.Errorf("after Start, db is %s (wanted %s), want running (up)", got.State, got.Desired)
	}
	if err := c.Stop(ctx, []string{"web", "db"}); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(ctx, []string{"web"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.Status(ctx, "web"); got.State != "running" || got.Restarts != web.Restarts+1 {
		t.Errorf("after Restart, web is %s with %d restarts", got.State, got.Restarts)
	}

	err := c.Stop(ctx, []string{"web", "nope"})
	if !errors.Is(err, api.ErrNotFound) || err.Error() != `service "nope" not found` {
		t.Errorf("Stop(web, nope) = %v, want `service \"nope\" not found`", err)
	}
	if err := c.Start(ctx, nil); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("Start() = %v, want invalid", err)
	}

	var calls []apitest.Call
	for _, call := range b.Calls() {
		if call.Method != "Status" {
			calls = append(calls, call)
		}
	}
	want := []apitest.Call{
		{Method: "Start", Arg: []string{"db"}},
		{Method: "Stop", Arg: []string{"web", "db"}},
		{Method: "Restart", Arg: []string{"web"}},
		{Method: "Stop", Arg: []string{"web", "nope"}},
		{Method: "Start", Arg: []string(nil)},
	}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("calls:\n got %+v\nwant %+v", calls, want)
	}

	// The answer is 204, no body.
	status, _, body := rawRequest(t, srv.Socket, "POST", "/v1/services/start", `{"names": ["web"]}`)
	if status != http.StatusNoContent || body != "" {
		t.Errorf("POST /v1/services/start = %d %q, want 204 and no body", status, body)
	}
}

func TestReload(t *testing.T) {
	ctx := testContext(t)
	b := apitest.NewBackend(web)
	plan := api.Plan{Add: []string{"cache"}, Remove: []string{"old"}, Restart: []string{"web"}, Update: []string{"db"}, Unchanged: []string{"x"}}
	b.SetPlan(plan)
	srv := apitest.NewServer(t, b)
	for _, dryRun := range []bool{true, false} {
		got, err := srv.Client().Reload(ctx, dryRun)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(*got, plan) {
			t.Errorf("Reload(%v) = %+v, want %+v", dryRun, *got, plan)
		}
	}
	want := []apitest.Call{{Method: "Reload", Arg: true}, {Method: "Reload", Arg: false}}
	if got := b.Calls(); !reflect.DeepEqual(got, want) {
		t.Errorf("calls = %+v, want %+v", got, want)
	}
}

func TestVersion(t *testing.T) {
	ctx := testContext(t)
	s := api.NewServer(apitest.NewBackend(), discard())
	s.Version = "1.2.3"
	srv := apitest.Serve(t, s, filepath.Join(t.TempDir(), "corral.sock"))
	got, err := srv.Client().Version(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := (api.VersionInfo{Version: "1.2.3", API: "v1"}); *got != want {
		t.Errorf("Version = %+v, want %+v", *got, want)
	}
}

// Each class survives the round trip: its status on the wire, errors.Is
// and the message on the client.
func TestErrorClasses(t *testing.T) {
	ctx := testContext(t)
	for _, tc := range []struct {
		err    error
		class  string
		status int
	}{
		{fmt.Errorf("service %q %w", "web", api.ErrNotFound), "not found", 404},
		{fmt.Errorf("%w: memory: 12XB is not a size", api.ErrInvalid), "invalid", 400},
		{fmt.Errorf("a reload is in progress: %w", api.ErrConflict), "conflict", 409},
		{fmt.Errorf("%w: the daemon is shutting down", api.ErrUnavailable), "unavailable", 503},
		{fmt.Errorf("not yours: %w", api.ErrForbidden), "forbidden", 403},
		{errors.New("write record: no space left on device"), "internal", 500},
	} {
		t.Run(tc.class, func(t *testing.T) {
			b := apitest.NewBackend(web)
			b.Fail("List", tc.err)
			srv := apitest.NewServer(t, b)

			_, err := srv.Client().List(ctx)
			if err == nil {
				t.Fatal("List succeeded, want an error")
			}
			if err.Error() != tc.err.Error() {
				t.Errorf("error reads %q, want %q", err, tc.err)
			}
			want := tc.class
			if want == "internal" {
				want = "none"
			}
			if got := className(err); got != want {
				t.Errorf("error's class is %s, want %s", got, want)
			}

			status, header, body := rawRequest(t, srv.Socket, "GET", "/v1/services", "")
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
			if ct := header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			var e struct{ Class, Message string }
			if err := json.Unmarshal([]byte(body), &e); err != nil || e.Class != tc.class || e.Message != tc.err.Error() {
				t.Errorf("body %s (%v), want class %q and message %q", body, err, tc.class, tc.err)
			}
		})
	}
}

func TestUnknownRoute(t *testing.T) {
	srv := apitest.NewServer(t, apitest.NewBackend(web))
	for _, tc := range []struct{ method, path string }{
		{"GET", "/v1/nope"},
		{"GET", "/v2/services"},
		{"POST", "/v1/services/web"},
		{"DELETE", "/v1/services"},
		{"GET", "/v1/services/web/logs/extra"},
	} {
		status, _, body := rawRequest(t, srv.Socket, tc.method, tc.path, "")
		var e struct{ Class, Message string }
		json.Unmarshal([]byte(body), &e)
		if status != http.StatusNotFound || e.Class != "not found" || !strings.Contains(e.Message, tc.path) {
			t.Errorf("%s %s = %d %s, want 404, class not found, a message naming the path", tc.method, tc.path, status, body)
		}
	}
}

func TestBadRequests(t *testing.T) {
	b := apitest.NewBackend(web)
	srv := apitest.NewServer(t, b)
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/v1/services/start", "", "empty request body"},
		{"POST", "/v1/services/start", "{", "bad request body"},
		{"POST", "/v1/services/stop", `{"names": "web"}`, "bad request body"},
		{"POST", "/v1/services/restart", `{"name": ["web"]}`, `unknown field "name"`},
		{"POST", "/v1/reload?dry_run=maybe", "", `dry_run: "maybe" is not 1 or 0`},
		{"GET", "/v1/services/web/logs?tail=ten", "", `tail: "ten" is not a number of lines`},
		{"GET", "/v1/services/web/logs?follow=yes", "", `follow: "yes" is not 1 or 0`},
	} {
		status, _, body := rawRequest(t, srv.Socket, tc.method, tc.path, tc.body)
		var e struct{ Class, Message string }
		json.Unmarshal([]byte(body), &e)
		if status != http.StatusBadRequest || e.Class != "invalid" || !strings.Contains(e.Message, tc.want) {
			t.Errorf("%s %s %q = %d %s, want 400 invalid with %q", tc.method, tc.path, tc.body, status, body, tc.want)
		}
	}
	if calls := b.Calls(); len(calls) != 0 {
		t.Errorf("the backend was called: %+v", calls)
	}
}

func TestRequestLog(t *testing.T) {
	ctx := testContext(t)
	log, hook := logtest.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	srv := apitest.Serve(t, api.NewServer(apitest.NewBackend(web), log), filepath.Join(t.TempDir(), "corral.sock"))
	c := srv.Client()
	if _, err := c.List(ctx); err != nil {
		t.Fatal(err)
	}
	c.Status(ctx, "nope")

	ok := waitEntry(t, hook, func(e *logrus.Entry) bool { return e.Data["path"] == "/v1/services" })
	if ok.Level != logrus.DebugLevel {
		t.Errorf("a request that worked is logged at %s, want debug", ok.Level)
	}
	failed := waitEntry(t, hook, func(e *logrus.Entry) bool { return e.Data["path"] == "/v1/services/nope" })
	if failed.Level != logrus.WarnLevel {
		t.Errorf("a request that failed is logged at %s, want warn", failed.Level)
	}
	if err, _ := failed.Data[logrus.ErrorKey].(error); err == nil || err.Error() != `service "nope" not found` {
		t.Errorf("failed request logged with error %v", failed.Data[logrus.ErrorKey])
	}
	for _, e := range []*logrus.Entry{ok, failed} {
		if e.Data["method"] != "GET" || e.Data["peer_uid"] != os.Geteuid() || e.Data["peer_pid"] != os.Getpid() {
			t.Errorf("request logged with %v, want method GET, peer_uid %d and peer_pid %d", e.Data, os.Geteuid(), os.Getpid())
		}
		if _, ok := e.Data["duration"].(time.Duration); !ok {
			t.Errorf("request logged without a duration: %v", e.Data)
		}
	}
	if ok.Data["status"] != 200 || failed.Data["status"] != 404 {
		t.Errorf("statuses logged: %v and %v, want 200 and 404", ok.Data["status"], failed.Data["status"])
	}
}

// waitEntry waits for a log entry that match accepts.
func waitEntry(t *testing.T, hook *logtest.Hook, match func(*logrus.Entry) bool) *logrus.Entry {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, e := range hook.AllEntries() {
			if match(e) {
				return e
			}
		}
	}
	t.Fatalf("no such log entry among %d", len(hook.AllEntries()))
	return nil
}

// rawRequest sends a request on the socket without the Client, to see the
// wire.
func rawRequest(t *testing.T, socket, method, path, body string) (int, http.Header, string) {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", socket)
		},
	}}
	defer c.CloseIdleConnections()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(testContext(t), method, "http://corral"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

func discard() logrus.FieldLogger {
	log := logrus.New()
	log.Out = io.Discard
	return log
}
