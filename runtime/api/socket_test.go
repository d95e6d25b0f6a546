package api_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
	logtest "github.com/sirupsen/logrus/hooks/test"

	"github.com/corral-dev/corral/internal/testenv"
	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/api/apitest"
)

func TestSocketMode(t *testing.T) {
	srv := apitest.NewServer(t, apitest.NewBackend())
	fi, err := os.Lstat(srv.Socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %s, want a socket with 0600", fi.Mode())
	}
	// Nothing is left beside it but its lock.
	entries, err := os.ReadDir(filepath.Dir(srv.Socket))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got := strings.Join(names, " "); got != "corral.sock corral.sock.lock" {
		t.Errorf("socket dir holds %s, want corral.sock corral.sock.lock", got)
	}
}

func TestServeMakesSocketDir(t *testing.T) {
	socket := filepath.Join(t.TempDir(), "run", "corral", "corral.sock")
	apitest.Serve(t, api.NewServer(apitest.NewBackend(), discard()), socket)
	fi, err := os.Stat(filepath.Dir(socket))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("socket dir made with mode %s, want 0700", fi.Mode().Perm())
	}
}

func TestSocketRemovedOnStop(t *testing.T) {
	srv := apitest.NewServer(t, apitest.NewBackend())
	if err := srv.Close(); err != nil {
		t.Fatalf("Serve returned %v, want nil", err)
	}
	if _, err := os.Lstat(srv.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket still there after stop: %v", err)
	}
}

func TestStaleSocketReplaced(t *testing.T) {
	ctx := testContext(t)
	socket := filepath.Join(t.TempDir(), "corral.sock")
	stale := deadSocket(t, socket)

	srv := apitest.Serve(t, api.NewServer(apitest.NewBackend(web), discard()), socket)
	if _, err := srv.Client().List(ctx); err != nil {
		t.Fatalf("List on the new socket: %v", err)
	}
	fi, err := os.Lstat(socket)
	if err != nil {
		t.Fatal(err)
	}
	if os.SameFile(fi, stale) || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket not replaced (mode %s)", fi.Mode())
	}
}

// A second daemon on a socket fails and leaves the first one serving,
// whether the first is a corral daemon (holding the lock) or anything
// else answering there.
func TestLiveSocketNotStolen(t *testing.T) {
	ctx := testContext(t)
	first := apitest.NewServer(t, apitest.NewBackend(web))
	other := filepath.Join(t.TempDir(), "other.sock")
	l, err := net.Listen("unix", other)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()

	for _, tc := range []struct{ socket, msg string }{
		{first.Socket, "conflict: another corral daemon is serving on " + first.Socket},
		{other, "conflict: something is already serving on " + other},
	} {
		before, err := os.Lstat(tc.socket)
		if err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err = api.NewServer(apitest.NewBackend(), discard()).Serve(sctx, tc.socket)
		cancel()
		if !errors.Is(err, api.ErrConflict) || err.Error() != tc.msg {
			t.Errorf("second Serve = %v, want %q", err, tc.msg)
		}
		after, err := os.Lstat(tc.socket)
		if err != nil || !os.SameFile(before, after) {
			t.Errorf("the socket was replaced or removed: %v", err)
		}
	}
	if _, err := first.Client().List(ctx); err != nil {
		t.Errorf("the first daemon no longer answers: %v", err)
	}
}

func TestNotASocketRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "corral.sock")
	if err := os.WriteFile(path, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := api.NewServer(apitest.NewBackend(), discard()).Serve(testContext(t), path)
	if err == nil || !strings.Contains(err.Error(), "exists and is not a socket") {
		t.Errorf("Serve = %v, want an error saying it is not a socket", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "data" {
		t.Errorf("the file was touched: %q", b)
	}
}

func TestUnreachable(t *testing.T) {
	ctx := testContext(t)
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	refusing := filepath.Join(dir, "stale.sock")
	deadSocket(t, refusing)
	for _, tc := range []struct{ socket, msg string }{
		{missing, "cannot reach corral daemon at " + missing + ": is it running? (connect: no such file or directory)"},
		{refusing, "cannot reach corral daemon at " + refusing + ": is it running? (connect: connection refused)"},
	} {
		_, err := api.NewClient(tc.socket).List(ctx)
		if !errors.Is(err, api.ErrUnavailable) || err.Error() != tc.msg {
			t.Errorf("List = %v, want %q", err, tc.msg)
		}
		if !errors.Is(err, syscall.ENOENT) && !errors.Is(err, syscall.ECONNREFUSED) {
			t.Errorf("the cause is lost: %#v", err)
		}
		if err := api.NewClient(tc.socket).Logs(ctx, api.LogsRequest{Name: "web", Follow: true}, io.Discard); !errors.Is(err, api.ErrUnavailable) {
			t.Errorf("Logs = %v, want unavailable", err)
		}
	}
}

// A caller who is neither root nor the daemon's user is kept out by the
// socket's mode and, should that be loosened, by the peer check.
func TestPeerOtherUserRefused(t *testing.T) {
	testenv.NeedRoot(t, "it runs a client as uid 65534")
	dir := t.TempDir()
	// The child must reach its binary and the socket.
	for _, d := range []string{filepath.Dir(dir), dir} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	bin := copyTestBinary(t, filepath.Join(dir, "api.test"))
	log, hook := logtest.NewNullLogger()
	b := apitest.NewBackend(web)
	srv := apitest.Serve(t, api.NewServer(b, log), filepath.Join(dir, "corral.sock"))

	t.Run("socket mode", func(t *testing.T) {
		want := "forbidden\tcannot reach corral daemon at " + srv.Socket + ": permission denied (only root may control it)"
		if got := runAsNobody(t, bin, srv.Socket); got != want {
			t.Errorf("client as uid 65534 got\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("peer credentials", func(t *testing.T) {
		if err := os.Chmod(srv.Socket, 0o666); err != nil {
			t.Fatal(err)
		}
		want := "forbidden\tpermission denied: uid 65534 may not control the corral daemon (only root may)"
		if got := runAsNobody(t, bin, srv.Socket); got != want {
			t.Errorf("client as uid 65534 got\n%s\nwant\n%s", got, want)
		}
		e := waitEntry(t, hook, func(e *logrus.Entry) bool { return e.Data["peer_uid"] == 65534 })
		if e.Level != logrus.WarnLevel || e.Data["status"] != 403 {
			t.Errorf("refusal logged at %s with status %v, want warn and 403", e.Level, e.Data["status"])
		}
	})
	if calls := b.Calls(); len(calls) != 0 {
		t.Errorf("the backend was called: %+v", calls)
	}
}

// runAsNobody runs the test binary as a client of socket with uid and gid
// 65534 and returns what it printed.
func runAsNobody(t *testing.T, bin, socket string) string {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), peerEnv+"="+socket)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("client as uid 65534: %v\n%s", err, out)
	}
	return strings.TrimSpace(string(out))
}

func copyTestBinary(t *testing.T, to string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
	return to
}

// deadSocket leaves a socket file at path that nothing listens on, and
// returns it.
func deadSocket(t *testing.T, path string) os.FileInfo {
	t.Helper()
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	l.SetUnlinkOnClose(false)
	l.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi
}
