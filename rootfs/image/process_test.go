package image_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/rootfs/image"
	. "github.com/corral-dev/corral/rootfs/image/imagetest"
	"github.com/corral-dev/corral/rootfs/image/source"
)

// TestMain runs the helper process when CORRAL_IMAGE_HELPER is set: this
// test binary then imports an image into a store, as another corral
// process would, instead of running the tests. It prints each hook point
// it passes; at the point HOLD_AT it says "holding" and waits HOLD_MS
// milliseconds (for ever if 0).
// The main goroutine keeps the main thread: overlayTree unshares a mount
// namespace on a locked thread, and Go parks rather than ends the main
// thread, which would leave /proc/self in that private namespace.
func init() { runtime.LockOSThread() }

func TestMain(m *testing.M) {
	if os.Getenv("CORRAL_IMAGE_HELPER") == "" {
		os.Exit(m.Run())
	}
	holdAt, holdMS := os.Getenv("HOLD_AT"), os.Getenv("HOLD_MS")
	if fsize := os.Getenv("FSIZE"); fsize != "" {
		// Writes past FSIZE bytes in a file fail (EFBIG), as on a full
		// disk.
		var n uint64
		fmt.Sscan(fsize, &n)
		if err := unix.Setrlimit(unix.RLIMIT_FSIZE, &unix.Rlimit{Cur: n, Max: n}); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
	}
	image.SetTestHook(func(point string) {
		fmt.Println(point)
		if holdAt != "" && point == holdAt {
			fmt.Println("holding")
			if holdMS == "0" {
				// Sleep, not select{}: a process with every goroutine
				// blocked would end itself ("deadlock"), not wait for
				// the kill.
				time.Sleep(time.Hour)
			}
			var ms int
			fmt.Sscan(holdMS, &ms)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		}
	})
	s, err := image.Open(os.Getenv("STORE"))
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	if _, err := s.Import(context.Background(), source.Dir(os.Getenv("SRC")), image.ImportOptions{Pick: os.Getenv("PICK")}); err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	fmt.Println("done")
	os.Exit(0)
}

// helper is a running helper process and its output.
type helper struct {
	cmd   *exec.Cmd
	lines chan string
	out   []string
}

func startHelper(t *testing.T, env ...string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), append([]string{"CORRAL_IMAGE_HELPER=1"}, env...)...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
		close(h.lines)
	}()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return h
}

// waitFor reads the helper's output up to the line want.
func (h *helper) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-h.lines:
			if !ok {
				t.Fatalf("the helper ended before %q; it said %q", want, h.out)
			}
			h.out = append(h.out, line)
			if line == want {
				return
			}
		case <-timeout:
			t.Fatalf("the helper did not say %q in a minute; it said %q", want, h.out)
		}
	}
}

// wait reads the helper's output to its end and waits for it to exit.
func (h *helper) wait(t *testing.T) {
	t.Helper()
	timeout := time.After(time.Minute)
	for {
		select {
		case line, ok := <-h.lines:
			if !ok {
				h.cmd.Wait()
				return
			}
			h.out = append(h.out, line)
		case <-timeout:
			t.Fatalf("the helper did not end in a minute; it said %q", h.out)
		}
	}
}

func (h *helper) said(line string) bool {
	for _, l := range h.out {
		if l == line {
			return true
		}
	}
	return false
}

// TestImportsAcrossProcesses: two processes import two images that share
// a layer into one store; the second, started while the first unpacks
// the shared layer, waits for it rather than unpacking it again, and the
// index has both images.
func TestImportsAcrossProcesses(t *testing.T) {
	s := open(t)
	base := GzipLayer(t, File("base", strings.Repeat("b", 1<<20)))
	c := NewContent()
	a := c.Image(t, Spec{Layers: []Layer{base, GzipLayer(t, File("a", "a"))}})
	own := GzipLayer(t, File("b", "b"))
	b := c.Image(t, Spec{Layers: []Layer{base, own}})
	src := t.TempDir()
	c.WriteLayout(t, src, Named(a, "a"), Named(b, "b"))
	env := []string{"STORE=" + s.Dir(), "SRC=" + src}

	first := startHelper(t, append(env, "PICK=a", "HOLD_AT=unpacked "+base.DiffID.String(), "HOLD_MS=1000")...)
	first.waitFor(t, "holding")
	second := startHelper(t, append(env, "PICK=b")...)
	first.waitFor(t, "done")
	second.waitFor(t, "done")
	if !first.said("unpack " + base.DiffID.String()) {
		t.Errorf("the first did not unpack the shared layer: %q", first.out)
	}
	if second.said("unpack " + base.DiffID.String()) {
		t.Errorf("the second unpacked the shared layer again: %q", second.out)
	}
	if !second.said("unpack " + own.DiffID.String()) {
		t.Errorf("the second did not unpack its own layer: %q", second.out)
	}
	list, err := s.List()
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %v, %v", list, err)
	}
	assertNoDebris(t, s)
}

