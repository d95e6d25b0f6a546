package layer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/internal/testenv"
	. "github.com/corral-dev/corral/rootfs/image/imagetest"
	"github.com/corral-dev/corral/rootfs/image/layer"
)

func unpack(t *testing.T, dir string, raw []byte, opts layer.Options) (*layer.Result, error) {
	t.Helper()
	return layer.Unpack(context.Background(), dir, bytes.NewReader(raw), Digest(raw), opts)
}

func needRoot(t *testing.T) {
	testenv.NeedRoot(t, "unpacking sets owners, makes whiteout devices and trusted.* xattrs")
}

// TestUnpackOverlayForm: whiteouts, opaque directories, hard links,
// symlinks, owners, setuid bits and xattrs end up as overlayfs stacks them.
func TestUnpackOverlayForm(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	raw := Tar(t,
		Entry{Name: "./", Type: '5', Mode: 0o755},
		Dir("bin/"),
		Entry{Name: "bin/su", Body: "su", Mode: 0o4755},
		Entry{Name: "bin/wall", Body: "wall", Mode: 0o2755, GID: 5},
		Hardlink("bin/su-link", "bin/su"),
		Symlink("bin/sh", "busybox"),
		Symlink("abs", "/etc/passwd"),
		Entry{Name: "bin/ping", Body: "ping", Mode: 0o755, Xattrs: map[string]string{"user.note": "hi"}},
		Entry{Name: "home/", Type: '5', Mode: 0o750, UID: 1000, GID: 1000},
		Opaque("home"),
		Entry{Name: "home/user", Body: "mine", UID: 1000, GID: 1000, Mode: 0o600},
		Whiteout("etc/motd"),
		Entry{Name: "tmp/", Type: '5', Mode: 0o1777},
		Entry{Name: "fifo", Type: '6', Mode: 0o600},
	)
	res, err := unpack(t, dir, raw, layer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Skipped) != 0 || res.Size != int64(len(raw)) || res.Entries != 14 {
		t.Fatalf("result %+v, want no skips, size %d, 14 entries", res, len(raw))
	}

	mode := func(name string) os.FileMode {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}
	stat := func(name string) *syscall.Stat_t {
		t.Helper()
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Sys().(*syscall.Stat_t)
	}
	if m := mode("bin/su"); m != 0o755|os.ModeSetuid {
		t.Errorf("bin/su mode %v, want setuid 0755", m)
	}
	if m, st := mode("bin/wall"), stat("bin/wall"); m != 0o755|os.ModeSetgid || st.Gid != 5 {
		t.Errorf("bin/wall mode %v gid %d, want setgid 0755 gid 5", m, st.Gid)
	}
	if a, b := stat("bin/su"), stat("bin/su-link"); a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("bin/su-link is not a hard link of bin/su (inodes %d, %d; nlink %d)", a.Ino, b.Ino, a.Nlink)
	}
	for link, target := range map[string]string{"bin/sh": "busybox", "abs": "/etc/passwd"} {
		if got, err := os.Readlink(filepath.Join(dir, link)); err != nil || got != target {
			t.Errorf("%s -> %q (%v), want %q", link, got, err, target)
		}
	}
	if v, err := getxattr(filepath.Join(dir, "bin/ping"), "user.note"); err != nil || v != "hi" {
		t.Errorf("bin/ping user.note = %q (%v), want hi", v, err)
	}
	if v, err := getxattr(filepath.Join(dir, "home"), "trusted.overlay.opaque"); err != nil || v != "y" {
		t.Errorf("home trusted.overlay.opaque = %q (%v), want y", v, err)
	}
	if st, m := stat("home"), mode("home"); st.Uid != 1000 || st.Gid != 1000 || m.Perm() != 0o750 {
		t.Errorf("home owner %d:%d mode %v, want 1000:1000 0750", st.Uid, st.Gid, m)
	}
	if _, err := os.Lstat(filepath.Join(dir, "home/.wh..wh..opq")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the opaque marker was unpacked as a file: %v", err)
	}
	if st := stat("etc/motd"); st.Mode&syscall.S_IFMT != syscall.S_IFCHR || st.Rdev != 0 {
		t.Errorf("etc/motd is not a 0/0 character device (mode %o rdev %d)", st.Mode, st.Rdev)
	}
	if _, err := os.Lstat(filepath.Join(dir, "etc/.wh.motd")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the whiteout was unpacked as a file: %v", err)
	}
	if m := mode("tmp"); m != os.ModeDir|os.ModeSticky|0o777 {
		t.Errorf("tmp mode %v, want sticky 0777", m)
	}
	if m := mode("fifo"); m.Type() != os.ModeNamedPipe {
		t.Errorf("fifo mode %v, want a named pipe", m)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "home/user")); err != nil || string(b) != "mine" {
		t.Errorf("home/user = %q (%v)", b, err)
	}
}

