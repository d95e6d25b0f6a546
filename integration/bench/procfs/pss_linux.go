package procfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// pssKB is the proportional set size of a process from
// /proc/PID/smaps_rollup: its private pages plus its share of the pages it
// shares, so that summing it over processes counts a shared page once.
func pssKB(pid int) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "Pss:" {
			return strconv.ParseInt(f[1], 10, 64)
		}
	}
	return 0, fmt.Errorf("no Pss in /proc/%d/smaps_rollup", pid)
}

// SumPSS is the total PSS of pids, in bytes.
func SumPSS(pids []int) (int64, error) {
	var total int64
	for _, pid := range pids {
		kb, err := pssKB(pid)
		if err != nil {
			return 0, fmt.Errorf("PSS of %d: %w", pid, err)
		}
		total += kb << 10
	}
	return total, nil
}
