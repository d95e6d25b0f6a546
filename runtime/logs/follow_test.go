package logs

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Each Follow test runs with each way of waking.
var wakers = []struct {
	name string
	make func(t *testing.T, ctx context.Context, dir string) waker
}{
	{"inotify", func(t *testing.T, ctx context.Context, dir string) waker {
		wk, err := watch(ctx, dir)
		if err != nil {
			t.Fatalf("inotify: %v", err)
		}
		return wk
	}},
	{"poll", func(t *testing.T, ctx context.Context, dir string) waker { return poll(ctx, pollInterval) }},
}

func eachWaker(t *testing.T, test func(t *testing.T, start func(dir string, n int) *following)) {
	for _, wk := range wakers {
		t.Run(wk.name, func(t *testing.T) {
			test(t, func(dir string, n int) *following {
				return startFollow(t, dir, n, func(ctx context.Context) waker { return wk.make(t, ctx, dir) })
			})
		})
	}
}

// following is a follow running in the background.
type following struct {
	out    *syncBuffer
	wakes  atomic.Int64 // how often the waker returned
	cancel context.CancelFunc
	done   chan error
}

func startFollow(t *testing.T, dir string, n int, newWaker func(context.Context) waker) *following {
	ctx, cancel := context.WithCancel(context.Background())
	f := &following{out: newSyncBuffer(), cancel: cancel, done: make(chan error, 1)}
	go func() {
		f.done <- follow(ctx, dir, n, f.out, func() waker { return &countingWaker{newWaker(ctx), &f.wakes} })
	}()
	t.Cleanup(func() { f.stop(t) })
	return f
}

// stop cancels the follow and returns what it returned.
func (f *following) stop(t *testing.T) error {
	t.Helper()
	f.cancel()
	select {
	case err := <-f.done:
		f.done <- err
		return err
	case <-time.After(2 * time.Second):
		t.Fatal("follow still running 2s after cancel")
		return nil
	}
}

type countingWaker struct {
	waker
	n *atomic.Int64
}

func (c *countingWaker) wait(timeout time.Duration) error {
	err := c.waker.wait(timeout)
	c.n.Add(1)
	return err
}

// logWriter appends to output.log and rotates it, as a service's init
// does.
type logWriter struct {
	t   *testing.T
	dir string
	f   *os.File
}

func newLogWriter(t *testing.T, dir string) *logWriter {
	w := &logWriter{t: t, dir: dir}
	w.open()
	t.Cleanup(func() { w.f.Close() })
	return w
}

func (w *logWriter) open() {
	f, err := os.OpenFile(filepath.Join(w.dir, File), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		w.t.Fatal(err)
	}
	w.f = f
}

func (w *logWriter) write(s string) {
	if _, err := w.f.WriteString(s); err != nil {
		w.t.Fatal(err)
	}
}

func (w *logWriter) lines(ls ...string) {
	for _, l := range ls {
		w.write(l + "\n")
	}
}

// renameAway shifts output.log.K to output.log.K+1 and output.log to
// output.log.1; it keeps writing to the renamed file until reopen.
func (w *logWriter) renameAway() {
	k := 1
	for ; ; k++ {
		if _, err := os.Lstat(rotated(w.dir, k)); err != nil {
			break
		}
	}
	for ; k > 1; k-- {
		if err := os.Rename(rotated(w.dir, k-1), rotated(w.dir, k)); err != nil {
			w.t.Fatal(err)
		}
	}
	if err := os.Rename(filepath.Join(w.dir, File), rotated(w.dir, 1)); err != nil {
		w.t.Fatal(err)
	}
}

func (w *logWriter) reopen() {
	w.f.Close()
	w.open()
}

func (w *logWriter) rotate() {
	w.renameAway()
	w.reopen()
}

// lines joins record lines, each with its newline.
func lines(ls ...[]string) string {
	var b strings.Builder
	for _, l := range ls {
		for _, s := range l {
			b.WriteString(s + "\n")
		}
	}
	return b.String()
}

func TestFollow(t *testing.T) {
	eachWaker(t, func(t *testing.T, start func(string, int) *following) {
		dir := t.TempDir()
		writeFile(t, dir, "output.log.1", recs(1, 3))
		w := newLogWriter(t, dir)
		w.lines(recs(4, 6)...)

		f := start(dir, 4)
		want := lines(recs(3, 6))
		f.out.waitFor(t, want)
		w.lines(rec(7))
		want += lines(recs(7, 7))
		f.out.waitFor(t, want)
		// An unfinished line waits for its newline.
		w.write(rec(8)[:12])
		time.Sleep(50 * time.Millisecond)
		w.write(rec(8)[12:] + "\n" + rec(9) + "\n")
		want += lines(recs(8, 9))
		f.out.waitFor(t, want)
		if err := f.stop(t); err != nil {
			t.Errorf("follow returned %v after cancel, want nil", err)
		}
		f.out.checkWholeLines(t)
	})
}