// TestUnpackOverlayXattrsEscaped: a layer cannot set overlayfs's own
// xattrs (opaque, redirect, metacopy): they are stored escaped, as
// trusted.overlay.overlay.*, which overlayfs shows as the layer's data.
func TestUnpackOverlayXattrsEscaped(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	raw := Tar(t, Entry{Name: "d/", Type: '5', Xattrs: map[string]string{"trusted.overlay.opaque": "y", "trusted.overlay.redirect": "/etc"}})
	if _, err := unpack(t, dir, raw, layer.Options{}); err != nil {
		t.Fatal(err)
	}
	d := filepath.Join(dir, "d")
	for _, x := range []string{"trusted.overlay.opaque", "trusted.overlay.redirect"} {
		if v, err := getxattr(d, x); err == nil {
			t.Errorf("the layer set %s = %q on d", x, v)
		}
	}
	if v, err := getxattr(d, "trusted.overlay.overlay.redirect"); err != nil || v != "/etc" {
		t.Errorf("trusted.overlay.overlay.redirect = %q (%v), want it escaped", v, err)
	}
}

// TestUnpackCompressions: gzip, zstd and plain tar give the same layer,
// and the diff ID is that of the uncompressed tar in each case.
func TestUnpackCompressions(t *testing.T) {
	needRoot(t)
	raw := Tar(t, Dir("a/"), File("a/f", "hello"))
	for name, blob := range map[string][]byte{"plain": raw, "gzip": Gzip(t, raw), "zstd": Zstd(t, raw)} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			res, err := layer.Unpack(context.Background(), dir, bytes.NewReader(blob), Digest(raw), layer.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if b, err := os.ReadFile(filepath.Join(dir, "a/f")); err != nil || string(b) != "hello" {
				t.Fatalf("a/f = %q (%v)", b, err)
			}
			if res.Size != int64(len(raw)) {
				t.Errorf("size %d, want %d", res.Size, len(raw))
			}
		})
	}
}

