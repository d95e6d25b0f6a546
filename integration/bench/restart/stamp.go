package restart

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// A stamp service is a shell that writes its PID and the time, then
// becomes the long-running command:
//
//	echo "$$ $(date +%s%N)" > FILE; exec sleep 100000
//
// The time is taken by date, forked by the new shell: it is when the new
// service process is running its own code. The shell's PID ($$) is that
// of the sleep it becomes, which is what a supervisor without a sandbox
// watches; in a corral sandbox it is a PID of the sandbox's namespace.
func stampScript(file, then string) string {
	return fmt.Sprintf(`echo "$$ $(date +%%s%%N)" > %s; exec %s`, file, then)
}

// stampPoll is how often the bench looks for a new stamp. It bounds only
// how soon the bench sees one, not the time measured, which is in the
// stamp itself.
const stampPoll = time.Millisecond

// errNoStamp: the file is missing or not yet fully written.
var errNoStamp = errors.New("no stamp yet")

// readStamp reads a stamp file. The shell creates (truncates) the file
// before echo writes the line in one write, so a file without its newline
// is one being written.
func readStamp(path string) (pid int, at time.Time, err error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return 0, time.Time{}, errNoStamp
		}
		return 0, time.Time{}, err
	}
	return parseStamp(path, data)
}

func parseStamp(path string, data []byte) (pid int, at time.Time, err error) {
	if !bytes.HasSuffix(data, []byte("\n")) {
		return 0, time.Time{}, errNoStamp
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0, time.Time{}, fmt.Errorf("stamp %s: %q is not \"PID NANOSECONDS\"", path, data)
	}
	pid, err1 := strconv.Atoi(f[0])
	ns, err2 := strconv.ParseInt(f[1], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, time.Time{}, fmt.Errorf("stamp %s: %w", path, err)
	}
	return pid, time.Unix(0, ns), nil
}

// waitStamp waits for the stamp file at path, and fails early when
// failed says that whatever should write it has gone.
func waitStamp(path string, timeout time.Duration, failed func() error) (int, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		pid, at, err := readStamp(path)
		if !errors.Is(err, errNoStamp) {
			return pid, at, err
		}
		if failed != nil {
			if err := failed(); err != nil {
				return 0, time.Time{}, err
			}
		}
		if time.Now().After(deadline) {
			return 0, time.Time{}, fmt.Errorf("no new start (stamp %s) within %s", path, timeout)
		}
		time.Sleep(stampPoll)
	}
}
