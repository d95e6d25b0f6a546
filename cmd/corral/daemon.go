package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/corral-dev/corral/runtime/daemon"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/spec"
)

// socketPath is --socket, or corral.sock in the state dir.
func (g *globalOptions) socketPath() string {
	if g.socket != "" {
		return g.socket
	}
	return filepath.Join(g.stateDir, "corral.sock")
}

// host is what a service file (or run's mounts) is checked against:
// corral's own paths on this host.
func (g *globalOptions) host() spec.Host {
	abs := func(p string) string {
		if a, err := filepath.Abs(p); err == nil {
			return a
		}
		return p
	}
	h := spec.Host{StateDir: abs(g.stateDir), Socket: abs(g.socketPath()), Stat: os.Stat, EvalSymlinks: filepath.EvalSymlinks,
		Workdir: sandbox.CheckWorkdir}
	if exe, err := os.Executable(); err == nil {
		if r, err := filepath.EvalSymlinks(exe); err == nil {
			exe = r
		}
		h.Binary = exe
	}
	return h
}

func newDaemonCommand(g *globalOptions) *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "daemon --config FILE",
		Short: "Run the services of a service file, each in its own sandbox, and keep them running",
		Long: `Run every service of the service file in its own sandbox, restart it per
its restart policy, and serve the control socket used by ps, status, start,
stop, restart, logs, reload, events, stats and top. SIGHUP reloads the file (as 'corral
reload' does); SIGTERM or SIGINT stop every service, dependents first, and
exit 0 leaving no sandbox, cgroup or state behind; SIGUSR2 exits at once and
leaves every service running.

The sandboxes do not depend on the daemon: if it dies (or leaves on
SIGUSR2) they keep running and logging, and the next daemon on the same
state dir adopts them, reports how those that ended meanwhile ended, and
carries on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return &exitError{code: 1, err: errors.New("daemon: must be run as root: sandboxes need namespaces and cgroups")}
			}
			if !sandbox.SeccompSupported() {
				return &exitError{code: 1, err: errors.New("daemon: this corral binary was built without seccomp support (cgo and -tags seccomp); refusing to run sandboxes without it")}
			}
			err := daemon.Run(context.Background(), daemon.Options{
				ConfigPath: config, StateDir: g.stateDir, SocketPath: g.socketPath(), Log: logrus.StandardLogger(), Version: version,
				Host: g.host(), DataDir: g.dataDir,
			})
			if err != nil {
				return &exitError{code: 1, err: fmt.Errorf("daemon: %w", err)}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "/etc/corral/corral.yaml", "the service file")
	return cmd
}

func newValidateCommand(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "validate FILE",
		Short: "Check a service file without touching anything; exit 1 with every error found",
		Long: `Check a service file as the daemon would at start or on reload, without
touching anything, and print every error found, each with its file, line,
column and field. Mounts are checked against this host and the state dir
given with --state-dir (the daemon's).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := spec.LoadOn(args[0], g.host())
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return &exitError{code: 1}
			}
			fmt.Printf("%s: valid, %d services\n", args[0], len(cfg.Units))
			return nil
		},
	}
}
