// Package procstat parses /proc/PID/stat, the kernel's one-line summary of
// a process (proc(5)). It is corral's one parser of that file: the
// command's name (field 2) may hold spaces and parentheses, so the fields
// after it are found from the last ')', never by splitting the whole line.
package procstat

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// UserHZ is the unit of the CPU times and the start time: USER_HZ, which
// the kernel fixes at 100 ticks a second on every architecture Go
// supports, whatever its internal HZ.
const UserHZ = 100

// ErrMalformed is returned for a line that is not a /proc/PID/stat line.
var ErrMalformed = errors.New("malformed /proc/PID/stat line")

// Stat is the fields of /proc/PID/stat that corral reads; the comments
// give their numbers in proc(5).
type Stat struct {
	PID   int    // field 1
	Comm  string // field 2, without its parentheses; at most 15 bytes
	State byte   // field 3: R, S, D, Z (zombie), X (dead), ...
	PPID  int    // field 4: the parent
	// UTime and STime (fields 14 and 15) are the CPU time the process
	// (all its threads) spent in user and kernel mode; CUTime and CSTime
	// (16 and 17) that of its children that ended and were waited for.
	// In ticks of 1/UserHZ s.
	UTime, STime, CUTime, CSTime int64
	// StartTime (field 22) is when the process started, in ticks since
	// boot: with the PID, it tells a process from a later one that got
	// the same PID.
	StartTime uint64
}

// Ended reports whether the process has exited: a zombie (its parent has
// not reaped it yet) or dead, though it still has a /proc entry.
func (s Stat) Ended() bool { return s.State == 'Z' || s.State == 'X' }

// CPU is UTime+STime as a duration.
func (s Stat) CPU() time.Duration { return Ticks(s.UTime + s.STime) }

// ChildrenCPU is CUTime+CSTime as a duration.
func (s Stat) ChildrenCPU() time.Duration { return Ticks(s.CUTime + s.CSTime) }

// Ticks converts a count of 1/UserHZ s ticks to a duration.
func Ticks(n int64) time.Duration { return time.Duration(n) * time.Second / UserHZ }

// Parse parses the contents of a /proc/PID/stat file.
func Parse(data []byte) (Stat, error) {
	var s Stat
	open := bytes.IndexByte(data, '(')
	// The name ends at the last ')': a name can hold ") (", never the
	// fields after it.
	end := bytes.LastIndexByte(data, ')')
	if open < 0 || end < open {
		return s, fmt.Errorf("%w: no command name in parentheses", ErrMalformed)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data[:open])))
	if err != nil {
		return s, fmt.Errorf("%w: pid: %v", ErrMalformed, err)
	}
	s.PID, s.Comm = pid, string(data[open+1:end])
	// f[0] is field 3; field n is f[n-3].
	f := strings.Fields(string(data[end+1:]))
	const last = 22
	if len(f) < last-2 {
		return s, fmt.Errorf("%w: %d fields, want at least %d", ErrMalformed, len(f)+2, last)
	}
	if len(f[0]) != 1 {
		return s, fmt.Errorf("%w: state %q", ErrMalformed, f[0])
	}
	s.State = f[0][0]
	if s.PPID, err = strconv.Atoi(f[4-3]); err != nil {
		return s, fmt.Errorf("%w: ppid: %v", ErrMalformed, err)
	}
	for i, p := range []*int64{&s.UTime, &s.STime, &s.CUTime, &s.CSTime} {
		if *p, err = strconv.ParseInt(f[14-3+i], 10, 64); err != nil {
			return s, fmt.Errorf("%w: field %d: %v", ErrMalformed, 14+i, err)
		}
	}
	if s.StartTime, err = strconv.ParseUint(f[22-3], 10, 64); err != nil {
		return s, fmt.Errorf("%w: starttime: %v", ErrMalformed, err)
	}
	return s, nil
}
