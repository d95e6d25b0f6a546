package filter

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"

	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// compilerVersion is part of every cache key. Bump it whenever Compile's
// output for the same profile and libseccomp changes (a new stub, a fix),
// so that programs compiled by an older corral are not served.
const compilerVersion = "corral isolation/filter 2"

// compile is Compile. Tests wrap it to count compilations.
var compile = Compile

// Cache keeps compiled programs in Dir, one file per distinct profile, named by the SHA-256 of the
// profile's canonical JSON (plus the libseccomp version and the compiler's own version constant), written
// atomically (temp file + rename). Each file holds a header with the SHA-256 of the program after it, and
// is checked when loaded: a root-owned (the caller's euid) regular file of mode 0600 with one link, whose
// program matches its hash and decodes as BPF.
//
// Open never hands out the cache's own file: it returns the program copied into a sealed memfd (no write,
// grow, shrink or further seals), which is what reaches a sandbox's init. A process that got hold of that
// fd, or reopened it through /proc, could not change the program that later sandboxes load.
//
// The zero value with Dir set is ready to use, and any number of goroutines and processes may share one
// Dir: a file is either absent or complete, and a lock file in Dir makes a missing program be compiled
// once, not once per caller. Whoever can write Dir chooses the filters of every sandbox, so Open refuses a
// Dir that is not owned by the caller or that group or others may read or write.
type Cache struct {
	// Dir holds the programs and the lock file; Open creates it (mode
	// 0700) if needed.
	Dir string

	// loaded keeps each program this process verified, sealed, by path,
	// with the identity of the file it came from: while the file is
	// unchanged, Open hands out a new read-only open of the same memfd
	// instead of reading and hashing the file again (every sandbox start
	// and every exec health check opens one).
	mu     sync.Mutex
	loaded map[string]loadedProgram
}

type loadedProgram struct {
	file  fileID
	memfd *os.File
}

// fileID tells a stored program file from any other, or from itself
// changed: where it is, its size, times, owner, mode and links.
type fileID struct {
	dev, ino, size, nlink uint64
	mtime, ctime          unix.Timespec
	uid, mode             uint32
}

func idOf(st *unix.Stat_t) fileID {
	return fileID{dev: st.Dev, ino: st.Ino, size: uint64(st.Size), nlink: st.Nlink,
		mtime: st.Mtim, ctime: st.Ctim, uid: st.Uid, mode: st.Mode}
}

// Open returns the compiled program for profile in a sealed memfd at
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
	if f := c.reuse(path); f != nil {
		return f, nil
	}
	if f, err := c.load(path); !needsBuild(err) {
		return f, err
	}

	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	// Another goroutine or process may have stored it while we waited.
	if f, err := c.load(path); !needsBuild(err) {
		return f, err
	}
	prog, err := compile(profile)
	if err != nil {
		return nil, err
	}
	if err := store(path, prog); err != nil {
		return nil, err
	}
	return c.load(path)
}

// reuse returns a new read-only open of the memfd loaded from path, if
// the file is still the one it was loaded from; nil otherwise.
func (c *Cache) reuse(path string) *os.File {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.loaded[path]
	if !ok || p.file != idOf(&st) {
		return nil
	}
	f, err := reopen(p.memfd)
	if err != nil {
		return nil
	}
	return f
}

