// Package logs reads the log files a service's init writes: one record
// per line, in output.log and, once rotated, in output.log.1 (the newest)
// up to output.log.N (the oldest), all in the service's log directory.
//
// A record line is a time (RFC 3339, UTC, microseconds), a space, the
// stream (stdout or stderr), a space and the text:
//
//	2026-11-25T21:42:00.123456Z stdout listening on :8080
package logs

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// File is the current log file of a service; rotation renames it to
// File.1, File.1 to File.2, and so on.
const File = "output.log"

// TimeLayout is the time of a record line.
const TimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// Streams.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// ErrMalformed is the error of a line that is not a record.
var ErrMalformed = errors.New("malformed log line")

// Line is one record.
type Line struct {
	Time   time.Time
	Stream string // Stdout or Stderr
	Text   string
}

// ParseLine reads one record line; a final newline is ignored. The time
// may be any RFC 3339 time.
func ParseLine(s string) (Line, error) {
	s = strings.TrimSuffix(s, "\n")
	ts, rest, ok := strings.Cut(s, " ")
	if !ok {
		return Line{}, malformed(s, "no stream")
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return Line{}, malformed(s, fmt.Sprintf("time %q is not RFC 3339", ts))
	}
	stream, text, _ := strings.Cut(rest, " ")
	if stream != Stdout && stream != Stderr {
		return Line{}, malformed(s, fmt.Sprintf("stream %q is not stdout or stderr", stream))
	}
	return Line{Time: t, Stream: stream, Text: text}, nil
}

func malformed(s, why string) error {
	const max = 80
	if len(s) > max {
		s = s[:max] + "..."
	}
	return fmt.Errorf("%w %s: %s", ErrMalformed, strconv.Quote(s), why)
}

// String is the record line of l, without a newline.
func (l Line) String() string {
	return l.Time.UTC().Format(TimeLayout) + " " + l.Stream + " " + l.Text
}

// openLog opens a log file for reading. The log dir belongs to the
// service's user, so what is found there is not trusted: a symlink is not
// followed (the daemon, root, would read whatever it names), a FIFO does
// not block the open, and anything but a regular file is refused.
func openLog(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("%s: not a regular file (%v)", path, fi.Mode().Type())
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}
