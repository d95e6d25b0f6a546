package integration

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/corral-dev/corral/internal/testenv"
	"github.com/corral-dev/corral/runtime/api"
)

// registry is Debian's docker-registry (the CNCF distribution registry),
// started by the test on a loopback port with its storage in a temp dir,
// and stopped after it.
func registry(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	testenv.Need(t, err == nil, "docker-registry is not installed (make deps installs it)")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	dir := t.TempDir()
	config := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(config, []byte(fmt.Sprintf("version: 0.1\nlog: {level: warn}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: %s}\n", filepath.Join(dir, "data"), addr)), 0o644); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", config)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		logf.Close()
	})
	for deadline := time.Now().Add(patience); ; time.Sleep(20 * time.Millisecond) {
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("docker-registry did not answer on %s: %s", addr, log)
		}
	}
	return addr
}

// push puts the example image into the registry as ref, with env added
// to its config's (another image, by digest, for each env).
func push(t *testing.T, ref string, env ...string) {
	t.Helper()
	p, err := layout.FromPath(exampleLayout(t))
	if err != nil {
		t.Fatal(err)
	}
	ii, err := p.ImageIndex()
	if err != nil {
		t.Fatal(err)
	}
	idx, err := ii.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	img, err := ii.Image(idx.Manifests[0].Digest)
	if err != nil {
		t.Fatal(err)
	}
	if len(env) > 0 {
		cfg, err := img.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		c := cfg.Config
		c.Env = append(c.Env[:len(c.Env):len(c.Env)], env...)
		if img, err = mutate.Config(img, c); err != nil {
			t.Fatal(err)
		}
	}
	r, err := name.ParseReference(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

// TestPullFromARegistry: corral image pull takes an image from a real
// registry by tag and by digest; corral run --image pulls one the store
// lacks; a daemon's service with pull: missing does too, and runs it.
func TestPullFromARegistry(t *testing.T) {
	addr := registry(t)
	ref := addr + "/example/web:1"
	push(t, ref)
	r := corral(t, "image", "pull", ref)
	if r.code != 0 || !strings.Contains(r.stdout, "pulled "+ref+" sha256:") {
		t.Fatalf("image pull: %s", r)
	}
	digest := strings.Fields(r.stdout)[2]
	if r := corral(t, "image", "pull", addr+"/example/web@"+digest); r.code != 0 {
		t.Fatalf("pull by digest: %s", r)
	}
	push(t, addr+"/example/web:2")
	r = mustRun(t, "--image", addr+"/example/web:2", "--entrypoint", "/bin/sh", "--", "-c", "id -u")
	if r.stdout != "1000\n" {
		t.Errorf("run --image of a pulled image: %q", r.stdout)
	}
	push(t, addr+"/example/web:3")
	d := newDaemon(t, `
  web:
    image: `+addr+`/example/web:3
    health: {http: {port: 8080, path: /}, interval: 1s, timeout: 900ms}
  steady:
    image: `+addr+`/example/web:2
    entrypoint: [/bin/sleep]
    command: ["1000"]
`).start()
	st := d.waitFor("web", patience, "healthy", func(st *api.ServiceDetail) bool { return st.Health == "healthy" })
	if !strings.HasPrefix(st.Image, addr+"/example/web:3@sha256:") {
		t.Errorf("status image %q", st.Image)
	}
	steady := d.waitRunning("steady")

	// The tag moves: the file is unchanged, yet the next reload restarts
	// the service that runs it, and says why; a dry run only says so.
	push(t, addr+"/example/web:3", "VERSION=2")
	r = d.ctl("image", "pull", addr+"/example/web:3")
	if r.code != 0 {
		t.Fatalf("pull of the moved tag: %s", r)
	}
	moved := strings.Fields(r.stdout)[2]
	_, was, _ := strings.Cut(st.Image, "@")
	why := "web: image " + addr + "/example/web:3 is now " + moved + "; the sandbox runs " + was
	r = d.ctl("reload", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stdout, "restart:") || !strings.Contains(r.stdout, why) {
		t.Errorf("reload --dry-run: %s; want web restarted, with %q", r, why)
	}
	if now := d.status("web"); now.PID != st.PID {
		t.Errorf("a dry run restarted web")
	}
	if r = d.ctl("reload"); r.code != 0 || !strings.Contains(r.stdout, why) {
		t.Errorf("reload: %s", r)
	}
	d.waitFor("web", patience, "restarted from "+moved+", healthy", func(now *api.ServiceDetail) bool {
		return now.PID != 0 && now.PID != st.PID && now.Image == addr+"/example/web:3@"+moved && now.Health == "healthy"
	})
	if now := d.status("steady"); now.PID != steady.PID {
		t.Errorf("steady, whose image did not move, was restarted")
	}
	d.stop()
}

// TestPullFailuresSayWhyAndLeaveNothing: a missing tag, a registry that
// refuses, fails, never answers or is not there: each is a clear error,
// a non-zero exit, and no image in the store.
func TestPullFailuresSayWhyAndLeaveNothing(t *testing.T) {
	addr := registry(t)
	answer := func(code int) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			if code == http.StatusUnauthorized {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
			}
			w.WriteHeader(code)
		}))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }))
	t.Cleanup(hang.Close)
	gone, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	goneAddr := gone.Addr().String()
	gone.Close()
	for _, tc := range []struct{ desc, ref, want string }{
		{"a missing tag", addr + "/example/none:1", "no such image or tag (404)"},
		{"401", answer(http.StatusUnauthorized) + "/app:1", "not allowed (401): log in with docker login"},
		{"500", answer(http.StatusInternalServerError) + "/app:1", "registry answered 500"},
		{"no answer", strings.TrimPrefix(hang.URL, "http://") + "/app:1", "did not answer in time"},
		{"no registry there", goneAddr + "/app:1", "connection refused"},
	} {
		start := time.Now()
		r := corral(t, "image", "pull", "--timeout", "1s", tc.ref)
		if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%s: %s; want an error with %q", tc.desc, r, tc.want)
		}
		if d := time.Since(start); d > 20*time.Second {
			t.Errorf("%s: took %s", tc.desc, d)
		}
		if r := corral(t, "image", "inspect", tc.ref); r.code == 0 {
			t.Errorf("%s: the image is in the store after the failed pull", tc.desc)
		}
	}
}
