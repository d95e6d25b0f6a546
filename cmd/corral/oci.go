package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/runc/libcontainer/specconv"
	rspec "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/ociruntime"
)

// OCIName is the name under which the binary is corral's OCI runtime
// (a link to corral): containerd's runc shim runs it as BinaryName.
const OCIName = "corral-runc"

// ociOptions are the global options of runc's command line.
type ociOptions struct {
	root          string
	log           string
	logFormat     string
	systemdCgroup bool
	debug         bool
	policy        string
	rootless      string
	rt            *ociruntime.Runtime
}

// ociMain runs the OCI runtime front end on args (after the program's
// name) and exits with runc's codes: 0, 1 for an error (written to --log
// as well, where containerd reads it), 255 for a failed exec.
func ociMain(name string, args []string) {
	o := &ociOptions{}
	root := newOCICommand(o, name)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		os.Exit(0)
	}
	code := 1
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
		err = ee.err
	}
	if err != nil {
		logrus.Error(err)
		if o.log != "" {
			// The log has it for containerd; stderr for a person.
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

func newOCICommand(o *ociOptions, name string) *cobra.Command {
	root := &cobra.Command{
		Use:   name,
		Short: "corral's sandbox as an OCI runtime, with runc's command line",
		Long: `An OCI runtime with runc's command line, for containerd's runc shim
(io.containerd.runc.v2 with BinaryName) and through it Kubernetes (a
RuntimeClass). The bundle's config.json is honoured; a policy
(--policy, default ` + ociruntime.DefaultPolicyFile + ` if present, and
the run.corral.policy/* annotations) may only tighten it.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return o.setup()
		},
	}
	root.SetVersionTemplate(fmt.Sprintf("%s version %s\ncommit: %s\nspec: %s\ngo: %s\n", name, version, version, rspec.Version, runtime.Version()))
	f := root.PersistentFlags()
	f.StringVar(&o.root, "root", ociruntime.DefaultRoot, "root directory for the containers' state (keep it on tmpfs)")
	f.StringVar(&o.log, "log", "", "file to write the runtime's log to (default stderr)")
	f.StringVar(&o.logFormat, "log-format", "text", "log format: text or json")
	f.BoolVar(&o.systemdCgroup, "systemd-cgroup", false, `cgroupsPath is "slice:prefix:name", for systemd`)
	f.BoolVar(&o.debug, "debug", false, "log at debug level")
	f.StringVar(&o.policy, "policy", "", "policy file that tightens every container (default "+ociruntime.DefaultPolicyFile+" if present)")
	f.StringVar(&o.rootless, "rootless", "auto", "accepted for runc compatibility; corral's runtime runs as root only")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return err })
	root.AddCommand(
		ociCreate(o), ociRun(o), ociStart(o), ociState(o), ociKill(o), ociDelete(o), ociExec(o),
		ociPs(o), ociEvents(o), ociUpdate(o), ociSimple(o, "pause", "Freeze every process of the container", (*ociruntime.Runtime).Pause),
		ociSimple(o, "resume", "Thaw a paused container", (*ociruntime.Runtime).Resume), ociFeatures(o), ociList(o), ociSpec(o),
	)
	return root
}

// setup configures logging as runc does and loads the policy.
func (o *ociOptions) setup() error {
	logrus.SetLevel(logrus.InfoLevel)
	if o.debug {
		logrus.SetLevel(logrus.DebugLevel)
	}
	switch o.logFormat {
	case "", "text":
		logrus.SetFormatter(&logrus.TextFormatter{FullTimestamp: true})
	case "json":
		logrus.SetFormatter(&logrus.JSONFormatter{})
	default:
		return fmt.Errorf("invalid log-format: %s", o.logFormat)
	}
	if o.log != "" {
		f, err := os.OpenFile(o.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND|os.O_SYNC|unix.O_CLOEXEC, 0o644)
		if err != nil {
			return err
		}
		logrus.SetOutput(f)
	} else {
		logrus.SetOutput(os.Stderr)
	}
	if os.Geteuid() != 0 {
		return errors.New("corral's OCI runtime runs as root only")
	}
	policy, err := ociruntime.LoadPolicy(o.policy)
	if err != nil {
		return err
	}
	root, err := filepath.Abs(o.root)
	if err != nil {
		return err
	}
	o.rt = &ociruntime.Runtime{Root: root, SystemdCgroup: o.systemdCgroup, Policy: policy}
	return nil
}

// oneID checks that args are exactly one container ID.
func oneID(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("want exactly one container ID, got %d argument(s)", len(args))
	}
	return nil
}

func ociCreate(o *ociOptions) *cobra.Command {
	var co ociruntime.CreateOptions
	cmd := &cobra.Command{
		Use:   "create [flags] ID",
		Short: "Create a container from its bundle; its process waits for start",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := oneID(args); err != nil {
				return err
			}
			return o.rt.Create(args[0], co)
		},
	}
	f := cmd.Flags()
	f.StringVarP(&co.Bundle, "bundle", "b", ".", "the bundle: the directory of config.json")
	f.StringVar(&co.PidFile, "pid-file", "", "file to write the container's init PID to")
	f.StringVar(&co.ConsoleSocket, "console-socket", "", "Unix socket to send the terminal's master to")
	f.IntVar(&co.PreserveFDs, "preserve-fds", 0, "pass fds 3 to 3+N-1 to the container")
	f.Bool("no-pivot", false, "refused: corral always pivots into the root")
	f.Bool("no-new-keyring", false, "accepted for runc compatibility")
	cmd.PreRunE = func(cmd *cobra.Command, _ []string) error {
		if v, _ := cmd.Flags().GetBool("no-pivot"); v {
			return errors.New("--no-pivot: refused: corral always uses pivot_root")
		}
		return nil
	}
	return cmd
}

func ociRun(o *ociOptions) *cobra.Command {
	var (
		co           ociruntime.CreateOptions
		detach, keep bool
	)
	cmd := &cobra.Command{
		Use:   "run [flags] ID",
		Short: "Create and start a container, wait for its process and exit with its status; then delete it (unless --keep)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := oneID(args); err != nil {
				return err
			}
			if detach {
				if err := o.rt.Create(args[0], co); err != nil {
					return err
				}
				return o.rt.Start(args[0])
			}
			status, err := o.rt.Run(args[0], co, keep)
			if err != nil {
				return err
			}
			if status != 0 {
				return &exitError{code: status}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&co.Bundle, "bundle", "b", ".", "the bundle: the directory of config.json")
	f.StringVar(&co.PidFile, "pid-file", "", "file to write the container's init PID to")
	f.StringVar(&co.ConsoleSocket, "console-socket", "", "Unix socket to send the terminal's master to")
	f.IntVar(&co.PreserveFDs, "preserve-fds", 0, "pass fds 3 to 3+N-1 to the container")
	f.BoolVarP(&detach, "detach", "d", false, "return once the process runs (create, then start)")
	f.BoolVar(&keep, "keep", false, "do not delete the container once its process has ended")
	f.Bool("no-subreaper", false, "accepted for runc compatibility")
	f.Bool("no-new-keyring", false, "accepted for runc compatibility")
	return cmd
}

func ociStart(o *ociOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "start ID",
		Short: "Run the process of a created container",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := oneID(args); err != nil {
				return err
			}
			return o.rt.Start(args[0])
		},
	}
}

func ociState(o *ociOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "state ID",
		Short: "Print a container's state as JSON",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := oneID(args); err != nil {
				return err
			}
			st, err := o.rt.State(args[0])
			if err != nil {
				return err
			}
			return writeJSON(cmd.OutOrStdout(), st, true)
		},
	}
}

func ociKill(o *ociOptions) *cobra.Command {
	var all bool
	cmd := &cobra.Command{
		Use:   "kill ID [SIGNAL]",
		Short: "Send a signal (default SIGTERM) to a container's init",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return fmt.Errorf("want ID [SIGNAL], got %d argument(s)", len(args))
			}
			sig := unix.SIGTERM
			if len(args) == 2 {
				var err error
				if sig, err = parseSignal(args[1]); err != nil {
					return err
				}
			}
			return o.rt.Kill(args[0], sig, all)
		},
	}
	cmd.Flags().BoolVarP(&all, "all", "a", false, "runc's obsolete flag: a container no longer running is not an error")
	return cmd
}

// parseSignal takes a signal as a number, a name or a name without SIG.
func parseSignal(s string) (unix.Signal, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 64 {
			return 0, fmt.Errorf("signal %d: out of range", n)
		}
		return unix.Signal(n), nil
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	sig := unix.SignalNum(name)
	if sig == 0 {
		return 0, fmt.Errorf("unknown signal %q", s)
	}
	return sig, nil
}

func ociDelete(o *ociOptions) *cobra.Command {
	var force bool
	cmd := &cobra.Command{
		Use:   "delete [--force] ID",
		Short: "Remove a stopped (or, with --force, any) container",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := oneID(args); err != nil {
				return err
			}
			return o.rt.Delete(args[0], force)
		},
	}
	cmd.Flags().BoolVarP(&force, "force", "f", false, "kill a running container first (SIGKILL)")
	return cmd
}

func ociExec(o *ociOptions) *cobra.Command {
	var (
		eo          ociruntime.ExecOptions
		processFile string
		tty         bool
	)
	cmd := &cobra.Command{
		Use:   "exec [flags] ID [COMMAND [ARG...]]",
		Short: "Run another process in a running container",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return errors.New("want a container ID")
			}
			var err error
			if processFile != "" {
				eo.Process, err = readProcessFile(processFile)
			} else {
				eo.Process, err = o.rt.BundleProcess(args[0], args[1:])
			}
			if err != nil {
				return &exitError{code: 255, err: fmt.Errorf("exec failed: %w", err)}
			}
			if cmd.Flags().Changed("tty") {
				eo.Process.Terminal = tty
			}
			status, err := o.rt.Exec(args[0], eo)
			if err != nil {
				return &exitError{code: 255, err: fmt.Errorf("exec failed: %w", err)}
			}
			if status != 0 {
				return &exitError{code: status}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // the command's own flags are its own
	f.StringVarP(&processFile, "process", "p", "", "a process.json to run")
	f.BoolVarP(&eo.Detach, "detach", "d", false, "return once the process runs")
	f.StringVar(&eo.PidFile, "pid-file", "", "file to write the process's PID to")
	f.StringVar(&eo.ConsoleSocket, "console-socket", "", "Unix socket to send the terminal's master to")
	f.BoolVarP(&tty, "tty", "t", false, "give the process a terminal")
	f.IntVar(&eo.PreserveFDs, "preserve-fds", 0, "pass fds 3 to 3+N-1 to the process")
	return cmd
}

func readProcessFile(path string) (*rspec.Process, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	p, err := ociruntime.ReadProcess(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return p, nil
}

func ociPs(o *ociOptions) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "ps [--format json] ID",
		Short: "List the host PIDs of a container's processes",
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return errors.New("want a container ID")
			}
			pids, err := o.rt.Processes(args[0])
			if err != nil {
				return err
			}
			switch format {
			case "json":
				if pids == nil {
					pids = []int{}
				}
				return writeJSON(cmd.OutOrStdout(), pids, false)
			case "table":
				fmt.Fprintln(cmd.OutOrStdout(), "PID")
				for _, p := range pids {
					fmt.Fprintln(cmd.OutOrStdout(), p)
				}
				return nil
			default:
				return fmt.Errorf("--format %q: want json or table", format)
			}
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", "table", "json or table")
	return cmd
}

func ociEvents(o *ociOptions) *cobra.Command {
	var (
		stats    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "events [--stats] ID",
		Short: "Print a container's resource usage as JSON (once with --stats, else every interval)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := oneID(args); err != nil {
				return err
			}
			if interval <= 0 {
				return errors.New("--interval: must be greater than 0")
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			for {
				ev, err := o.rt.Stats(args[0])
				if err != nil {
					return err
				}
				if err := enc.Encode(ev); err != nil {
					return err
				}
				if stats {
					return nil
				}
				time.Sleep(interval)
			}
		},
	}
	cmd.Flags().BoolVar(&stats, "stats", false, "print the usage once and exit")
	cmd.Flags().DurationVar(&interval, "interval", 5*time.Second, "time between two prints")
	return cmd
}

func ociUpdate(o *ociOptions) *cobra.Command {
	var resources string
	cmd := &cobra.Command{
		Use:   "update --resources FILE|- ID",
		Short: "Change a running container's resources (runtime spec's linux.resources JSON)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := oneID(args); err != nil {
				return err
			}
			if resources == "" {
				return errors.New("--resources: required (a file, or - for stdin)")
			}
			var in io.Reader = os.Stdin
			if resources != "-" {
				f, err := os.Open(resources)
				if err != nil {
					return err
				}
				defer f.Close()
				in = f
			}
			res, err := ociruntime.ReadResources(in)
			if err != nil {
				return err
			}
			return o.rt.Update(args[0], res)
		},
	}
	cmd.Flags().StringVarP(&resources, "resources", "r", "", "the resources JSON file, or - for stdin")
	return cmd
}

func ociSimple(o *ociOptions, name, short string, op func(*ociruntime.Runtime, string) error) *cobra.Command {
	return &cobra.Command{
		Use:   name + " ID",
		Short: short,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := oneID(args); err != nil {
				return err
			}
			return op(o.rt, args[0])
		},
	}
}

func ociFeatures(o *ociOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "features",
		Short: "Print what this runtime supports (the runtime spec's features JSON)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return writeJSON(cmd.OutOrStdout(), ociruntime.Features(version), true)
		},
	}
}

func ociList(o *ociOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the containers under the root",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			ids, err := o.rt.List()
			if err != nil {
				return err
			}
			for _, id := range ids {
				st, err := o.rt.State(id)
				if err != nil {
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s\t%d\t%s\t%s\n", st.ID, st.Pid, st.Status, st.Bundle)
			}
			return nil
		},
	}
}

func writeJSON(w io.Writer, v any, indent bool) error {
	enc := json.NewEncoder(w)
	if indent {
		enc.SetIndent("", "  ")
	}
	return enc.Encode(v)
}

func ociSpec(o *ociOptions) *cobra.Command {
	var bundle string
	cmd := &cobra.Command{
		Use:   "spec [--bundle DIR]",
		Short: "Write a starting config.json (runc's example spec: sh in ./rootfs, with a terminal)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			path := filepath.Join(bundle, ociruntime.ConfigFile)
			data, err := json.MarshalIndent(specconv.Example(), "", "\t")
			if err != nil {
				return err
			}
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
			if err != nil {
				return fmt.Errorf("spec: %w", err)
			}
			defer f.Close()
			_, err = f.Write(append(data, '\n'))
			return err
		},
	}
	cmd.Flags().StringVarP(&bundle, "bundle", "b", ".", "the bundle's directory")
	return cmd
}
