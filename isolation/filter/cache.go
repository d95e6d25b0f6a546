package filter

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"syscall"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// compilerVersion is part of every cache key. Bump it whenever Compile's
// output for the same profile and libseccomp changes (a new stub, a fix),
// so that programs compiled by an older corral are not served.
const compilerVersion = "corral isolation/filter 1"

// compile is Compile. Tests wrap it to count compilations.
var compile = Compile

// Cache keeps compiled programs in Dir, one file per distinct profile, named by the SHA-256 of the
// profile's canonical JSON (plus the libseccomp version and the compiler's own version constant), written
// atomically (temp file + rename). Open returns the program file opened read-only (to hand to the init
// as an fd), compiling and storing it first if it is not there.
//
// The zero value with Dir set is ready to use, and any number of
// goroutines and processes may share one Dir: a file is either absent or
// complete, and a lock file in Dir makes a missing program be compiled
// once, not once per caller. Whoever can write Dir chooses the filters of
// every sandbox, so Open refuses a Dir that is not owned by the caller or
// that group or others may write.
type Cache struct {
	// Dir holds the programs and the lock file; Open creates it (mode
	// 0700) if needed.
	Dir string
}

// Open returns the compiled program for profile, opened read-only at
// offset 0, compiling and storing it first if Dir does not have it or has
// a damaged copy. The caller owns the file and must close it.
func (c *Cache) Open(profile *rspec.LinuxSeccomp) (*os.File, error) {
	if profile == nil {
		return nil, ErrNoProfile
	}
	if err := c.checkDir(); err != nil {
		return nil, err
	}
	path, err := c.path(profile)
	if err != nil {
		return nil, err
	}
	if f, err := openProgram(path); !needsBuild(err) {
		return f, err
	}

	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another goroutine or process may have stored it while we waited.
	if f, err := openProgram(path); !needsBuild(err) {
		return f, err
	}
	prog, err := compile(profile)
	if err != nil {
		return nil, err
	}
	if err := store(path, prog); err != nil {
		return nil, err
	}
	return openProgram(path)
}

// needsBuild tells whether openProgram's error means "compile it".
func needsBuild(err error) bool {
	return errors.Is(err, fs.ErrNotExist) || errors.Is(err, errCorrupt)
}

// path is where the program for profile lives. The key covers everything
// the program depends on: the profile (as deterministic JSON, so the
// layout of the file it came from does not matter), the compiler, the
// libseccomp that did the work, and the architecture.
func (c *Cache) path(profile *rspec.LinuxSeccomp) (string, error) {
	body, err := json.Marshal(profile)
	if err != nil {
		return "", fmt.Errorf("encode seccomp profile: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n%s\n", compilerVersion, backendVersion(), runtime.GOARCH)
	h.Write(body)
	return filepath.Join(c.Dir, hex.EncodeToString(h.Sum(nil))+".bpf"), nil
}

// checkDir creates Dir if needed and refuses one that someone else could
// plant a program in.
func (c *Cache) checkDir() error {
	if c.Dir == "" {
		return errors.New("seccomp program cache: no directory")
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("create seccomp program cache: %w", err)
	}
	fi, err := os.Stat(c.Dir)
	if err != nil {
		return fmt.Errorf("seccomp program cache: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("seccomp program cache %s: not a directory", c.Dir)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("seccomp program cache %s: writable by group or others (mode %v)", c.Dir, fi.Mode().Perm())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("seccomp program cache %s: owned by uid %d, not by us (%d)", c.Dir, st.Uid, os.Geteuid())
	}
	return nil
}

// lock takes an exclusive flock on Dir's lock file, which serialises
// compilations between goroutines (each has its own open file
// description) and between processes alike.
func (c *Cache) lock() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(c.Dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock seccomp program cache: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock seccomp program cache: %w", err)
	}
	return func() { f.Close() }, nil // Closing the file releases the lock.
}

// openProgram opens a stored program and reads it once to make sure it is
// whole, so that a file cut short by a crash or a full disk is rebuilt
// here instead of failing the sandbox's start. The file is returned at
// offset 0. Errors that call for a rebuild match fs.ErrNotExist or
// errCorrupt.
func openProgram(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW, 0)
	if errors.Is(err, unix.ELOOP) {
		// Only a symlink gives ELOOP with O_NOFOLLOW: we never make one.
		return nil, fmt.Errorf("%w: %s is a symlink", errCorrupt, path)
	}
	if err != nil {
		return nil, fmt.Errorf("open cached seccomp program: %w", err)
	}
	if err := checkProgramFile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cached seccomp program %s: %w", path, err)
	}
	return f, nil
}

func checkProgramFile(f *os.File) error {
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%w: not a regular file", errCorrupt)
	}
	// Check the size before reading, so a huge file is not read in.
	if fi.Size() > maxInsns*insnSize {
		return fmt.Errorf("%w: %d bytes, more than the kernel's %d instructions", errCorrupt, fi.Size(), maxInsns)
	}
	buf := make([]byte, fi.Size())
	if _, err := f.ReadAt(buf, 0); err != nil { // ReadAt leaves the offset alone.
		return err
	}
	_, err = decode(buf)
	return err
}

// store writes prog to path atomically: readers see the old file or the
// complete new one, never a part. It is synced before the rename so that a
// crash cannot leave the name pointing at an empty file.
func store(path string, prog []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".tmp-*.bpf") // mode 0600
	if err != nil {
		return fmt.Errorf("store seccomp program: %w", err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(prog); err != nil {
		return fmt.Errorf("store seccomp program: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("store seccomp program: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("store seccomp program: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("store seccomp program: %w", err)
	}
	// Make the rename itself durable. Failing here loses nothing that a
	// later Open would not rebuild, so the error is not worth reporting.
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
