package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/corral-dev/corral/runtime/api"
)

const exampleImage = "corral-example/busybox-web:1"

// exampleLayout writes the README's example image (a busybox web server,
// made offline from the host's busybox-static) as an OCI layout.
func exampleLayout(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "layout")
	if out, err := exec.Command("../examples/images/busybox-oci.sh", dir, exampleImage).CombinedOutput(); err != nil {
		t.Fatalf("make the example image: %v\n%s", err, out)
	}
	return dir
}

func importExample(t *testing.T) {
	t.Helper()
	r := corral(t, "image", "import", exampleLayout(t))
	if r.code != 0 || !strings.Contains(r.stdout, "imported index.docker.io/"+exampleImage+" sha256:") {
		t.Fatalf("image import: %s", r)
	}
}

// TestRunFromAnImage: an imported image runs with corral run --image: its
// config applies (user, working directory), its root is its layers,
// id-mapped into the sandbox's user namespace, read-only unless asked,
// with corral's /etc/hostname; and the store lists it.
func TestRunFromAnImage(t *testing.T) {
	importExample(t)
	if r := corral(t, "image", "ls"); r.code != 0 || !strings.Contains(r.stdout, exampleImage) {
		t.Fatalf("image ls: %s", r)
	}
	r := mustRun(t, "--name", "imgrun", "--image", exampleImage, "--entrypoint", "/bin/sh", "--", "-c",
		"id -u; pwd; cat /etc/hostname; set -- $(ls -ln /bin/busybox); echo $3; read inside host size < /proc/self/uid_map; echo $inside; [ $host -ge 65536 ] && echo mapped; echo x > /written 2>/dev/null && echo wrote || echo read-only")
	want := "1000\n/www\nimgrun\n0\n0\nmapped\nread-only\n"
	if r.stdout != want {
		t.Errorf("inside the image: %q, want %q", r.stdout, want)
	}
	r = mustRun(t, "--image", exampleImage, "--read-only=false", "--user", "0", "--workdir", "/", "--entrypoint", "/bin/sh", "--", "-c", "id -u; pwd; echo x > /written && echo wrote")
	if r.stdout != "0\n/\nwrote\n" {
		t.Errorf("writable, as root, in /: %q", r.stdout)
	}
	// Its own Entrypoint and Cmd: httpd in the foreground, ended by the
	// stop timeout.
	// Never pulled (a test reaches no registry but its own).
	if r := corral(t, "run", "--image", "no/such:image", "--pull", "never", "--", "x"); r.code != 125 || !strings.Contains(r.stderr, "--image: no/such:image is not in the image store") {
		t.Errorf("a missing image: %s", r)
	}
}

// TestDaemonRunsAServiceFromAnImage: a service's image: runs its
// Entrypoint and Cmd as its user, healthy over HTTP; status names the
// image with its digest; rm is refused while it runs; the sandbox is
// adopted, not restarted, after a kill -9 of the daemon; once it is
// stopped the image can go, and prune frees its layers. Its store is its
// own: in the shared one, other tests' images (pushed to and pulled from
// a registry) keep the example's layer, as they should.
func TestDaemonRunsAServiceFromAnImage(t *testing.T) {
	d := newDaemon(t, `
  web:
    image: `+exampleImage+`
    health:
      http: {port: 8080, path: /}
      interval: 1s
      timeout: 900ms
`)
	d.dataDir = filepath.Join(workDir, "data-"+t.Name())
	t.Cleanup(func() { os.RemoveAll(d.dataDir) })
	if r := d.ctl("image", "import", exampleLayout(t)); r.code != 0 {
		t.Fatalf("image import: %s", r)
	}
	d.start()
	st := d.waitFor("web", patience, "healthy", func(st *api.ServiceDetail) bool { return st.Health == "healthy" })
	if !strings.HasPrefix(st.Image, exampleImage+"@sha256:") || strings.Join(st.Command, " ") != "/bin/httpd -f -v -p 8080 -h /www" {
		t.Errorf("status: image %q, command %q", st.Image, st.Command)
	}
	if uid := hostUID(t, st.PID); uid != blockOf(t, st.PID)+1000 {
		t.Errorf("httpd runs as host uid %d; want its block's 1000", uid)
	}
	// By digest: the image itself, whatever names other tests gave it in
	// the shared store.
	_, digest, _ := strings.Cut(st.Image, "@")
	if r := d.ctl("image", "rm", digest); r.code != 1 || !strings.Contains(r.stderr, "is leased") {
		t.Errorf("image rm while it runs: %s", r)
	}
	pid := st.PID
	d.kill9()
	d.restart()
	if st := d.waitRunning("web"); st.PID != pid || st.Restarts != 0 {
		t.Errorf("after the daemon's kill -9: pid %d, %d restarts; want %d adopted as it was", st.PID, st.Restarts, pid)
	}
	d.stop()
	// The lease lapses with the sandbox's init.
	deadline := time.Now().Add(patience)
	for {
		r := d.ctl("image", "rm", digest)
		if r.code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("image rm after the service stopped: %s", r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := d.ctl("image", "prune"); r.code != 0 || strings.Contains(r.stdout, "freed 0 B") {
		t.Errorf("prune: %s", r)
	}
	entries, _ := os.ReadDir(filepath.Join(d.dataDir, "images", "layers", "sha256"))
	if len(entries) != 0 {
		t.Errorf("layers left after prune: %v", entries)
	}
}

// TestImportRefusesACorruptArchive: nothing is left of an import that
// fails, and it says why.
func TestImportRefusesACorruptArchive(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.tar")
	if err := os.WriteFile(bad, []byte("not a tar at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := corral(t, "image", "import", bad)
	if r.code == 0 || !strings.Contains(r.stderr, "import "+bad) {
		t.Errorf("a corrupt archive: %s", r)
	}
	if r := corral(t, "image", "inspect", "bad"); r.code == 0 {
		t.Errorf("inspect after a failed import: %s", r)
	}
}

// TestImportRefusesALayerOverTheLimit: a layer that unpacks past
// --max-layer-size is refused, naming the layer (that nothing is left of
// it is the store's tests', TestImportFailures).
func TestImportRefusesALayerOverTheLimit(t *testing.T) {
	layout := exampleLayout(t)
	// A store of its own: the shared one may hold the example's layer
	// already, and a layer in the store is not unpacked again.
	store := filepath.Join(workDir, "data-"+t.Name())
	t.Cleanup(func() { os.RemoveAll(store) })
	r := corral(t, "--data-dir", store, "image", "import", "--max-layer-size", "256K", layout)
	if r.code == 0 || !strings.Contains(r.stderr, "layer 1 of 1") {
		t.Fatalf("a layer over the limit: %s", r)
	}
	t.Logf("refused: %s", strings.TrimSpace(r.stderr))
	if r := corral(t, "--data-dir", store, "image", "import", "--max-layer-size", "not-a-size", layout); r.code == 0 || !strings.Contains(r.stderr, "--max-layer-size") {
		t.Errorf("a bad size: %s", r)
	}
}