// TestKilledImport: an import killed (SIGKILL) with a blob written but
// not published, or a layer unpacked but not published, leaves nothing
// under the final names; Open sweeps what it left, and the next import
// completes.
func TestKilledImport(t *testing.T) {
	l1, l2 := GzipLayer(t, File("one", "1")), GzipLayer(t, File("two", "2"))
	c := NewContent()
	d := c.Image(t, Spec{Layers: []Layer{l1, l2}})
	src := t.TempDir()
	c.WriteLayout(t, src, d)
	for _, tc := range []struct {
		at      string
		leftDir string // where the leftover is
		left    string // its name's prefix
		final   string // the name that must not be there
	}{
		{at: "blob " + Digest(l2.Blob).String(), leftDir: "blobs/sha256", left: ".tmp-", final: "blobs/sha256/" + Digest(l2.Blob).Hex},
		{at: "unpacked " + l2.DiffID.String(), leftDir: "layers/sha256", left: ".tmp-" + l2.DiffID.Hex, final: "layers/sha256/" + l2.DiffID.Hex},
	} {
		t.Run(tc.at, func(t *testing.T) {
			s := open(t)
			h := startHelper(t, "STORE="+s.Dir(), "SRC="+src, "HOLD_AT="+tc.at, "HOLD_MS=0")
			h.waitFor(t, "holding")
			h.cmd.Process.Signal(syscall.SIGKILL)
			h.cmd.Wait()
			if ws := h.cmd.ProcessState.Sys().(syscall.WaitStatus); !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
				t.Fatalf("the helper ended by itself (%v), not by the kill", h.cmd.ProcessState)
			}

			if _, err := os.Lstat(filepath.Join(s.Dir(), tc.final)); err == nil {
				t.Fatalf("%s is there after the kill", tc.final)
			}
			if n := countPrefix(t, filepath.Join(s.Dir(), tc.leftDir), tc.left); n != 1 {
				t.Fatalf("%d leftovers %s* in %s, want the killed import's one", n, tc.left, tc.leftDir)
			}
			if n := countPrefix(t, filepath.Join(s.Dir(), "leases"), d.Digest.Hex); n != 1 {
				t.Fatalf("%d leases, want the killed import's one", n)
			}
			if list, _ := s.List(); len(list) != 0 {
				t.Fatalf("the index has %d images", len(list))
			}

			s2, err := image.Open(s.Dir())
			if err != nil {
				t.Fatal(err)
			}
			assertNoDebris(t, s2)
			img, err := s2.Import(ctx, source.Dir(src), image.ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got := tree(t, img.LayerDirs()[1]); got["two"] != `file 644 "2"` {
				t.Errorf("layer 2 after the retry: %v", got)
			}
		})
	}
}

