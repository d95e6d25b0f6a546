package api_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/api/apitest"
)

func TestEvents(t *testing.T) {
	ctx := testContext(t)
	b := apitest.NewBackend(web)
	srv := apitest.NewServer(t, b)

	sctx, stop := context.WithCancel(ctx)
	events, errs := srv.Client().Events(sctx)
	if err := b.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	want := []api.Event{
		{Time: t0, Service: "web", From: "running", To: "backoff", Reason: "exited with code 3", Exit: &api.Exit{Time: t0, Code: 3, Reason: "exited with code 3", Ran: time.Second}},
		{Time: t0.Add(time.Second), Service: "web", From: "backoff", To: "starting", Reason: "backoff over"},
		{Time: t0.Add(2 * time.Second), Service: "web", From: "starting", To: "running", PID: 99},
	}
	go b.Publish(want...)
	for i, w := range want {
		select {
		case got := <-events:
			if !reflect.DeepEqual(got, w) {
				t.Errorf("event %d:\n got %+v\nwant %+v", i, got, w)
			}
		case err := <-errs:
			t.Fatalf("stream failed after %d events: %v", i, err)
		case <-ctx.Done():
			t.Fatalf("got %d events of %d", i, len(want))
		}
	}

	// Cancelling ends the stream on both sides, without an error.
	stop()
	for events != nil || errs != nil {
		select {
		case _, ok := <-events:
			if !ok {
				events = nil
			}
		case err, ok := <-errs:
			if ok {
				t.Errorf("error after cancel: %v", err)
			}
			errs = nil
		case <-ctx.Done():
			t.Fatal("the channels stayed open after cancel")
		}
	}
	if err := b.WaitSubscribers(ctx, 0); err != nil {
		t.Fatalf("the backend's stream did not end: %v", err)
	}
}

func TestEventsError(t *testing.T) {
	ctx := testContext(t)
	b := apitest.NewBackend(web)
	b.Fail("Events", fmt.Errorf("%w: too many event streams", api.ErrConflict))
	srv := apitest.NewServer(t, b)

	for _, tc := range []struct {
		socket, class, msg string
	}{
		{srv.Socket, "conflict", "conflict: too many event streams"},
		{srv.Socket + ".missing", "unavailable", "cannot reach corral daemon at " + srv.Socket + ".missing: is it running?"},
	} {
		events, errs := api.NewClient(tc.socket).Events(ctx)
		select {
		case err := <-errs:
			if className(err) != tc.class || !strings.HasPrefix(err.Error(), tc.msg) {
				t.Errorf("error %q (class %s), want %q (class %s)", err, className(err), tc.msg, tc.class)
			}
		case ev := <-events:
			t.Errorf("got event %+v, want an error", ev)
		case <-ctx.Done():
			t.Fatal("no error")
		}
		if _, ok := <-events; ok {
			t.Error("events still open after the error")
		}
	}
}

func TestLogs(t *testing.T) {
	ctx := testContext(t)
	b := apitest.NewBackend(web)
	b.AppendLog("web", "one", "two", "three")
	srv := apitest.NewServer(t, b)
	c := srv.Client()
	for _, tc := range []struct {
		tail int
		want string
	}{
		{-1, "one\ntwo\nthree\n"},
		{2, "two\nthree\n"},
		{5, "one\ntwo\nthree\n"},
		{0, ""},
	} {
		var out bytes.Buffer
		if err := c.Logs(ctx, api.LogsRequest{Name: "web", Tail: tc.tail}, &out); err != nil {
			t.Fatalf("Logs(tail %d): %v", tc.tail, err)
		}
		if out.String() != tc.want {
			t.Errorf("Logs(tail %d) = %q, want %q", tc.tail, out.String(), tc.want)
		}
	}
	err := c.Logs(ctx, api.LogsRequest{Name: "nope", Tail: -1}, io.Discard)
	if !errors.Is(err, api.ErrNotFound) || err.Error() != `service "nope" not found` {
		t.Errorf("Logs(nope) = %v, want `service \"nope\" not found`", err)
	}
	status, header, _ := rawRequest(t, srv.Socket, "GET", "/v1/services/web/logs", "")
	if status != 200 || header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("logs answered %d, %q, want 200, text/plain", status, header.Get("Content-Type"))
	}
	want := []apitest.Call{
		{Method: "Logs", Arg: api.LogsRequest{Name: "web", Tail: -1}},
		{Method: "Logs", Arg: api.LogsRequest{Name: "web", Tail: 2}},
	}
	if got := b.Calls(); !reflect.DeepEqual(got[:2], want) {
		t.Errorf("calls = %+v, want them to start with %+v", got, want)
	}
	if got := b.Calls()[len(b.Calls())-1]; got.Arg != (api.LogsRequest{Name: "web", Tail: -1}) {
		t.Errorf("without tail, the backend is asked for %+v, want all lines", got.Arg)
	}
}

