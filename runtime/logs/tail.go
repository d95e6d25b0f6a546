package logs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// blockSize is how much Tail reads at a time, backwards from a file's end.
const blockSize = 64 << 10

// Tail returns the last n record lines of the service whose log directory
// is dir, oldest first, without their newlines; n < 0 returns them all.
// It reads output.log backwards from its end, and the rotated files,
// newest first, only while it needs more lines.
//
// A missing dir is an error (wrapping fs.ErrNotExist): the service has no
// log directory, which is not the same as having nothing logged yet. A
// dir without files gives no lines and no error.
//
// The last line of output.log is left out while it has no newline: it is
// still being written. A rotated file is final, and its last line counts
// even without one. A rotation during Tail can make it return fewer lines
// than it should, never the same line twice.
func Tail(dir string, n int) ([]string, error) {
	if err := checkDir(dir); err != nil {
		return nil, fmt.Errorf("tail logs: %w", err)
	}
	cur, size, err := openCurrent(dir)
	if err != nil {
		return nil, fmt.Errorf("tail logs: %w", err)
	}
	if cur != nil {
		defer cur.Close()
	}
	lines, _, err := tail(dir, cur, size, n)
	if err != nil {
		return nil, fmt.Errorf("tail logs: %w", err)
	}
	return lines, nil
}

// checkDir returns an error unless dir is a directory.
func checkDir(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	return nil
}

// openCurrent opens dir's output.log and returns it and its size, or nil
// if there is none.
func openCurrent(dir string) (*os.File, int64, error) {
	f, err := openLog(filepath.Join(dir, File))
	if errors.Is(err, os.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, fi.Size(), nil
}

func rotated(dir string, k int) string {
	return filepath.Join(dir, File+"."+strconv.Itoa(k))
}

// tail returns the last n lines (n < 0: all) of the first size bytes of
// cur (the current file, or nil) and, before them, of dir's rotated files.
// It also returns the offset in cur just past its last complete line.
func tail(dir string, cur *os.File, size int64, n int) (lines []string, end int64, err error) {
	var parts [][]string // newest first
	var read []os.FileInfo
	got := 0
	if cur != nil {
		part, e, err := lastLines(cur, size, n, false, blockSize)
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", cur.Name(), err)
		}
		fi, err := cur.Stat()
		if err != nil {
			return nil, 0, err
		}
		parts, read, got, end = append(parts, part), append(read, fi), len(part), e
	}
	if n < 0 || got < n {
		for lf, err := range rotatedFiles(dir, read) {
			if err != nil {
				return nil, 0, err
			}
			part, _, err := lastLines(lf.f, lf.fi.Size(), n-got, true, blockSize)
			lf.f.Close()
			if err != nil {
				return nil, 0, fmt.Errorf("read %s: %w", lf.f.Name(), err)
			}
			parts, got = append(parts, part), got+len(part)
			if n >= 0 && got >= n {
				break
			}
		}
	}
	for i := len(parts) - 1; i >= 0; i-- {
		lines = append(lines, parts[i]...)
	}
	return lines, end, nil
}

// logFile is an open log file and what it was when opened.
type logFile struct {
	f  *os.File
	fi os.FileInfo
}

// is reports whether lf and o are the same file.
func (lf logFile) is(o logFile) bool { return os.SameFile(lf.fi, o.fi) }

func closeFiles(lfs []logFile) {
	for _, lf := range lfs {
		lf.f.Close()
	}
}

// maxRotated bounds the scan of rotated files.
const maxRotated = 1000

// rotatedFiles opens dir's rotated files, the newest (output.log.1) first,
// for as long as the caller ranges over them; the caller closes them.
//
// Rotation renames the files one at a time, from the oldest, and the scan
// may meet it: a file moved to the next name while the scan goes is given
// once, a file in skip is not given, and a missing name is passed over
// when the name after it is there.
func rotatedFiles(dir string, skip []os.FileInfo) iter.Seq2[logFile, error] {
	return func(yield func(logFile, error) bool) {
		seen := slices.Clone(skip)
		for k := 1; k <= maxRotated; k++ {
			f, err := openLog(rotated(dir, k))
			if errors.Is(err, os.ErrNotExist) {
				if _, err := os.Lstat(rotated(dir, k+1)); err == nil {
					continue
				}
				return
			}
			if err != nil {
				yield(logFile{}, err)
				return
			}
			fi, err := f.Stat()
			if err != nil {
				f.Close()
				yield(logFile{}, err)
				return
			}
			if slices.ContainsFunc(seen, func(s os.FileInfo) bool { return os.SameFile(s, fi) }) {
				f.Close()
				continue
			}
			seen = append(seen, fi)
			if !yield(logFile{f, fi}, nil) {
				return
			}
		}
	}
}

// lastLines returns the last n lines (n < 0: all) of the first size bytes
// of r, reading backwards block bytes at a time. Unless final, the bytes
// after the last newline are a line still being written: they are left
// out, and the offset returned is where they start (else it is size).
func lastLines(r io.ReaderAt, size int64, n int, final bool, block int) ([]string, int64, error) {
	// Read until the bytes hold n+1 newlines: the first may end a line
	// cut by the read, the n after it end whole lines.
	var blocks [][]byte // from the end backwards
	pos, newlines := size, 0
	for pos > 0 && (n < 0 || newlines <= n) {
		k := min(int64(block), pos)
		b := make([]byte, k)
		if m, err := r.ReadAt(b, pos-k); m < len(b) {
			if err == nil || err == io.EOF {
				err = io.ErrUnexpectedEOF // the file shrank
			}
			return nil, 0, err
		}
		pos -= k
		blocks = append(blocks, b)
		newlines += bytes.Count(b, []byte{'\n'})
	}
	var buf bytes.Buffer
	for i := len(blocks) - 1; i >= 0; i-- {
		buf.Write(blocks[i])
	}
	data := buf.Bytes()
	if !final {
		data = data[:bytes.LastIndexByte(data, '\n')+1]
	}
	end := pos + int64(len(data))
	if len(data) == 0 || n == 0 {
		return nil, end, nil
	}
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if pos > 0 {
		lines = lines[1:] // perhaps cut; there are enough whole lines after it
	}
	if n >= 0 && len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines, end, nil
}
