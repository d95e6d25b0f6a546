// Command corral runs services each in its own hardened sandbox.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/sandbox"
	"github.com/corral-dev/corral/spec"
)

// version is set at build time (-ldflags "-X main.version=...").
var version = "dev"

func init() {
	// libcontainer re-executes this binary as "corral init" inside each
	// new sandbox: become its init before any command-line handling.
	if len(os.Args) > 1 && os.Args[1] == sandbox.InitArg {
		sandbox.Init()
	}
}

// exitError carries the exit code corral should end with.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// exitCorralError is corral's exit when it failed itself, or on bad
// usage: 125, as docker run; 126 and 127 (a command that cannot be run)
// come from sandbox.StartFailedCode.
const exitCorralError = sandbox.CodeStartFailed

type globalOptions struct {
	stateDir  string
	dataDir   string
	socket    string
	logLevel  string
	logFormat string
}

func main() {
	if sandbox.IsInitChild() {
		fmt.Fprintln(os.Stderr, "corral: started as a sandbox init with the wrong arguments; refusing to run")
		os.Exit(exitCorralError)
	}
	if filepath.Base(os.Args[0]) == OCIName {
		ociMain(OCIName, os.Args[1:])
	}
	if len(os.Args) > 1 && os.Args[1] == "oci" {
		ociMain("corral oci", os.Args[2:])
	}
	err := newRootCommand().Execute()
	var ee *exitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintln(os.Stderr, "corral:", ee.err)
		}
		os.Exit(ee.code)
	default:
		fmt.Fprintln(os.Stderr, "corral:", err)
		os.Exit(exitCorralError)
	}
}

func newRootCommand() *cobra.Command {
	g := &globalOptions{}
	root := &cobra.Command{
		Use:   "corral",
		Short: "Run services each in its own hardened sandbox, with resource quotas",
		Long: `corral runs each service in its own sandbox: new pid, mount, uts, ipc, network
and cgroup namespaces, a user namespace whose IDs are a block of host IDs of
its own (corral setup gives corral its range), its own cgroup with memory,
CPU and pids limits, no capabilities, seccomp, no_new_privileges, masked
/proc paths and a read-only root. It must run as root.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.setupLogging()
		},
	}
	root.PersistentFlags().StringVar(&g.stateDir, "state-dir", spec.DefaultStateDir, "directory for corral's state (keep it on tmpfs, outside the binary's directory)")
	root.PersistentFlags().StringVar(&g.dataDir, "data-dir", spec.DefaultDataDir, "directory for what outlives a boot: the image store")
	root.PersistentFlags().StringVar(&g.socket, "socket", "", "the daemon's control socket (default: corral.sock in the state dir)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", "info", "log level: debug, info, warning or error")
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", "text", "log format: text or json")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		err = fmt.Errorf("%w (see '%s --help')", err, cmd.CommandPath())
		if cmd.HasParent() { // main names corral itself
			err = fmt.Errorf("%s: %w", cmd.Name(), err)
		}
		return &exitError{code: exitCorralError, err: err}
	})
	root.AddCommand(
		newRunCommand(g),
		newDaemonCommand(g),
		newValidateCommand(g),
		newPsCommand(g),
		newStatusCommand(g),
		newStatsCommand(g),
		newTopCommand(g),
		newActionCommand(g, "start", "Start services", (*api.Client).Start),
		newActionCommand(g, "stop", "Stop services (stop signal, then SIGKILL after their timeout)", (*api.Client).Stop),
		newActionCommand(g, "restart", "Restart services", (*api.Client).Restart),
		newLogsCommand(g),
		newReloadCommand(g),
		newEventsCommand(g),
		newSetupCommand(),
		newAuditCommand(g),
		newImageCommand(g),
		&cobra.Command{
			Use:   "oci [runc's flags] COMMAND",
			Short: "corral's sandbox as an OCI runtime with runc's command line (also as " + OCIName + ", a link to corral)",
			// main runs it before this tree parses anything: here for --help.
			DisableFlagParsing: true,
			RunE: func(cmd *cobra.Command, args []string) error {
				ociMain("corral oci", args)
				return nil
			},
		},
	)
	return root
}

func (g *globalOptions) setupLogging() error {
	level, err := logrus.ParseLevel(g.logLevel)
	if err != nil {
		return fmt.Errorf("--log-level %q: use debug, info, warning or error", g.logLevel)
	}
	logrus.SetLevel(level)
	logrus.SetOutput(os.Stderr)
	switch g.logFormat {
	case "text":
		logrus.SetFormatter(&logrus.TextFormatter{DisableTimestamp: false, FullTimestamp: true})
	case "json":
		logrus.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("--log-format %q: use text or json", g.logFormat)
	}
	return nil
}
