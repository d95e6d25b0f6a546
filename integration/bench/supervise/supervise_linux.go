// Package supervise runs the supervisors corral is compared with,
// supervisord and s6-svscan, on the same shell services as corral's and
// without any sandbox. Each has its own directory under the scratch dir
// and is stopped by its PID alone.
package supervise

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/corral-dev/corral/integration/bench/child"
)

// Supervisord runs supervisord in the foreground on a config of its own
// in dir, supervising one program, name, running `/bin/sh -c script`:
// restarted whenever it ends (autorestart=true), counted as started at
// once (startsecs=0), never given up on (startretries).
func Supervisord(g *child.Group, dir, name, script string) (*child.Proc, error) {
	path, err := exec.LookPath("supervisord")
	if err != nil {
		return nil, fmt.Errorf("supervisord: %w (apt-get install supervisor)", err)
	}
	conf, err := supervisordConfig(dir, name, script)
	if err != nil {
		return nil, err
	}
	confPath := filepath.Join(dir, "supervisord.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("write supervisord config: %w", err)
	}
	return g.Start("supervisord", []string{path, "-n", "-c", confPath}, filepath.Join(dir, "stdout.log"))
}

func supervisordConfig(dir, name, script string) (string, error) {
	if strings.Contains(script, "'") {
		return "", fmt.Errorf("supervisord program %s: the script must not hold a single quote", name)
	}
	// In supervisord's config, % starts an expansion: %% is a percent sign.
	command := "/bin/sh -c '" + strings.ReplaceAll(script, "%", "%%") + "'"
	return fmt.Sprintf(`[supervisord]
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
`, dir, name, command), nil
}

// S6Available says why s6 cannot be run here, if it cannot.
func S6Available() error {
	for _, tool := range []string{"s6-svscan", "s6-supervise"} {
		if _, err := exec.LookPath(tool); err != nil {
			return err
		}
	}
	return nil
}

// WriteS6Service makes the service dir scanDir/name whose run script is
// script, for s6-svscan to find.
func WriteS6Service(scanDir, name, script string) error {
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

// S6 runs s6-svscan on scanDir: one s6-supervise per service dir.
// s6-svscan ends on SIGTERM after bringing every service down and its
// s6-supervise processes with them.
func S6(g *child.Group, scanDir, logPath string) (*child.Proc, error) {
	path, err := exec.LookPath("s6-svscan")
	if err != nil {
		return nil, fmt.Errorf("s6-svscan: %w (apt-get install s6)", err)
	}
	return g.Start("s6-svscan", []string{path, scanDir}, logPath)
}
