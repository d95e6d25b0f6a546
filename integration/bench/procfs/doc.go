// Package procfs is the bench's reader of /proc: processes' memory (PSS),
// their children and names, context switches and CPU time, the host's
// busy time, and what other processes on the machine used meanwhile.
// /proc/PID/stat is parsed by internal/procstat, corral's one parser of it.
package procfs
