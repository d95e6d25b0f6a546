package beneath

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
)

func root(t *testing.T) (*Dir, string) {
	t.Helper()
	dir := t.TempDir()
	d, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d, dir
}

func TestOpenRefusesSymlinksAndEscapes(t *testing.T) {
	d, dir := root(t)
	outside := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(outside, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Dir(outside), filepath.Join(dir, "sub", "dirlink")); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"link", "sub/dirlink/secret", "../" + filepath.Base(dir), "/etc/passwd", "sub/../link", ""} {
		if f, err := d.Open(name, unix.O_RDONLY, 0); err == nil {
			f.Close()
			t.Errorf("Open(%q) succeeded, want an error", name)
		}
	}
	// Creating through a symlink is refused too, and leaves the target alone.
	if f, err := d.Open("link", unix.O_WRONLY|unix.O_CREAT|unix.O_TRUNC, 0o644); err == nil {
		f.Close()
		t.Error("Open(link, O_CREAT|O_TRUNC) succeeded")
	}
	if data, _ := os.ReadFile(outside); string(data) != "secret" {
		t.Errorf("target changed: %q", data)
	}
}

func TestOpenFileRefusesFIFOWithoutBlocking(t *testing.T) {
	d, dir := root(t)
	if err := unix.Mkfifo(filepath.Join(dir, "output.log"), 0o644); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		f, err := d.OpenFile("output.log")
		if err == nil {
			f.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("OpenFile opened a FIFO")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OpenFile blocked on a FIFO")
	}
}

func TestMkdirAllRefusesSymlinkOnTheWay(t *testing.T) {
	d, dir := root(t)
	target := t.TempDir()
	if err := os.Symlink(target, filepath.Join(dir, "a")); err != nil {
		t.Fatal(err)
	}
	if sub, err := d.MkdirAll("a/b", 0o755); err == nil {
		sub.Close()
		t.Fatal("MkdirAll through a symlink succeeded")
	}
	if _, err := os.Stat(filepath.Join(target, "b")); err == nil {
		t.Fatal("MkdirAll made a directory through the symlink")
	}
	sub, err := d.MkdirAll("x/y/z", 0o750)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	if fi, err := os.Stat(filepath.Join(dir, "x/y/z")); err != nil || !fi.IsDir() {
		t.Fatalf("x/y/z not made: %v", err)
	}
	again, err := d.MkdirAll("x/y/z", 0o750)
	if err != nil {
		t.Fatalf("MkdirAll of an existing tree: %v", err)
	}
	again.Close()
}

func TestRemoveAllRemovesLinksNotTargets(t *testing.T) {
	d, dir := root(t)
	keep := t.TempDir()
	if err := os.WriteFile(filepath.Join(keep, "file"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	tree := filepath.Join(dir, "tree")
	for _, p := range []string{"a/b/c", "d"} {
		if err := os.MkdirAll(filepath.Join(tree, p), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 600; i++ { // more than one Readdirnames batch
		if err := os.WriteFile(filepath.Join(tree, "a", "f"+string(rune('a'+i%26))+string(rune('a'+i/26))), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(keep, filepath.Join(tree, "a/b/link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(keep, filepath.Join(dir, "toplink")); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveAll("tree"); err != nil {
		t.Fatal(err)
	}
	if err := d.RemoveAll("toplink"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(tree); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("tree still there: %v", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "toplink")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("toplink still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(keep, "file")); err != nil {
		t.Fatalf("a symlink's target was removed: %v", err)
	}
	if err := d.RemoveAll("missing"); err != nil {
		t.Fatalf("RemoveAll of a missing name: %v", err)
	}
}

func TestRemoveAllStopsAtAMountPoint(t *testing.T) {
	testenv.NeedRoot(t, "it makes a bind mount")
	d, dir := root(t)
	mnt := filepath.Join(dir, "root", "usr")
	if err := os.MkdirAll(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	// A bind of a directory of the same filesystem: only the mount table
	// (statx's mount-root attribute) tells it apart.
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount(src, mnt, "", unix.MS_BIND, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Unmount(mnt, unix.MNT_DETACH)
	err := d.RemoveAll("root")
	if !errors.Is(err, ErrCrossesMount) {
		t.Fatalf("RemoveAll over a bind mount: %v, want ErrCrossesMount", err)
	}
	if _, err := os.Stat(filepath.Join(src, "precious")); err != nil {
		t.Fatalf("a file behind the mount was removed: %v", err)
	}
}

func TestProcPathBindsASocketInTheOpenDirAndChmod(t *testing.T) {
	d, dir := root(t)
	sub, err := d.MkdirAll("notify", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	// Swap the directory's name after opening it: the socket still lands
	// in the directory that was opened.
	if err := os.Rename(filepath.Join(dir, "notify"), filepath.Join(dir, "moved")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(t.TempDir(), filepath.Join(dir, "notify")); err != nil {
		t.Fatal(err)
	}
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sub.ProcPath("s.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := sub.Chmod("s.sock", 0o666); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(dir, "moved", "s.sock"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o666 {
		t.Fatalf("socket mode %v, want a socket with 0666", fi.Mode())
	}
	if err := os.Symlink("/etc/passwd", filepath.Join(dir, "moved", "evil")); err != nil {
		t.Fatal(err)
	}
	if err := sub.Chmod("evil", 0o777); err == nil {
		t.Fatal("Chmod followed a symlink")
	}
}

// TestRemoveAllStopsAtADepth: a tree deeper than maxDepth is refused with
// ErrTooDeep, holding at most maxDepth directories open, with a short
// error.
func TestRemoveAllStopsAtADepth(t *testing.T) {
	d, dir := root(t)
	cur, err := d.MkdirAll("deep", 0o755)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < maxDepth+10; i++ {
		next, err := cur.MkdirAll("a", 0o755)
		cur.Close()
		if err != nil {
			t.Fatal(err)
		}
		cur = next
	}
	cur.Close()
	err = d.RemoveAll("deep")
	if !errors.Is(err, ErrTooDeep) || len(err.Error()) > 300 {
		t.Fatalf("RemoveAll of a too deep tree: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "deep")); err != nil {
		t.Fatalf("the too deep tree's top was removed: %v", err)
	}
}
