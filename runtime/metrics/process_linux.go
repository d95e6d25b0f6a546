package metrics

import (
	"bytes"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// userHZ is the unit of the CPU times in /proc/PID/stat: USER_HZ, 100 on
// every Linux architecture Go runs on (the kernel converts to it).
const userHZ = 100

// writeProcess writes the daemon's process series from /proc/self (its
// own, never a sandbox's). What cannot be read is left out.
func writeProcess(t *text) {
	if st, ok := readSelfStat(); ok {
		t.one("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", true, float64(st.utime+st.stime)/userHZ)
		t.one("process_virtual_memory_bytes", "Virtual memory size in bytes.", false, float64(st.vsize))
		t.one("process_resident_memory_bytes", "Resident memory size in bytes.", false, float64(st.rss*uint64(os.Getpagesize())))
		if boot, ok := bootTime(); ok {
			t.one("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", false, float64(boot)+float64(st.starttime)/userHZ)
		}
	}
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		t.one("process_open_fds", "Number of open file descriptors.", false, float64(len(fds)))
	}
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil {
		t.one("process_max_fds", "Maximum number of open file descriptors.", false, float64(lim.Cur))
	}
}

type selfStat struct {
	utime, stime, starttime, vsize, rss uint64
}

// readSelfStat reads the fields of /proc/self/stat that writeProcess
// needs. They are counted after the command's closing parenthesis: the
// command itself may hold spaces and parentheses.
func readSelfStat() (selfStat, bool) {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return selfStat{}, false
	}
	return parseStat(data)
}

func parseStat(data []byte) (selfStat, bool) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return selfStat{}, false
	}
	// fields[0] is the state, field 3 of proc(5); field N is fields[N-3].
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 22 {
		return selfStat{}, false
	}
	var st selfStat
	for _, f := range []struct {
		n   int
		dst *uint64
	}{{14, &st.utime}, {15, &st.stime}, {22, &st.starttime}, {23, &st.vsize}, {24, &st.rss}} {
		v, err := strconv.ParseUint(string(fields[f.n-3]), 10, 64)
		if err != nil {
			return selfStat{}, false
		}
		*f.dst = v
	}
	return st, true
}

// bootTime is the btime line of /proc/stat: the boot, in seconds since
// the epoch.
func bootTime() (uint64, bool) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, false
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		if v, ok := bytes.CutPrefix(line, []byte("btime ")); ok {
			n, err := strconv.ParseUint(string(bytes.TrimSpace(v)), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}
