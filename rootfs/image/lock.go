package image

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// fileLock is an exclusive flock(2) on a lock file. flock locks belong to
// an open file, so two goroutines of one process exclude each other as
// two processes do.
type fileLock struct{ f *os.File }

// errLocked: tryLock found the lock held.
var errLocked = errors.New("locked")

// lock takes the lock at path, waiting for it until ctx is done.
func lock(ctx context.Context, path string) (*fileLock, error) {
	delay := time.Millisecond
	for {
		l, err := tryLock(path)
		if !errors.Is(err, errLocked) {
			return l, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for lock %s: %w", path, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// tryLock takes the lock at path, or returns errLocked. A lock file may be
// deleted by its holder (removeLocked) while another process waits on it:
// a lock taken on a file no longer at path is dropped and taken again.
func tryLock(path string) (*fileLock, error) {
	for {
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, unix.EWOULDBLOCK) {
				return nil, errLocked
			}
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		held, err1 := f.Stat()
		now, err2 := os.Stat(path)
		if err1 == nil && err2 == nil && os.SameFile(held, now) {
			return &fileLock{f}, nil
		}
		f.Close()
		if err1 != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err1)
		}
		if err2 != nil && !errors.Is(err2, os.ErrNotExist) {
			return nil, fmt.Errorf("lock %s: %w", path, err2)
		}
	}
}

// unlock releases the lock.
func (l *fileLock) unlock() { l.f.Close() }

// removeAndUnlock deletes the lock file, then releases the lock: a waiter
// then finds its file gone and makes a new one.
func (l *fileLock) removeAndUnlock() {
	os.Remove(l.f.Name())
	l.f.Close()
}
