//go:build linux && cgo && seccomp

package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// countCompiles wraps the cache's compiler for the rest of the test and
// returns the number of compilations so far.
func countCompiles(t *testing.T) func() int64 {
	t.Helper()
	var n atomic.Int64
	orig := compile
	compile = func(p *rspec.LinuxSeccomp) ([]byte, error) {
		n.Add(1)
		return orig(p)
	}
	t.Cleanup(func() { compile = orig })
	return n.Load
}

// readAll reads f from where it is and closes it.
func readAll(t *testing.T, f *os.File) []byte {
	t.Helper()
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func stat(t *testing.T, path string) *syscall.Stat_t {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t)
}

// programs lists the .bpf files in dir.
func programs(t *testing.T, dir string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.bpf"))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestCacheOpenTwiceCompilesOnce(t *testing.T) {
	compiles := countCompiles(t)
	c := &Cache{Dir: filepath.Join(t.TempDir(), "a", "cache")}
	p := defaultProfile(t)

	f, err := c.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	path := cachePath(t, c, p)
	first := readAll(t, f)
	if want := compileOK(t, p); !bytes.Equal(first, want) {
		t.Fatal("cached program differs from Compile's")
	}
	before := stat(t, path)

	time.Sleep(10 * time.Millisecond) // so that a rewrite would show in the mtime
	f, err = c.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if again := readAll(t, f); !bytes.Equal(again, first) {
		t.Error("second Open gave different content")
	}
	after := stat(t, path)
	if after.Ino != before.Ino || after.Mtim != before.Mtim {
		t.Error("second Open rewrote the file")
	}
	if n := compiles(); n != 1 {
		t.Errorf("%d compilations for two Opens of one profile, want 1", n)
	}
	if got := programs(t, c.Dir); len(got) != 1 {
		t.Errorf("cache holds %q, want one program", got)
	}
}

func TestCachePermissions(t *testing.T) {
	c := &Cache{Dir: filepath.Join(t.TempDir(), "new", "cache")}
	f, err := c.Open(defaultProfile(t))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for path, want := range map[string]os.FileMode{c.Dir: os.ModeDir | 0o700, cachePath(t, c, defaultProfile(t)): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode(), want)
		}
	}
	// Handed to the init sealed, at the start: not the cache's file, and
	// not writable even through a reopen of /proc/self/fd.
	if _, err := f.Write([]byte{0}); err == nil {
		t.Error("the returned file is writable")
	}
	seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
	if want := unix.F_SEAL_WRITE | unix.F_SEAL_GROW | unix.F_SEAL_SHRINK | unix.F_SEAL_SEAL; err != nil || seals&want != want {
		t.Errorf("seals %#x (%v), want %#x", seals, err, want)
	}
	if link, _ := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd())); !strings.HasPrefix(link, "/memfd:corral-seccomp:") {
		t.Errorf("the returned file is %q, want a memfd", link)
	}
	if again, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", f.Fd()), os.O_RDWR, 0); err == nil {
		_, werr := again.WriteAt([]byte{0}, 0)
		again.Close()
		if werr == nil {
			t.Error("a reopen of the returned file through /proc could write it")
		}
	}
	if off, err := f.Seek(0, io.SeekCurrent); err != nil || off != 0 {
		t.Errorf("the returned file is at offset %d (%v), want 0", off, err)
	}
	// Nothing but programs and the lock file is left behind.
	entries, err := os.ReadDir(c.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".bpf") && e.Name() != ".lock" {
			t.Errorf("left in the cache: %s", e.Name())
		}
	}
}

