package procstat

import (
	"fmt"
	"os"
	"strconv"
)

// Read reads and parses /proc/PID/stat. A process that is gone (reaped)
// gives an error that matches fs.ErrNotExist (or ESRCH, when it went
// between the open and the read).
func Read(pid int) (Stat, error) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return Stat{}, err
	}
	s, err := Parse(data)
	if err != nil {
		return Stat{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return s, nil
}