// load reads, verifies and seals the program at path, keeps it for
// reuse, and returns a read-only open of it.
func (c *Cache) load(path string) (*os.File, error) {
	memfd, id, err := loadSealed(path)
	if err != nil {
		return nil, err
	}
	f, err := reopen(memfd)
	if err != nil {
		memfd.Close()
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old, ok := c.loaded[path]; ok {
		old.memfd.Close()
	}
	if c.loaded == nil {
		c.loaded = map[string]loadedProgram{}
	}
	c.loaded[path] = loadedProgram{file: id, memfd: memfd}
	return f, nil
}

// reopen opens memfd again, read-only, with an offset of its own (at 0).
func reopen(memfd *os.File) (*os.File, error) {
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", memfd.Fd()), os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("seccomp program memfd: %w", err)
	}
	return f, nil
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
	fi, err := os.Lstat(c.Dir)
	if err != nil {
		return fmt.Errorf("seccomp program cache: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("seccomp program cache %s: not a directory", c.Dir)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("seccomp program cache %s: owned by uid %d, not by us (%d)", c.Dir, st.Uid, os.Geteuid())
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("seccomp program cache %s: writable by group or others (mode %v)", c.Dir, fi.Mode().Perm())
	}
	if fi.Mode().Perm()&0o077 != 0 {
		// Ours, and nobody else could write it: only close it to others.
		if err := os.Chmod(c.Dir, 0o700); err != nil {
			return fmt.Errorf("seccomp program cache %s: %w", c.Dir, err)
		}
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

// fileMagic starts every stored program; the SHA-256 of the program
// follows it, then the program.
const fileMagic = "corral-bpf-sha256\n"

const headerSize = len(fileMagic) + sha256.Size

// loadSealed reads a stored program, checks it (see checkProgram), and
// returns it in a sealed memfd. Errors that call for a rebuild (a file cut
// short by a crash or a full disk, or changed since it was written) match
// fs.ErrNotExist or errCorrupt; a file with the wrong owner or mode is
// refused outright: someone else has been writing in the cache.
func loadSealed(path string) (*os.File, fileID, error) {
	prog, id, err := readProgram(path)
	if err != nil {
		return nil, id, err
	}
	f, err := sealed(filepath.Base(path), prog)
	return f, id, err
}

// readProgram opens a stored program without following a symlink, checks
// the file's owner, mode and links, reads it whole and verifies its hash
// and its instructions.
func readProgram(path string) ([]byte, fileID, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK, 0)
	if errors.Is(err, unix.ELOOP) {
		// Only a symlink gives ELOOP with O_NOFOLLOW: we never make one.
		return nil, fileID{}, fmt.Errorf("%w: %s is a symlink", errCorrupt, path)
	}
	if err != nil {
		return nil, fileID{}, fmt.Errorf("open cached seccomp program: %w", err)
	}
	defer f.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return nil, fileID{}, fmt.Errorf("cached seccomp program %s: %w", path, err)
	}
	switch {
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return nil, fileID{}, fmt.Errorf("cached seccomp program %s: %w: not a regular file", path, errCorrupt)
	case int(st.Uid) != os.Geteuid() || st.Mode&0o077 != 0 || st.Nlink != 1:
		return nil, fileID{}, fmt.Errorf("cached seccomp program %s: owner %d, mode %#o, %d links: want ours (%d), 0600, 1 link; refusing a program someone else may have written",
			path, st.Uid, st.Mode&0o7777, st.Nlink, os.Geteuid())
	case st.Size > int64(headerSize+maxInsns*insnSize):
		// Check the size before reading, so a huge file is not read in.
		return nil, fileID{}, fmt.Errorf("cached seccomp program %s: %w: %d bytes, more than the kernel's %d instructions", path, errCorrupt, st.Size, maxInsns)
	}
	buf := make([]byte, st.Size)
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil, fileID{}, fmt.Errorf("cached seccomp program %s: %w: %v", path, errCorrupt, err)
	}
	prog, err := checkProgram(buf)
	if err != nil {
		return nil, fileID{}, fmt.Errorf("cached seccomp program %s: %w", path, err)
	}
	return prog, idOf(&st), nil
}

// checkProgram verifies a stored file's header and hash and that its
// program decodes, and returns the program.
func checkProgram(data []byte) ([]byte, error) {
	if len(data) < headerSize || string(data[:len(fileMagic)]) != fileMagic {
		return nil, fmt.Errorf("%w: no header", errCorrupt)
	}
	prog := data[headerSize:]
	if sum := sha256.Sum256(prog); string(sum[:]) != string(data[len(fileMagic):headerSize]) {
		return nil, fmt.Errorf("%w: the program does not match its hash", errCorrupt)
	}
	if _, err := decode(prog); err != nil {
		return nil, err
	}
	return prog, nil
}

// sealed returns prog in a memfd that nobody can change: written once,
// then sealed against writes, resizing and further seals, and rewound.
func sealed(name string, prog []byte) (*os.File, error) {
	name = "corral-seccomp:" + name
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("seccomp program memfd: %w", err)
	}
	f := os.NewFile(uintptr(fd), name)
	if _, err := f.Write(prog); err != nil {
		f.Close()
		return nil, fmt.Errorf("seccomp program memfd: %w", err)
	}
	const seals = unix.F_SEAL_WRITE | unix.F_SEAL_GROW | unix.F_SEAL_SHRINK | unix.F_SEAL_SEAL
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, seals); err != nil {
		f.Close()
		return nil, fmt.Errorf("seal seccomp program memfd: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("seccomp program memfd: %w", err)
	}
	return f, nil
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
	sum := sha256.Sum256(prog)
	if _, err := tmp.Write(append(append([]byte(fileMagic), sum[:]...), prog...)); err != nil {
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