// TestOpenSweeps: Open removes what crashed writers left (temporary blobs
// and index files of dead processes, half-unpacked and half-deleted
// layers, notes of layers never published, scratch directories, leases of
// dead processes) and keeps what live ones are writing.
func TestOpenSweeps(t *testing.T) {
	s := open(t)
	dead := deadPID(t)
	diffID := v1.Hash{Algorithm: "sha256", Hex: strings.Repeat("ab", 32)}
	live := fmt.Sprintf(".tmp-%d-live", os.Getpid())
	for path, dir := range map[string]bool{
		fmt.Sprintf("blobs/sha256/.tmp-%d-123", dead):                      false,
		fmt.Sprintf(".tmp-%d-456", dead):                                   false,
		fmt.Sprintf("tmp/.tmp-%d-789", dead):                               true,
		"layers/sha256/.tmp-" + diffID.Hex + "-1":                          true,
		"layers/sha256/.del-" + diffID.Hex + "-2":                          true,
		"layers/sha256/" + diffID.Hex + ".json":                            false,
		fmt.Sprintf("layers/sha256/.tmp-%d-4", dead):                       false, // a note written aside
		fmt.Sprintf("leases/%s-%d-3.json", strings.Repeat("cd", 32), dead): false,
		"blobs/sha256/" + live:                                             false,
	} {
		p := filepath.Join(s.Dir(), path)
		var err error
		if dir {
			err = os.MkdirAll(filepath.Join(p, "sub"), 0o755)
		} else {
			err = os.WriteFile(p, []byte(fmt.Sprintf(`{"image":"sha256:%s","pid":%d,"start":1}`, strings.Repeat("cd", 32), dead)), 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, err := image.Open(s.Dir()); err != nil {
		t.Fatal(err)
	}
	var left []string
	filepath.Walk(s.Dir(), func(path string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() && filepath.Base(path) != "index.lock" {
			left = append(left, strings.TrimPrefix(path, s.Dir()+"/"))
		}
		return nil
	})
	if len(left) != 1 || left[0] != "blobs/sha256/"+live {
		t.Errorf("after Open: %q, want only the live writer's file", left)
	}
}

// deadPID is the PID of a process that has ended.
func deadPID(t *testing.T) int {
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	return cmd.Process.Pid
}

func countPrefix(t *testing.T, dir, prefix string) int {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			n++
		}
	}
	return n
}

// TestWriteFailsMidFile: an import whose writes fail mid-file (a file
// size limit, as a full disk does) while it stores a blob, or while it
// unpacks a layer, fails saying so and leaves no partial blob or layer;
// the next import, with room, completes.
func TestWriteFailsMidFile(t *testing.T) {
	big := GzipLayer(t, File("big", strings.Repeat("incompressible? no: ", 1<<16)))
	random := make([]byte, 200<<10)
	for i := range random {
		random[i] = byte(i*7919 + i/251)
	}
	noisy := Layer{Blob: Tar(t, File("noise", string(random)))}
	noisy.MediaType, noisy.DiffID = "application/vnd.oci.image.layer.v1.tar", Digest(noisy.Blob)
	for _, tc := range []struct {
		name  string
		layer Layer
	}{
		{"blob", noisy}, // a 200 KiB blob
		{"unpack", big}, // a small blob, a 1.2 MiB file
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			c := NewContent()
			d := c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File("small", "s")), tc.layer}})
			src := t.TempDir()
			c.WriteLayout(t, src, d)
			h := startHelper(t, "STORE="+s.Dir(), "SRC="+src, "FSIZE=102400")
			h.wait(t)
			t.Logf("the import said %q", h.out)
			if !strings.Contains(strings.Join(h.out, "\n"), "file too large") {
				t.Fatalf("the import did not fail on a write: %q", h.out)
			}
			if h.said("done") {
				t.Fatal("the import completed")
			}
			assertNoDebris(t, s)
			if _, err := os.Lstat(filepath.Join(s.Dir(), "layers/sha256", tc.layer.DiffID.Hex)); err == nil {
				t.Error("the layer is there")
			}
			if _, err := os.Lstat(filepath.Join(s.Dir(), "blobs/sha256", Digest(tc.layer.Blob).Hex)); err == nil && tc.name == "blob" {
				t.Error("the blob is there")
			}
			if _, err := s.Import(ctx, source.Dir(src), image.ImportOptions{}); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestLeaseTransfer: a lease handed to another process holds the image
// while that process lives and lapses when it ends; the image's leases of
// ended holders go at the next transfer, so a service restarted over and
// over does not leave one lease per start.
func TestLeaseTransfer(t *testing.T) {
	s := open(t)
	c := NewContent()
	d := c.Image(t, Spec{Layers: []Layer{GzipLayer(t, File("f", "f"))}})
	if _, err := s.Import(ctx, layout(t, c, Named(d, "app:1")), image.ImportOptions{}); err != nil {
		t.Fatal(err)
	}
	leases := filepath.Join(s.Dir(), "leases")
	transfer := func() *exec.Cmd {
		t.Helper()
		child := exec.Command("sleep", "100")
		if err := child.Start(); err != nil {
			t.Fatal(err)
		}
		l, err := s.Lease(ctx, "app:1", 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := l.Transfer(child.Process.Pid); err != nil {
			t.Fatal(err)
		}
		return child
	}
	for i := 0; i < 3; i++ {
		child := transfer()
		if err := s.Remove(ctx, d.Digest.String()); !errors.Is(err, image.ErrInUse) {
			t.Fatalf("remove while the child holds it: %v, want ErrInUse", err)
		}
		if n := countPrefix(t, leases, d.Digest.Hex); n != 1 {
			t.Errorf("round %d: %d leases of the image, want the child's alone", i, n)
		}
		_ = child.Process.Kill()
		_ = child.Wait()
	}
	if err := s.Remove(ctx, d.Digest.String()); err != nil {
		t.Errorf("remove once every holder ended: %v", err)
	}
}