func TestCacheRefusesUnsafeDir(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if f, err := (&Cache{Dir: dir}).Open(defaultProfile(t)); err == nil {
		f.Close()
		t.Fatal("Open used a world-writable directory, where anyone can plant a filter")
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if f, err := (&Cache{Dir: dir}).Open(defaultProfile(t)); err == nil {
		f.Close()
		t.Fatal("Open used a directory owned by another user")
	}
	if _, err := (&Cache{}).Open(defaultProfile(t)); err == nil {
		t.Fatal("Open with no directory succeeded")
	}
}

// cachePath is where c keeps p's program.
func cachePath(t *testing.T, c *Cache, p *rspec.LinuxSeccomp) string {
	t.Helper()
	path, err := c.path(p)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestCacheRefusesFilesSomeoneElseWrote: a program file with another
// owner, a group or other bit, or a second link is refused outright (not
// rebuilt, which would hide that someone writes in the cache).
func TestCacheRefusesFilesSomeoneElseWrote(t *testing.T) {
	p := defaultProfile(t)
	for _, tc := range []struct {
		desc   string
		tamper func(path string) error
	}{
		{"another owner", func(path string) error { return os.Chown(path, 65534, 65534) }},
		{"group readable", func(path string) error { return os.Chmod(path, 0o640) }},
		{"a second link", func(path string) error { return os.Link(path, path+".link") }},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			c := &Cache{Dir: t.TempDir()}
			f, err := c.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			f.Close()
			path := cachePath(t, c, p)
			if err := tc.tamper(path); err != nil {
				t.Fatal(err)
			}
			if f, err := c.Open(p); err == nil {
				f.Close()
				t.Fatal("Open used a program file someone else may have written")
			} else if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
		})
	}
}

func TestCacheDistinctProfiles(t *testing.T) {
	compiles := countCompiles(t)
	c := &Cache{Dir: t.TempDir()}
	plain, admin := defaultProfile(t), defaultProfile(t, "CAP_SYS_ADMIN")
	f1, err := c.Open(plain)
	if err != nil {
		t.Fatal(err)
	}
	f2, err := c.Open(admin)
	if err != nil {
		t.Fatal(err)
	}
	if f1.Name() == f2.Name() {
		t.Fatalf("two profiles share %s", f1.Name())
	}
	if bytes.Equal(readAll(t, f1), readAll(t, f2)) {
		t.Error("two different profiles gave the same program")
	}
	if n := compiles(); n != 2 {
		t.Errorf("%d compilations, want 2", n)
	}

	// The key is the profile's content, not the object: an equal copy
	// (here, through JSON and back, as a profile file would be) hits.
	body, err := json.Marshal(plain)
	if err != nil {
		t.Fatal(err)
	}
	var copied rspec.LinuxSeccomp
	if err := json.Unmarshal(body, &copied); err != nil {
		t.Fatal(err)
	}
	f3, err := c.Open(&copied)
	if err != nil {
		t.Fatal(err)
	}
	f3.Close()
	if f3.Name() != f1.Name() || compiles() != 2 {
		t.Errorf("an equal profile was compiled again into %s", f3.Name())
	}
}

func TestCacheRebuildsDamagedFiles(t *testing.T) {
	p := defaultProfile(t)
	want := compileOK(t, p)
	for _, tc := range []struct {
		desc   string
		damage func(path string) error
	}{
		{"truncated mid-instruction", func(path string) error { return os.Truncate(path, 8*10+3) }},
		{"emptied", func(path string) error { return os.Truncate(path, 0) }},
		{"last instruction not a return", func(path string) error {
			damaged, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			copy(damaged[len(damaged)-insnSize:], encode([]bpf.RawInstruction{{Op: bpfLdWAbs}}))
			return os.WriteFile(path, damaged, 0o600)
		}},
		{"program changed, header kept", func(path string) error {
			damaged, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			// Allow everything: RET ALLOW as the first instruction.
			copy(damaged[headerSize:], encode([]bpf.RawInstruction{{Op: 0x06, K: 0x7fff0000}}))
			return os.WriteFile(path, damaged, 0o600)
		}},
		{"a bare program without header", func(path string) error {
			return os.WriteFile(path, want, 0o600)
		}},
		{"truncated to whole instructions, a jump past the end", func(path string) error {
			// The 10th instruction of the stubbed program is a conditional
			// jump; the file ends right after it.
			return os.Truncate(path, insnSize*10)
		}},
		{"replaced by a symlink", func(path string) error {
			other := filepath.Join(filepath.Dir(path), "other")
			if err := os.WriteFile(other, want, 0o600); err != nil {
				return err
			}
			if err := os.Remove(path); err != nil {
				return err
			}
			return os.Symlink(other, path)
		}},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			compiles := countCompiles(t)
			c := &Cache{Dir: t.TempDir()}
			f, err := c.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			path := cachePath(t, c, p)
			f.Close()
			if err := tc.damage(path); err != nil {
				t.Fatal(err)
			}

			f, err = c.Open(p)
			if err != nil {
				t.Fatalf("Open after damage: %v", err)
			}
			if got := readAll(t, f); !bytes.Equal(got, want) {
				t.Errorf("after damage Open gave %d bytes, want the %d-byte program", len(got), len(want))
			}
			if n := compiles(); n != 2 {
				t.Errorf("%d compilations, want 2 (one rebuild)", n)
			}
			if fi, err := os.Lstat(path); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("%s after the rebuild: %v, %v; want a regular file", path, fi, err)
			}
		})
	}
}