// TestUnpackDevicesSkipped: device nodes, and hard links to them, are
// left out and listed; FIFOs are kept.
func TestUnpackDevicesSkipped(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	raw := Tar(t, Dir("dev/"), Device("dev/null", 1, 3, false), Device("dev/sda", 8, 0, true),
		Hardlink("dev/null2", "dev/null"), Entry{Name: "dev/initctl", Type: '6'}, File("ok", "ok"))
	res, err := unpack(t, dir, raw, layer.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"dev/null: character device 1:3", "dev/sda: block device 8:0", "dev/null2: hard link to the skipped dev/null"}
	if len(res.Skipped) != len(want) {
		t.Fatalf("skipped %q, want %d notes", res.Skipped, len(want))
	}
	for i, w := range want {
		if !strings.HasPrefix(res.Skipped[i], w) {
			t.Errorf("skipped[%d] = %q, want it to start %q", i, res.Skipped[i], w)
		}
	}
	for _, n := range []string{"dev/null", "dev/sda", "dev/null2"} {
		if _, err := os.Lstat(filepath.Join(dir, n)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s was made: %v", n, err)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dir, "dev/initctl")); err != nil || fi.Mode().Type() != os.ModeNamedPipe {
		t.Errorf("dev/initctl: %v, %v; want a FIFO", fi, err)
	}
}

// TestUnpackRefusals: a layer over the size limit, one whose content is
// not its diff ID, and a corrupt stream are refused with their class of
// error, naming the entry where there is one.
func TestUnpackRefusals(t *testing.T) {
	needRoot(t)
	big := strings.Repeat("x", 4096)
	many := []Entry{}
	for i := range 40 {
		many = append(many, File(fmt.Sprintf("f%d", i), ""))
	}
	good := Tar(t, File("a", "hello"), File("b", "world"))
	gz := Gzip(t, good)
	for _, tc := range []struct {
		name   string
		blob   []byte
		diffID []byte // the tar the diff ID is of; blob if nil
		limit  int64
		want   error
		entry  string
	}{
		{name: "file over the limit", blob: Tar(t, File("small", "s"), File("big", big)), limit: 4000, want: layer.ErrTooLarge, entry: "big"},
		{name: "stream over the limit", blob: Tar(t, many...), limit: 8192, want: layer.ErrTooLarge},
		{name: "diff ID", blob: good, diffID: Tar(t, File("a", "hello")), want: layer.ErrDiffIDMismatch},
		{name: "garbage", blob: []byte(strings.Repeat("not a tar ", 100)), want: layer.ErrCorrupt},
		{name: "truncated in a file", blob: good[:1538], want: layer.ErrCorrupt, entry: "b"},
		// Go's tar reader takes an archive that ends between entries as
		// whole: the diff ID is what tells.
		{name: "truncated between entries", blob: good[:1024], diffID: good, want: layer.ErrDiffIDMismatch},
		{name: "truncated gzip", blob: gz[:len(gz)/2], diffID: good, want: layer.ErrCorrupt},
		{name: "corrupt gzip", blob: append(append(gz[:10:10], bytes.Repeat([]byte{0xff}, 40)...), gz[50:]...), diffID: good, want: layer.ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ofDiffID := tc.diffID
			if ofDiffID == nil {
				ofDiffID = tc.blob
			}
			_, err := layer.Unpack(context.Background(), t.TempDir(), bytes.NewReader(tc.blob), Digest(ofDiffID), layer.Options{MaxSize: tc.limit})
			if !errors.Is(err, tc.want) {
				t.Fatalf("error %v, want %v", err, tc.want)
			}
			var ee *layer.EntryError
			if tc.entry != "" && (!errors.As(err, &ee) || ee.Entry != tc.entry) {
				t.Errorf("error %v does not name entry %q", err, tc.entry)
			}
		})
	}
}

