package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// socket is the daemon's listening unix socket.
type socket struct {
	*net.UnixListener
	path string
	made os.FileInfo // the socket file listen made, to remove only that
	lock *os.File
	once sync.Once
	err  error
}

// listen makes the unix socket at path, mode 0600, and listens on it.
// path's directory is made (mode 0700) if it is missing.
//
// While it serves, it holds an exclusive lock on path+".lock", so two
// daemons never both believe they own the socket. A socket already at
// path is replaced only when nothing answers on it (a dead daemon left
// it); anything else at path is an error. The new socket is made in a
// fresh 0700 directory beside path, given its mode there and renamed over
// path: no one can connect to it before its mode is set, and the umask,
// which is per process, is never touched.
func listen(path string) (_ *socket, err error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("make socket dir: %w", err)
	}
	lock, err := os.OpenFile(path+".lock", os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open socket lock: %w", err)
	}
	defer func() {
		if err != nil {
			lock.Close()
		}
	}()
	if err := unix.Flock(int(lock.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: another corral daemon is serving on %s", ErrConflict, path)
		}
		return nil, fmt.Errorf("lock %s.lock: %w", path, err)
	}
	if err := checkStale(path); err != nil {
		return nil, err
	}

	tmp, err := os.MkdirTemp(dir, ".corral-sock-")
	if err != nil {
		return nil, fmt.Errorf("make socket: %w", err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmpPath, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("make socket: %w", err)
	}
	// The file is renamed away: the listener must not unlink by name.
	l.SetUnlinkOnClose(false)
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if err := os.Chmod(tmpPath, 0o600); err != nil {
		return nil, fmt.Errorf("make socket: %w", err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		return nil, fmt.Errorf("make socket: %w", err)
	}
	made, err := os.Lstat(path)
	if err != nil {
		return nil, fmt.Errorf("make socket: %w", err)
	}
	return &socket{UnixListener: l, path: path, made: made, lock: lock}, nil
}

// checkStale returns nil if path is free: missing, or a socket nothing
// answers on.
func checkStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() != os.ModeSocket:
		return fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: something is already serving on %s", ErrConflict, path)
	}
	if errors.Is(err, syscall.ECONNREFUSED) {
		return nil // stale: its daemon is gone
	}
	return fmt.Errorf("check for a daemon on %s: %w", path, err)
}

// Close stops listening, removes the socket if it is still the one listen
// made, and releases the lock. Only the first call does anything.
func (s *socket) Close() error {
	s.once.Do(func() {
		s.err = s.UnixListener.Close()
		if fi, err := os.Lstat(s.path); err == nil && os.SameFile(fi, s.made) {
			os.Remove(s.path)
		}
		s.lock.Close()
	})
	return s.err
}