func TestCacheConcurrentOpen(t *testing.T) {
	compiles := countCompiles(t)
	c := &Cache{Dir: filepath.Join(t.TempDir(), "cache")}
	profiles := []*rspec.LinuxSeccomp{defaultProfile(t), defaultProfile(t, "CAP_SYS_ADMIN")}
	wants := [][]byte{compileOK(t, profiles[0]), compileOK(t, profiles[1])}

	const workers = 16
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for i := range workers {
		wg.Go(func() {
			k := i % len(profiles)
			// Each uses a Cache value of its own: only Dir is shared.
			f, err := (&Cache{Dir: c.Dir}).Open(profiles[k])
			if err != nil {
				errs <- err
				return
			}
			defer f.Close()
			got, err := io.ReadAll(f)
			if err != nil {
				errs <- err
				return
			}
			if !bytes.Equal(got, wants[k]) {
				errs <- errors.New("a concurrent Open read a wrong or partial program")
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := compiles(); n != int64(len(profiles)) {
		t.Errorf("%d compilations for %d profiles", n, len(profiles))
	}
	if got := programs(t, c.Dir); len(got) != len(profiles) {
		t.Errorf("cache holds %q, want %d programs", got, len(profiles))
	}
}

func TestCacheCompileError(t *testing.T) {
	c := &Cache{Dir: t.TempDir()}
	p := defaultProfile(t)
	p.ListenerPath = "/run/agent.sock"
	if f, err := c.Open(p); !errors.Is(err, ErrUnsupportedFeature) {
		if f != nil {
			f.Close()
		}
		t.Fatalf("Open = %v, want ErrUnsupportedFeature", err)
	}
	if got := programs(t, c.Dir); len(got) != 0 {
		t.Errorf("a failed compilation left %q", got)
	}
	if _, err := c.Open(nil); !errors.Is(err, ErrNoProfile) {
		t.Errorf("Open(nil) = %v, want ErrNoProfile", err)
	}
}

// BenchmarkCompile is what each sandbox start would pay without the cache
// (libcontainer pays about this in the sandbox's init).
func BenchmarkCompile(b *testing.B) {
	p := defaultProfile(b)
	for b.Loop() {
		if _, err := Compile(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCacheOpen is what a sandbox start pays with a warm cache: key,
// open, check, plus reading the program as the init will.
func BenchmarkCacheOpen(b *testing.B) {
	c := &Cache{Dir: b.TempDir()}
	p := defaultProfile(b)
	f, err := c.Open(p)
	if err != nil {
		b.Fatal(err)
	}
	f.Close()
	buf := make([]byte, maxInsns*insnSize)
	for b.Loop() {
		f, err := c.Open(p)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := f.Read(buf); err != nil {
			b.Fatal(err)
		}
		f.Close()
	}
}
