package logs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// pollInterval is how often Follow looks at the files when it cannot
// have the kernel tell it of changes.
const pollInterval = 200 * time.Millisecond

// Follow writes the last n lines of the logs in dir (n < 0: all, as Tail
// does), then each line appended after them, until ctx ends; it then
// returns nil. Every write to w is of whole lines.
//
// It follows output.log through rotation: once another file has its name,
// Follow reads the old file to its end, then any file rotated after it
// (several rotations between two looks), then the new one from its start;
// only if the old file itself is gone by then (removed, or more rotations
// than files kept) does it skip to the newest file. A file truncated in
// place is read again from its start. A line is written once its newline
// is there, except the last line of a rotated file, written as it is
// since nothing will finish it.
//
// On Linux it sleeps until inotify reports a change in dir, so lines are
// written as soon as they are appended and an idle Follow costs nothing.
// Where inotify is not to be had (another system, or the per-user limit
// of inotify instances reached) it looks every 200ms instead.
//
// A missing dir is an error, as for Tail; a dir without output.log is
// waited on. Removing dir while it is followed ends Follow with an error.
func Follow(ctx context.Context, dir string, n int, w io.Writer) error {
	return follow(ctx, dir, n, w, func() waker {
		if wk, err := watch(ctx, dir); err == nil {
			return wk
		}
		return poll(ctx, pollInterval)
	})
}

// follow is Follow with the waker newWaker makes.
func follow(ctx context.Context, dir string, n int, w io.Writer, newWaker func() waker) error {
	if err := checkDir(dir); err != nil {
		return fmt.Errorf("follow logs: %w", err)
	}
	// Watch before reading, so that no append after the read goes
	// unnoticed.
	wk := newWaker()
	defer func() { wk.close() }()
	f := &follower{dir: dir, w: w, buf: make([]byte, blockSize)}
	defer f.close()
	if err := f.start(n); err != nil {
		return fmt.Errorf("follow logs: %w", err)
	}
	for {
		if err := f.check(); err != nil {
			return fmt.Errorf("follow logs: %w", err)
		}
		// While it reads a file no longer named output.log, no event may
		// come to say the dir is gone (the open file keeps the dir from
		// being freed, and the kernel reports the dir's removal only then):
		// look again soon even without one.
		var timeout time.Duration
		if f.detached {
			timeout = pollInterval
		}
		err := wk.wait(timeout)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, errWatchLost):
			wk.close()
			wk = poll(ctx, pollInterval)
		case err != nil:
			return fmt.Errorf("follow logs: %w", err)
		}
	}
}

// follower reads a service's current log file as it grows.
type follower struct {
	dir string
	w   io.Writer
	cur *os.File // nil until output.log exists
	off int64    // where the next read of cur starts
	// detached: cur is no longer named output.log (rotated or removed)
	// and no file has that name yet.
	detached bool
	partial  []byte // the start of a line whose newline is still to come
	buf      []byte
}

// start writes the last n lines and makes ready to follow from there.
func (f *follower) start(n int) error {
	cur, size, err := openCurrent(f.dir)
	if err != nil {
		return err
	}
	lines, end, err := tail(f.dir, cur, size, n)
	if err != nil {
		if cur != nil {
			cur.Close()
		}
		return err
	}
	f.cur, f.off = cur, end
	if len(lines) == 0 {
		return nil
	}
	_, err = io.WriteString(f.w, strings.Join(lines, "\n")+"\n")
	return err
}

// check writes what was appended since it last looked, and goes on to a
// new output.log if the old one was rotated.
func (f *follower) check() error {
	path := filepath.Join(f.dir, File)
	f.detached = false
	for {
		if f.cur == nil {
			cur, err := openLog(path)
			if errors.Is(err, os.ErrNotExist) {
				return f.checkDir()
			}
			if err != nil {
				return err
			}
			f.cur, f.off, f.partial = cur, 0, nil
		}
		if err := f.drain(); err != nil {
			return err
		}
		now, err := os.Lstat(path)
		if errors.Is(err, os.ErrNotExist) {
			// Renamed, and no new file yet: the old one may still grow.
			f.detached = true
			return f.checkDir()
		}
		if err != nil {
			return err
		}
		was, err := f.cur.Stat()
		if err != nil {
			return err
		}
		if os.SameFile(now, was) {
			return nil
		}
		// Rotated: finish the old file, then those that came after it
		// (several rotations may have happened since the last look), and
		// go on with the newest.
		next, err := successors(f.dir, was)
		if err != nil {
			return err
		}
		if len(next) == 0 {
			// was is gone and so is output.log, again: look later.
			f.detached = true
			return nil
		}
		for i, g := range next {
			err := f.drain()
			if err == nil {
				err = f.endLine()
			}
			f.cur.Close()
			f.cur, f.off = g, 0
			if err != nil {
				closeAll(next[i+1:])
				return err
			}
		}
	}
}

