package logs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// inotify wakes when an entry of a directory is created, written, renamed
// or removed.
type inotify struct {
	ctx  context.Context
	f    *os.File
	buf  []byte
	stop func() bool
}

// watch watches dir until ctx ends or the waker is closed.
func watch(ctx context.Context, dir string) (waker, error) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("inotify_init1", err)
	}
	const mask = unix.IN_MODIFY | unix.IN_CREATE | unix.IN_DELETE | unix.IN_MOVED_FROM | unix.IN_MOVED_TO |
		unix.IN_DELETE_SELF | unix.IN_MOVE_SELF | unix.IN_ONLYDIR
	if _, err := unix.InotifyAddWatch(fd, dir, mask); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("watch %s: %w", dir, os.NewSyscallError("inotify_add_watch", err))
	}
	// Non-blocking, the descriptor goes to the runtime's poller: a read
	// parks the goroutine, and a deadline wakes it when ctx ends.
	f := os.NewFile(uintptr(fd), "inotify")
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("watch %s: %w", dir, err)
	}
	in := &inotify{ctx: ctx, f: f, buf: make([]byte, 16<<10)}
	in.stop = context.AfterFunc(ctx, func() { f.SetReadDeadline(time.Now()) })
	return in, nil
}

func (in *inotify) wait(timeout time.Duration) error {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	// Set, then look at ctx: if ctx ends after the look, the deadline
	// set when it ends replaces this one.
	if err := in.f.SetReadDeadline(deadline); err != nil {
		return fmt.Errorf("read inotify events: %w", err)
	}
	if err := in.ctx.Err(); err != nil {
		return err
	}
	n, err := in.f.Read(in.buf)
	switch {
	case in.ctx.Err() != nil:
		return in.ctx.Err()
	case errors.Is(err, os.ErrDeadlineExceeded):
		return nil // the timeout
	case err != nil:
		return fmt.Errorf("read inotify events: %w", err)
	}
	// Any event means: look. Only the end of the watch needs more.
	for off := 0; off+unix.SizeofInotifyEvent <= n; {
		mask := binary.NativeEndian.Uint32(in.buf[off+4:])
		if mask&(unix.IN_IGNORED|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF|unix.IN_UNMOUNT) != 0 {
			return errWatchLost
		}
		off += unix.SizeofInotifyEvent + int(binary.NativeEndian.Uint32(in.buf[off+12:]))
	}
	return nil
}

func (in *inotify) close() {
	in.stop()
	in.f.Close()
}