// TestUnpackCancelled: a cancelled context stops the unpacking.
func TestUnpackCancelled(t *testing.T) {
	needRoot(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	raw := Tar(t, File("a", "b"))
	if _, err := layer.Unpack(ctx, t.TempDir(), bytes.NewReader(raw), Digest(raw), layer.Options{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("error %v, want context.Canceled", err)
	}
}

// TestUnpackHostile: no entry writes, links or deletes outside the layer's
// directory, whatever its name or the links before it. Each tar is
// unpacked beside a directory "outside" holding a victim file; afterwards
// everything but the layer's directory is as it was. Whether the entry is
// refused or placed inside the layer, the test says which.
func TestUnpackHostile(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name    string
		entries func(outside string) []Entry
		// inside is a file the entry lands at in the layer, if it is
		// placed rather than refused; "OUT" stands for the outside
		// directory's path.
		inside string
		refuse bool
	}{
		{name: "dot-dot", entries: func(string) []Entry { return []Entry{File("../../outside/new", "x")} }, inside: "outside/new"},
		{name: "absolute name", entries: func(o string) []Entry { return []Entry{File(o+"/new", "x")} }, inside: "OUT/new"},
		{name: "absolute symlink parent", entries: func(o string) []Entry {
			return []Entry{Symlink("link", o), File("link/new", "x")}
		}, inside: "OUT/new"},
		{name: "relative symlink parent", entries: func(string) []Entry {
			return []Entry{Symlink("link", "../../../../../../outside"), File("link/new", "x")}
		}, inside: "outside/new"},
		{name: "symlink to root then write", entries: func(string) []Entry {
			return []Entry{Symlink("root", "/"), File("root/corral-test-escape", "x")}
		}, inside: "corral-test-escape"},
		{name: "symlink then overwrite", entries: func(o string) []Entry {
			return []Entry{Symlink("victim", o+"/victim"), File("victim", "pwned")}
		}, inside: "victim"},
		{name: "nested symlinks", entries: func(o string) []Entry {
			return []Entry{Symlink("a", "b/c"), Symlink("b", "../.."), Dir("c/"), File("a/victim", "pwned"), Symlink("d", o), Symlink("e", "d/../d"), File("e/victim", "pwned")}
		}},
		{name: "hard link out by dot-dot", entries: func(string) []Entry {
			return []Entry{Hardlink("hl", "../outside/victim")}
		}, refuse: true},
		{name: "hard link out by absolute name", entries: func(o string) []Entry {
			return []Entry{Hardlink("hl", o+"/victim")}
		}, refuse: true},
		{name: "hard link through a symlink", entries: func(o string) []Entry {
			return []Entry{Symlink("link", o), Hardlink("hl", "link/victim")}
		}, refuse: true},
		{name: "hard link then write", entries: func(o string) []Entry {
			return []Entry{File("mine", "x"), Hardlink("hl", "mine"), Symlink("link", o), File("link/victim", "pwned")}
		}, inside: "OUT/victim"},
		{name: "whiteout through a symlink", entries: func(o string) []Entry {
			return []Entry{Symlink("link", o), Whiteout("link/victim")}
		}},
		{name: "opaque through a symlink", entries: func(o string) []Entry {
			return []Entry{Symlink("link", o), Opaque("link")}
		}},
		{name: "directory over a symlink", entries: func(o string) []Entry {
			return []Entry{Symlink("link", o), Entry{Name: "link/", Type: '5', Mode: 0o777, UID: 4242}, File("link/new", "x")}
		}},
		{name: "root turned symlink", entries: func(o string) []Entry {
			return []Entry{Symlink(".", o), File("new", "x")}
		}, refuse: true},
		{name: "xattr through a symlink", entries: func(o string) []Entry {
			return []Entry{Symlink("link", o), Entry{Name: "link/victim", Body: "pwned", Xattrs: map[string]string{"user.pwned": "1"}}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := t.TempDir()
			outside := filepath.Join(parent, "outside")
			if err := os.Mkdir(outside, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(outside, "victim"), []byte("original"), 0o644); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(parent, "layer")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			before := snapshot(t, parent, dir)
			_, err := unpack(t, dir, Tar(t, tc.entries(outside)...), layer.Options{})
			if after := snapshot(t, parent, dir); !slices.Equal(before, after) {
				t.Fatalf("outside the layer changed:\nbefore %q\nafter  %q", before, after)
			}
			if _, err := os.Lstat("/corral-test-escape"); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("/corral-test-escape was made on the host: %v", err)
			}
			if tc.refuse && err == nil {
				t.Fatal("unpacked, want it refused")
			}
			if !tc.refuse && err != nil {
				t.Fatalf("refused (%v), want it placed inside", err)
			}
			if err != nil {
				var ee *layer.EntryError
				if !errors.As(err, &ee) {
					t.Errorf("error %v names no entry", err)
				}
				t.Logf("refused: %v", err)
			}
			if tc.inside != "" {
				inside := strings.ReplaceAll(tc.inside, "OUT", strings.TrimPrefix(outside, "/"))
				if fi, err := os.Lstat(filepath.Join(dir, inside)); err != nil || !fi.Mode().IsRegular() {
					t.Errorf("%s is not a file in the layer: %v", inside, err)
				}
			}
		})
	}
}

// snapshot lists every path under root but skip, with its type, mode,
// owner, link count, content and xattrs.
func snapshot(t *testing.T, root, skip string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == skip {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%s %v %d:%d n%d", path, fi.Mode(), st.Uid, st.Gid, st.Nlink)
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			line += " " + string(b)
		}
		if fi.Mode()&os.ModeSymlink == 0 {
			buf := make([]byte, 4096)
			n, _ := unix.Llistxattr(path, buf)
			line += " xattrs[" + string(buf[:n]) + "]"
		}
		out = append(out, line)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func getxattr(path, name string) (string, error) {
	buf := make([]byte, 256)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// TestUnpackImplicitDirs: the parents a layer has no entry for are 0755
// whatever the umask; those it has keep their mode.
func TestUnpackImplicitDirs(t *testing.T) {
	needRoot(t)
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	dir := t.TempDir()
	raw := Tar(t, File("implicit/parent/f", "x"), Entry{Name: "explicit/", Type: '5', Mode: 0o710}, File("explicit/sub/f", "y"), Whiteout("wh/parent/gone"))
	if _, err := unpack(t, dir, raw, layer.Options{}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{"implicit": 0o755, "implicit/parent": 0o755, "explicit": 0o710, "explicit/sub": 0o755, "wh/parent": 0o755} {
		if fi, err := os.Lstat(filepath.Join(dir, name)); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: %v, %v; want %v", name, fi.Mode(), err, want)
		}
	}
}
