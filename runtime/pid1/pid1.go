// Package pid1 is the init of every sandbox: the small PID 1 that starts the
// sandbox's command, forwards signals to it, reaps orphans, writes its output
// to timestamped, rotated log files and records how it ended.
//
// The init is C code run by a constructor at process start, before the Go
// runtime (the trick of runc's nsenter package). The corral binary
// blank-imports this package, binds itself read-only into the sandbox at
// PathInSandbox, and has libcontainer exec it with the argv, environment
// entry and files that Config.Wrap returns. A process without EnvVar in its
// environment runs the binary normally: the constructor returns at once.
//
// # Protocol
//
// EnvVar holds comma-separated key=value items:
//
//	status=FD    required: a regular file open for writing (not O_APPEND)
//	seccomp=FD   a regular file holding a raw classic-BPF program, an array
//	             of struct sock_filter (8 bytes each, native endian), 1 to
//	             4096 instructions, applied to the command just before exec
//	logdir=FD    a directory: the command's stdout and stderr are logged there
//	logmax=N     bytes per log file; required with logdir
//	logfiles=N   log files kept, the current one included, 1 to 1000;
//	             required with logdir (the defaults are the service file's,
//	             spec.DefaultLogMaxSize and DefaultLogMaxFiles)
//	keep=FD      a socket the init holds open, unread, until it exits (the
//	             sandbox's sd_notify socket: it outlives the daemon that made
//	             it, and the next daemon takes it from the init with
//	             pidfd_getfd); the command never gets it
//
// The fds must be 3 or more and different. The init removes EnvVar from the
// command's environment and runs argv[1:] (argv[0] is ignored) with the
// PATH lookup of execvpe. The command stays in the init's session and
// process group, with default signal dispositions and an empty signal mask,
// fds 0, 1 and 2 (or the log pipes on 1 and 2) and nothing else open.
//
// The init forwards SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2,
// SIGWINCH and SIGCONT to the command's process (not its group) and drops
// other signals. It reaps every child. When the command ends, the init exits
// with its exit code, or 128+N if signal N killed it; 127 if the command was
// not found (ENOENT, ENOTDIR), 126 if it could not be executed otherwise
// (including a bad seccomp program); 125 if the init itself failed: a bad
// EnvVar or no command (a message on stderr, the status file untouched),
// or no fork (an exec-failed record).
//
// The status file holds a record of ASCII lines, replaced as the command
// goes. The first line is the command's state:
//
//	running PID                the command was forked; PID as the init sees it
//	exited CODE
//	signaled SIGNO
//	exec-failed ERRNO MESSAGE  MESSAGE is strerror(ERRNO) when exec failed,
//	                           else "step: reason" (e.g. "seccomp: ...")
//
// Once a log record was lost (see Logs), a second line follows:
//
//	log-lost TOTAL ERRNO       TOTAL records lost (1 or more); ERRNO why
//	                           writing fails now, 0 once it works again
//
// The init rewrites the record when the state changes, at the first record
// lost after a successful write, and at the next successful write (the note
// below), but not for each record lost: while ERRNO is set, more records
// than TOTAL may be lost already. The final record keeps the log-lost line,
// with the exact TOTAL.
//
// # Logs
//
// With logdir, each line of the command's output becomes a record in
// logdir/output.log:
//
//	2026-11-25T21:42:00.123456Z stdout the line
//
// (UTC, microseconds, fixed width; stdout or stderr). Lines longer than 16
// KiB are cut into several records. A partial line (no newline yet) is
// written as a record of its own once no output came for 100 ms, when the
// pipe closes, or when the command ends; the rest of the line then follows
// as another record. Before a record would take output.log past logmax,
// output.log becomes output.log.1 (output.log.1 becomes output.log.2, and
// so on; the oldest is overwritten) and a new output.log is started, so a
// record never spans two files and a file exceeds logmax only if it holds a
// single record larger than logmax. An existing output.log is appended to.
// A record that cannot be written (ENOSPC, EDQUOT, EFBIG) is dropped whole;
// the next record written is preceded by
//
//	... stderr corral-init: N log lines dropped (No space left on device)
//
// and the status record's log-lost line tells the daemon in the meantime.
// Logging never blocks the command and never ends the init. When the command
// ends, the init reads what is left in the pipes (at most 1 MiB each) and
// exits without waiting for background processes that still hold them.
package pid1

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// EnvVar is the environment variable that makes the binary the init.
const EnvVar = "_CORRAL_PID1"

// PathInSandbox is where corral binds its own binary inside each sandbox.
const PathInSandbox = "/dev/.corral-init"

// Config is what the init is given.
type Config struct {
	// Status is required: the init writes the command's state and end
	// here. Open it read-write, without O_APPEND.
	Status *os.File
	// Seccomp, if set, holds a raw classic-BPF program for the command.
	Seccomp *os.File
	// LogDir, if set, is a directory: the command's output goes to
	// timestamped, rotated files there instead of the init's own stdout
	// and stderr.
	LogDir *os.File
	// LogMaxSize is the size at which a log file is rotated, and
	// LogMaxFiles how many log files are kept, the current one included
	// (at most 1000): both required with LogDir.
	LogMaxSize  int64
	LogMaxFiles int
	// Keep, if set, is a socket the init holds open until it exits.
	Keep *os.File
}

