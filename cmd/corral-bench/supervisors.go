package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The supervisors corral is compared with run the same shell service as
// corral, without any sandbox. Each has its own directory under the
// scratch dir and is stopped by its PID alone.

// startSupervisord runs supervisord in the foreground on a config of its
// own in dir, supervising one program, name, running `/bin/sh -c script`:
// restarted whenever it ends (autorestart=true), counted as started at
// once (startsecs=0), never given up on (startretries).
func startSupervisord(cs *children, dir, name, script string) (*child, error) {
	path, err := exec.LookPath("supervisord")
	if err != nil {
		return nil, fmt.Errorf("supervisord: %w (apt-get install supervisor)", err)
	}
	if strings.Contains(script, "'") {
		return nil, fmt.Errorf("supervisord program %s: the script must not hold a single quote", name)
	}
	// In supervisord's config, % starts an expansion: %% is a percent sign.
	command := "/bin/sh -c '" + strings.ReplaceAll(script, "%", "%%") + "'"
	conf := fmt.Sprintf(`[supervisord]
nodaemon=true
user=root
logfile=%[1]s/supervisord.log
pidfile=%[1]s/supervisord.pid
childlogdir=%[1]s

[program:%[2]s]
command=%[3]s
autorestart=true
startsecs=0
startretries=1000000
stdout_logfile=NONE
stderr_logfile=NONE
`, dir, name, command)
	confPath := filepath.Join(dir, "supervisord.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("write supervisord config: %w", err)
	}
	return cs.start("supervisord", []string{path, "-n", "-c", confPath}, filepath.Join(dir, "stdout.log"))
}

// writeS6Service makes the service dir scanDir/name whose run script is
// script, for s6-svscan to find.
func writeS6Service(scanDir, name, script string) error {
	dir := filepath.Join(scanDir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("make s6 service dir: %w", err)
	}
	run := "#!/bin/sh\n" + script + "\n"
	if err := os.WriteFile(filepath.Join(dir, "run"), []byte(run), 0o755); err != nil {
		return fmt.Errorf("write s6 run script: %w", err)
	}
	return nil
}

// startS6 runs s6-svscan on scanDir: one s6-supervise per service dir.
// s6-svscan ends on SIGTERM after bringing every service down and its
// s6-supervise processes with them.
func startS6(cs *children, scanDir, logPath string) (*child, error) {
	path, err := exec.LookPath("s6-svscan")
	if err != nil {
		return nil, fmt.Errorf("s6-svscan: %w (apt-get install s6)", err)
	}
	return cs.start("s6-svscan", []string{path, scanDir}, logPath)
}

// s6Services lists the s6-supervise processes of an s6-svscan and, for
// each, the service process it runs (0: none yet).
func s6Services(svscan int) (map[int]int, error) {
	sups, err := childrenOf(svscan)
	if err != nil {
		return nil, err
	}
	out := map[int]int{}
	for _, s := range sups {
		if comm(s) != "s6-supervise" {
			continue
		}
		kids, _ := childrenOf(s)
		out[s] = 0
		if len(kids) > 0 {
			out[s] = kids[0]
		}
	}
	return out, nil
}

// descendsFrom reports whether ancestor is pid's parent (depth 1), its
// grandparent (depth 2), and so on.
func descendsFrom(pid, ancestor, depth int) bool {
	for i := 0; i < depth; i++ {
		st, err := readStat(pid)
		if err != nil {
			return false
		}
		pid = st.ppid
	}
	return pid == ancestor
}