func TestLogsFollow(t *testing.T) {
	ctx := testContext(t)
	b := apitest.NewBackend(web)
	b.AppendLog("web", "old", "last")
	srv := apitest.NewServer(t, b)

	fctx, stop := context.WithCancel(ctx)
	out := newSyncBuffer()
	done := make(chan error, 1)
	go func() { done <- srv.Client().Logs(fctx, api.LogsRequest{Name: "web", Tail: 1, Follow: true}, out) }()

	want := "last\n"
	out.waitFor(t, want)
	// Each line arrives as the backend writes it.
	for i := range 3 {
		line := fmt.Sprintf("new %d", i)
		b.AppendLog("web", line)
		want += line + "\n"
		out.waitFor(t, want)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Logs returned %v after cancel, want nil", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Logs still following 2s after cancel")
	}
}

// failingLogs writes a line, then fails.
type failingLogs struct {
	*apitest.Backend
	err error
}

func (b failingLogs) Logs(ctx context.Context, req api.LogsRequest, w io.Writer) error {
	io.WriteString(w, "first\n")
	return b.err
}

// An error after output has begun still reaches the client, with its class.
func TestLogsErrorMidStream(t *testing.T) {
	ctx := testContext(t)
	for _, tc := range []struct {
		err   error
		class string
	}{
		{fmt.Errorf("read output.log.1: %w", api.ErrUnavailable), "unavailable"},
		{errors.New("read output.log: input/output error"), "none"},
	} {
		srv := apitest.NewServer(t, failingLogs{apitest.NewBackend(web), tc.err})
		var out bytes.Buffer
		err := srv.Client().Logs(ctx, api.LogsRequest{Name: "web", Tail: -1}, &out)
		if err == nil || err.Error() != tc.err.Error() || className(err) != tc.class {
			t.Errorf("Logs = %v (class %s), want %q (class %s)", err, className(err), tc.err, tc.class)
		}
		if out.String() != "first\n" {
			t.Errorf("wrote %q before the error, want %q", out.String(), "first\n")
		}
	}
}

// Open streams do not hold up shutdown, and their clients learn why they
// ended.
func TestShutdownEndsStreams(t *testing.T) {
	ctx := testContext(t)
	b := apitest.NewBackend(web)
	b.AppendLog("web", "hello")
	srv := apitest.NewServer(t, b)
	c := srv.Client()

	events, errs := c.Events(ctx)
	out := newSyncBuffer()
	logsDone := make(chan error, 1)
	go func() { logsDone <- c.Logs(ctx, api.LogsRequest{Name: "web", Tail: -1, Follow: true}, out) }()
	// A quiet follow has sent nothing yet; its error comes as a status.
	quietDone := make(chan error, 1)
	go func() { quietDone <- c.Logs(ctx, api.LogsRequest{Name: "web", Tail: 0, Follow: true}, io.Discard) }()
	if err := b.WaitSubscribers(ctx, 1); err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, "hello\n")
	waitCalls(t, b, "Logs", 2)

	start := time.Now()
	if err := srv.Close(); err != nil {
		t.Fatalf("Serve returned %v, want nil", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %s with streams open", d)
	}
	const msg = "the corral daemon is shutting down"
	select {
	case err := <-errs:
		if !errors.Is(err, api.ErrUnavailable) || err.Error() != msg {
			t.Errorf("events ended with %v, want %q", err, msg)
		}
	case <-events:
		t.Error("events closed without an error")
	case <-ctx.Done():
		t.Fatal("events still open after shutdown")
	}
	for _, done := range []chan error{logsDone, quietDone} {
		if err := <-done; !errors.Is(err, api.ErrUnavailable) || err.Error() != msg {
			t.Errorf("logs ended with %v, want %q", err, msg)
		}
	}
}

func TestShutdownLetsRequestsFinish(t *testing.T) {
	ctx := testContext(t)
	b := &slowStart{Backend: apitest.NewBackend(web), started: make(chan struct{}), release: make(chan struct{})}
	srv := apitest.Serve(t, api.NewServer(b, discard()), filepath.Join(t.TempDir(), "corral.sock"))
	done := make(chan error, 1)
	go func() { done <- srv.Client().Start(ctx, []string{"web"}) }()
	<-b.started
	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	time.Sleep(50 * time.Millisecond)
	close(b.release)
	if err := <-done; err != nil {
		t.Errorf("a request in progress at shutdown failed: %v", err)
	}
	if err := <-closed; err != nil {
		t.Errorf("Serve returned %v", err)
	}
}

// slowStart's Start waits to be released, whatever its context says.
type slowStart struct {
	*apitest.Backend
	started, release chan struct{}
}

func (b *slowStart) Start(ctx context.Context, names []string) error {
	close(b.started)
	<-b.release
	return b.Backend.Start(ctx, names)
}

func waitCalls(t *testing.T, b *apitest.Backend, method string, n int) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		got := 0
		for _, c := range b.Calls() {
			if c.Method == method {
				got++
			}
		}
		if got >= n {
			return
		}
	}
	t.Fatalf("fewer than %d calls of %s", n, method)
}

// syncBuffer is a buffer written by one goroutine and watched by another.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{written: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.written <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer holds exactly want.
func (b *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for b.String() != want {
		select {
		case <-b.written:
		case <-timeout:
			t.Fatalf("buffer holds %q, want %q", b.String(), want)
		}
	}
}