// KeepFd is the fd number at which the init holds c.Keep, as Wrap
// assigns them (0 without Keep).
func (c Config) KeepFd() int {
	if c.Keep == nil {
		return 0
	}
	fd := 4 // status is 3; seccomp and logdir come before keep
	if c.Seccomp != nil {
		fd++
	}
	if c.LogDir != nil {
		fd++
	}
	return fd
}

// Wrap returns the argv, the extra environment entry, and the ExtraFiles
// (in fd order 3, 4, ...) to start command under the init. The files must
// come first in the process's ExtraFiles. Wrap panics if c.Status is nil,
// or if LogDir is set without LogMaxSize and LogMaxFiles.
func (c Config) Wrap(command []string) (argv []string, env string, extraFiles []*os.File) {
	if c.Status == nil {
		panic("pid1: Config.Status is required")
	}
	if c.LogDir != nil && (c.LogMaxSize <= 0 || c.LogMaxFiles <= 0) {
		panic("pid1: Config.LogDir needs LogMaxSize and LogMaxFiles")
	}
	argv = append([]string{PathInSandbox}, command...)
	extraFiles = []*os.File{c.Status}
	items := []string{"status=3"}
	addFile := func(key string, f *os.File) {
		items = append(items, key+"="+strconv.Itoa(3+len(extraFiles)))
		extraFiles = append(extraFiles, f)
	}
	if c.Seccomp != nil {
		addFile("seccomp", c.Seccomp)
	}
	if c.LogDir != nil {
		addFile("logdir", c.LogDir)
	}
	if c.Keep != nil {
		addFile("keep", c.Keep) // last, as KeepFd counts
	}
	if c.LogMaxSize > 0 {
		items = append(items, "logmax="+strconv.FormatInt(c.LogMaxSize, 10))
	}
	if c.LogMaxFiles > 0 {
		items = append(items, "logfiles="+strconv.Itoa(c.LogMaxFiles))
	}
	return argv, EnvVar + "=" + strings.Join(items, ","), extraFiles
}

// States of the status record.
const (
	StateRunning    = "running"
	StateExited     = "exited"
	StateSignaled   = "signaled"
	StateExecFailed = "exec-failed"
)

// ErrNoStatus: the status file holds no complete record yet; the init has
// not forked the command (or never ran).
var ErrNoStatus = errors.New("no status record")

// Status is the init's record of the command.
type Status struct {
	State   string // StateRunning, StateExited, StateSignaled or StateExecFailed
	PID     int    // running: the command's PID as the init sees it
	Code    int    // exited: the exit code
	Signal  int    // signaled: the signal that killed the command
	Errno   int    // exec-failed: why
	Message string // exec-failed: what, in words

	// In any state, with logging: the log records lost (while LogErrno
	// is set, at least that many), and why they cannot be written now (0
	// once writing works again).
	LogLost  uint64
	LogErrno int
}

// ParseStatus parses a status record. The first line is authoritative.
// The init replaces a record with pwrite, then ftruncate: meanwhile the
// file may end with the tail of an older, longer record. So the second
// line counts only if it is a complete, well-formed log-lost line, and
// anything else after the first line is ignored. The record is final once
// the init exited.
func ParseStatus(data []byte) (Status, error) {
	line, rest, ok := bytes.Cut(data, []byte("\n"))
	if !ok {
		return Status{}, ErrNoStatus
	}
	state, arg, _ := strings.Cut(string(line), " ")
	s := Status{State: state}
	var err error
	switch state {
	case StateRunning:
		s.PID, err = parseNum(arg, 1, 1<<30)
	case StateExited:
		s.Code, err = parseNum(arg, 0, 255)
	case StateSignaled:
		s.Signal, err = parseNum(arg, 1, 127)
	case StateExecFailed:
		num, msg, _ := strings.Cut(arg, " ")
		s.Errno, err = parseNum(num, 1, 4095)
		s.Message = msg
		if err == nil && msg == "" {
			err = errors.New("no message")
		}
	default:
		err = errors.New("unknown state")
	}
	if err != nil {
		return Status{}, fmt.Errorf("parse status %q: %w", line, err)
	}
	s.LogLost, s.LogErrno = parseLogLost(rest)
	return s, nil
}

// parseLogLost parses a "log-lost TOTAL ERRNO" line at the start of data;
// without a whole, well-formed one it returns 0, 0.
func parseLogLost(data []byte) (lost uint64, errno int) {
	line, _, ok := bytes.Cut(data, []byte("\n"))
	f := strings.Split(string(line), " ")
	if !ok || len(f) != 3 || f[0] != "log-lost" || !isNum(f[1]) {
		return 0, 0
	}
	lost, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil || lost == 0 {
		return 0, 0
	}
	if errno, err = parseNum(f[2], 0, 4095); err != nil {
		return 0, 0
	}
	return lost, errno
}

// isNum reports whether s is a decimal number as the init writes one:
// digits only, no leading zero.
func isNum(s string) bool {
	return s != "" && strings.TrimLeft(s, "0123456789") == "" && (len(s) == 1 || s[0] != '0')
}

// parseNum parses a decimal number from min to max, digits only.
func parseNum(s string, min, max int) (int, error) {
	if !isNum(s) {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < min || n > max {
		return 0, fmt.Errorf("%q is out of range %d to %d", s, min, max)
	}
	return n, nil
}

// ReadStatus reads and parses the status file at path.
func ReadStatus(path string) (Status, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Status{}, fmt.Errorf("read status: %w", err)
	}
	s, err := ParseStatus(data)
	if err != nil {
		return Status{}, fmt.Errorf("%s: %w", path, err)
	}
	return s, nil
}