func TestFollowRotation(t *testing.T) {
	eachWaker(t, func(t *testing.T, start func(string, int) *following) {
		dir := t.TempDir()
		w := newLogWriter(t, dir)
		w.lines(recs(1, 2)...)
		f := start(dir, 1)
		f.out.waitFor(t, lines(recs(2, 2)))
		w.lines(rec(3))
		f.out.waitFor(t, lines(recs(2, 3)))

		// The old file gets a last line, and an unfinished one, after
		// its rename; the new one comes after.
		w.renameAway()
		w.lines(rec(4))
		w.write(rec(5)[:15])
		w.reopen()
		w.lines(recs(6, 7)...)
		want := lines(recs(2, 4), []string{rec(5)[:15]}, recs(6, 7))
		f.out.waitFor(t, want)

		// Several rotations, perhaps between two looks.
		for i := 8; i <= 12; i++ {
			w.lines(rec(i))
			w.rotate()
		}
		w.lines(rec(13))
		want += lines(recs(8, 13))
		f.out.waitFor(t, want)
		f.out.checkWholeLines(t)
	})
}

func TestFollowTruncated(t *testing.T) {
	eachWaker(t, func(t *testing.T, start func(string, int) *following) {
		dir := t.TempDir()
		w := newLogWriter(t, dir)
		w.lines(recs(1, 3)...)
		f := start(dir, -1)
		f.out.waitFor(t, lines(recs(1, 3)))
		if err := os.Truncate(filepath.Join(dir, File), 0); err != nil {
			t.Fatal(err)
		}
		w.lines(rec(4))
		f.out.waitFor(t, lines(recs(1, 4)))
	})
}

func TestFollowWaitsForFile(t *testing.T) {
	eachWaker(t, func(t *testing.T, start func(string, int) *following) {
		dir := t.TempDir()
		f := start(dir, 10)
		time.Sleep(50 * time.Millisecond)
		w := newLogWriter(t, dir)
		w.lines(recs(1, 2)...)
		f.out.waitFor(t, lines(recs(1, 2)))
	})
}

// Cancelling ends a follow at once; an idle follow does not spin.
func TestFollowCancelAndIdle(t *testing.T) {
	eachWaker(t, func(t *testing.T, start func(string, int) *following) {
		dir := t.TempDir()
		newLogWriter(t, dir).lines(recs(1, 2)...)
		f := start(dir, -1)
		f.out.waitFor(t, lines(recs(1, 2)))

		before := f.wakes.Load()
		time.Sleep(500 * time.Millisecond)
		wakes := f.wakes.Load() - before
		limit := int64(0) // inotify: nothing happened, nothing to wake for
		if strings.HasSuffix(t.Name(), "/poll") {
			limit = int64(500*time.Millisecond/pollInterval) + 1
		}
		if wakes > limit {
			t.Errorf("woke %d times in 500ms of quiet, want at most %d", wakes, limit)
		}

		stopped := time.Now()
		if err := f.stop(t); err != nil {
			t.Errorf("follow returned %v, want nil", err)
		}
		if d := time.Since(stopped); d > 100*time.Millisecond {
			t.Errorf("follow took %s to end after cancel", d)
		}
	})
}

func TestFollowDirRemoved(t *testing.T) {
	eachWaker(t, func(t *testing.T, start func(string, int) *following) {
		dir := filepath.Join(t.TempDir(), "web")
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		writeFile(t, dir, File, recs(1, 1))
		f := start(dir, -1)
		f.out.waitFor(t, lines(recs(1, 1)))
		if err := os.RemoveAll(dir); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-f.done:
			f.done <- err
			if err == nil || !strings.Contains(err.Error(), dir+" was removed") {
				t.Errorf("follow returned %v, want an error saying %s was removed", err, dir)
			}
		case <-time.After(2 * time.Second):
			t.Fatal("follow still running 2s after its dir was removed")
		}
	})
}

func TestFollowMissingDir(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	err := Follow(context.Background(), missing, -1, &bytes.Buffer{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Follow of a missing dir = %v, want a not-exist error naming it", err)
	}
}

// Follow itself: the watch it picks, and the end of its writer.
func TestFollowWriteError(t *testing.T) {
	dir := t.TempDir()
	w := newLogWriter(t, dir)
	w.lines(rec(1))
	broken := errors.New("client gone")
	out := &failingWriter{after: 1, err: broken}
	done := make(chan error, 1)
	go func() { done <- Follow(context.Background(), dir, -1, out) }()
	time.Sleep(20 * time.Millisecond)
	w.lines(rec(2))
	select {
	case err := <-done:
		if !errors.Is(err, broken) {
			t.Errorf("Follow = %v, want the writer's error", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Follow went on after its writer failed")
	}
}

type failingWriter struct {
	mu    sync.Mutex
	after int
	err   error
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.after == 0 {
		return 0, w.err
	}
	w.after--
	return len(p), nil
}

// syncBuffer is written by a follow and watched by the test.
type syncBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	partial []string // writes that did not end a line
	written chan struct{}
}

func newSyncBuffer() *syncBuffer { return &syncBuffer{written: make(chan struct{}, 1)} }

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !bytes.HasSuffix(p, []byte("\n")) {
		b.partial = append(b.partial, string(p))
	}
	select {
	case b.written <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until the buffer holds exactly want.
func (b *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for b.String() != want {
		select {
		case <-b.written:
		case <-timeout:
			t.Fatalf("follow wrote\n%s\nwant\n%s", b.String(), want)
		}
	}
}

func (b *syncBuffer) checkWholeLines(t *testing.T) {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.partial) > 0 {
		t.Errorf("writes of part of a line: %q", b.partial)
	}
}