// successors opens the files that came after the file was, oldest first:
// the rotated files newer than it, then output.log. If was is not among
// them (removed, or rotated past the last file kept), it returns only the
// newest file, rather than risk writing lines twice.
func successors(dir string, was os.FileInfo) ([]*os.File, error) {
	// output.log first: if it is rotated while the others are looked
	// at, it is found again among them, in its place.
	var cur *logFile
	f, err := openLog(filepath.Join(dir, File))
	switch {
	case err == nil:
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, err
		}
		cur = &logFile{f, fi}
	case !errors.Is(err, os.ErrNotExist):
		return nil, err
	}
	var chain []logFile // newest first
	for lf, err := range rotatedFiles(dir, nil) {
		if err != nil {
			closeFiles(chain)
			if cur != nil {
				cur.f.Close()
			}
			return nil, err
		}
		chain = append(chain, lf)
	}
	if cur != nil {
		if slices.ContainsFunc(chain, cur.is) {
			cur.f.Close()
		} else {
			chain = slices.Insert(chain, 0, *cur)
		}
	}
	i := slices.IndexFunc(chain, func(lf logFile) bool { return lf.is(logFile{fi: was}) })
	if i < 0 {
		i = min(1, len(chain))
	}
	closeFiles(chain[i:])
	var next []*os.File
	for j := i - 1; j >= 0; j-- {
		next = append(next, chain[j].f)
	}
	return next, nil
}

func closeAll(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

// endLine writes the unfinished line of a file that will not grow again.
func (f *follower) endLine() error {
	if len(f.partial) == 0 {
		return nil
	}
	_, err := f.w.Write(append(f.partial, '\n'))
	f.partial = nil
	return err
}

// checkDir returns an error if the log dir is gone.
func (f *follower) checkDir() error {
	if _, err := os.Stat(f.dir); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s was removed", f.dir)
	}
	return nil
}

// drain writes the complete lines from the last read to cur's end.
func (f *follower) drain() error {
	fi, err := f.cur.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < f.off { // truncated in place
		f.off, f.partial = 0, nil
	}
	for {
		n, err := f.cur.ReadAt(f.buf, f.off)
		f.off += int64(n)
		if werr := f.emit(f.buf[:n]); werr != nil {
			return werr
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// emit writes the lines b completes and keeps the rest for later.
func (f *follower) emit(b []byte) error {
	i := bytes.LastIndexByte(b, '\n')
	if i < 0 {
		f.partial = append(f.partial, b...)
		return nil
	}
	out := append(f.partial, b[:i+1]...)
	f.partial = append([]byte(nil), b[i+1:]...)
	_, err := f.w.Write(out)
	return err
}

func (f *follower) close() {
	if f.cur != nil {
		f.cur.Close()
	}
}

// waker tells Follow when to look at the files again.
type waker interface {
	// wait returns when the files may have changed, when timeout (if not
	// 0) has passed, or when ctx has ended.
	wait(timeout time.Duration) error
	close()
}

// errWatchLost: the watched directory was removed or moved.
var errWatchLost = errors.New("log directory watch lost")

// poller wakes at every tick.
type poller struct {
	ctx context.Context
	t   *time.Ticker
}

func poll(ctx context.Context, every time.Duration) waker {
	return &poller{ctx: ctx, t: time.NewTicker(every)}
}

// wait waits for the next tick, which comes sooner than any timeout.
func (p *poller) wait(time.Duration) error {
	select {
	case <-p.ctx.Done():
		return p.ctx.Err()
	case <-p.t.C:
		return nil
	}
}

func (p *poller) close() { p.t.Stop() }
