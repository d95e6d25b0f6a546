package sandbox

import (
	"fmt"
	"io"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// initMode is the mode of the init binary bound into every sandbox:
// execute only. A process that execs a file it cannot read starts
// non-dumpable (the kernel's rule for execute-only binaries), so every
// init, and above all the second inits that run exec health checks in a
// sandbox where the service already runs, is out of reach of ptrace and
// of /proc/PID/fd from its first instruction, not only once its own code
// has called prctl(PR_SET_DUMPABLE, 0). Without capabilities a sandbox's
// root cannot read it either.
const initMode = 0o111

// initDir holds the execute-only copy of corral's binary.
func (m *Manager) initDir() string { return filepath.Join(m.stateDir, "init") }

// prepareInit makes sure the state dir holds an execute-only copy of
// corral's binary (exe) and returns its path. The copy is made once per
// binary, named by exe's identity (device, inode, size, mtime); an
// upgrade makes a new one beside it. Call it under the state lock.
func prepareInit(dir, exe string) (string, error) {
	src, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("open own binary: %w", err)
	}
	defer src.Close()
	var st unix.Stat_t
	if err := unix.Fstat(int(src.Fd()), &st); err != nil {
		return "", fmt.Errorf("stat own binary: %w", err)
	}
	// One copy per binary, named by its identity: a daemon and a corral
	// run of another build on the same state dir each bind their own
	// init, whose protocol is their own.
	path := filepath.Join(dir, fmt.Sprintf("corral-init-%d-%d-%d-%d.%09d", st.Dev, st.Ino, st.Size, st.Mtim.Sec, st.Mtim.Nsec))
	if initCopyOK(path, st.Size) {
		return path, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("init dir: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".corral-init-*")
	if err != nil {
		return "", fmt.Errorf("copy own binary: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = io.Copy(tmp, src)
	if err == nil {
		err = tmp.Chmod(initMode)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return "", fmt.Errorf("copy own binary to %s: %w", path, err)
	}
	return path, nil
}

// initCopyOK checks the copy as prepareInit leaves it: a regular file of
// root's (ours), execute-only, with one link and the binary's size.
func initCopyOK(path string, size int64) bool {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFREG && int(st.Uid) == os.Geteuid() &&
		st.Mode&0o7777 == initMode && st.Nlink == 1 && st.Size == size
}
