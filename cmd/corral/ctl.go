package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/spec"
)

// ctlError turns an API error into corral's exit: the class decides the
// code, the message is printed as it is.
func ctlError(err error) error {
	code := 1
	switch {
	case errors.Is(err, api.ErrNotFound):
		code = 3
	case errors.Is(err, api.ErrUnavailable):
		code = 4
	}
	return &exitError{code: code, err: err}
}

// signalContext ends when the user presses Ctrl-C.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), unix.SIGINT, unix.SIGTERM)
}

func newPsCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "ps",
		Short: "List the services: state, PID, uptime, restarts, last exit, memory and CPU",
		Long:  "List the services: state, PID, uptime, restarts, last exit, memory and CPU.\n\n" + escapeHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			list, err := api.NewClient(g.socketPath()).List(ctx)
			if err != nil {
				return ctlError(err)
			}
			if asJSON {
				return printJSON(list)
			}
			printServices(os.Stdout, list, time.Now(), terminalWidth(os.Stdout))
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// printServices prints the ps table. With width > 0 (a terminal's), each
// row is cut to it, ending in "…": the last exit's reason is the long
// column, and `corral status` has it whole.
func printServices(w io.Writer, list []api.Service, now time.Time, width int) {
	if width > 0 {
		cw := &cutWriter{w: w, width: width}
		defer cw.flush()
		w = cw
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tSTATE\tPID\tUPTIME\tRESTARTS\tMEMORY\tCPU\tLAST EXIT")
	for _, s := range list {
		pid, uptime, mem, cpu := "-", "-", "-", "-"
		if s.PID != 0 {
			pid = fmt.Sprint(s.PID)
			mem = spec.FormatBytes(int64(s.MemoryUsage))
			if s.MemoryLimit > 0 {
				mem += " / " + spec.FormatBytes(int64(s.MemoryLimit))
			}
			cpu = s.CPUUsage.Round(10 * time.Millisecond).String()
		}
		if !s.StartedAt.IsZero() {
			uptime = now.Sub(s.StartedAt).Round(time.Second).String()
		}
		last := "-"
		if s.LastExit != nil {
			last = field(s.LastExit.Reason)
		}
		state := field(s.State)
		switch {
		case !s.NextAttempt.IsZero():
			state += " (next " + s.NextAttempt.Local().Format("15:04:05") + ")"
		case s.State == "stopped" && strings.HasPrefix(s.Message, "waiting for "):
			state = "waiting (" + field(strings.TrimPrefix(s.Message, "waiting for ")) + ")"
		case s.Health != "" && s.Health != s.State && (s.State == "running" || s.State == "starting"):
			state += " (" + field(s.Health) + ")" // the health check's verdict
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", field(s.Name), state, pid, uptime, s.Restarts, mem, cpu, last)
	}
	tw.Flush()
}

func newStatusCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status NAME",
		Short: "Show one service in detail, with its last exits and their reasons",
		Long:  "Show one service in detail, with its last exits and their reasons.\n\n" + escapeHelp,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			st, err := api.NewClient(g.socketPath()).Status(ctx, args[0])
			if err != nil {
				return ctlError(err)
			}
			if asJSON {
				return printJSON(st)
			}
			printStatus(os.Stdout, st, time.Now())
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

func printStatus(w io.Writer, st *api.ServiceDetail, now time.Time) {
	fmt.Fprintf(w, "service:   %s\n", field(st.Name))
	fmt.Fprintf(w, "state:     %s (wanted %s)\n", field(st.State), field(st.Desired))
	if st.Message != "" {
		fmt.Fprintf(w, "reason:    %s\n", field(st.Message))
	}
	if !st.NextAttempt.IsZero() {
		fmt.Fprintf(w, "next try:  %s\n", st.NextAttempt.Local().Format(time.RFC3339))
	}
	if st.Health != "" {
		h := field(st.Health)
		if st.HealthDetail != "" {
			h += " (" + field(st.HealthDetail) + ")"
		}
		fmt.Fprintf(w, "health:    %s\n", h)
	}
	if st.NotifyStatus != "" {
		fmt.Fprintf(w, "status:    %s (sd_notify)\n", field(st.NotifyStatus))
	}
	if st.PID != 0 {
		fmt.Fprintf(w, "pid:       %d, up %s\n", st.PID, now.Sub(st.StartedAt).Round(time.Second))
		mem := spec.FormatBytes(int64(st.MemoryUsage))
		if st.MemoryLimit > 0 {
			mem += " of " + spec.FormatBytes(int64(st.MemoryLimit))
		}
		fmt.Fprintf(w, "memory:    %s\n", mem)
		fmt.Fprintf(w, "cpu:       %s\n", st.CPUUsage.Round(time.Millisecond))
		fmt.Fprintf(w, "pids:      %d of %d\n", st.PidsCurrent, st.PidsLimit)
	}
	restarts := fmt.Sprint(st.Restarts)
	if len(st.RestartsByKind) > 0 {
		var by []string
		for _, k := range slices.Sorted(maps.Keys(st.RestartsByKind)) {
			by = append(by, fmt.Sprintf("%s %d", field(k), st.RestartsByKind[k]))
		}
		restarts += " (" + strings.Join(by, ", ") + ")"
	}
	fmt.Fprintf(w, "restarts:  %s\n", restarts)
	if st.Image != "" {
		fmt.Fprintf(w, "image:     %s\n", field(st.Image))
	}
	fmt.Fprintf(w, "command:   %s\n", field(strings.Join(st.Command, " ")))
	if len(st.Loosened) > 0 {
		fmt.Fprintf(w, "loosened:  %s\n", field(strings.Join(st.Loosened, ", ")))
	}
	if st.Network != "" {
		net := field(st.Network)
		if st.Address != "" {
			net += ", address " + field(st.Address)
		}
		fmt.Fprintf(w, "network:   %s\n", net)
	}
	if len(st.Publish) > 0 {
		fmt.Fprintf(w, "publish:   %s\n", field(strings.Join(st.Publish, ", ")))
	}
	switch {
	case !st.EgressRestricted:
	case len(st.Egress) == 0:
		fmt.Fprintf(w, "egress:    only its resolver\n")
	default:
		fmt.Fprintf(w, "egress:    only %s and its resolver\n", field(strings.Join(st.Egress, ", ")))
	}
	if st.Cgroup != "" {
		fmt.Fprintf(w, "cgroup:    %s\n", field(st.Cgroup))
	}
	fmt.Fprintf(w, "logs:      %s\n", field(st.LogFile))
	switch {
	case st.LogError != "":
		fmt.Fprintf(w, "log loss:  writing fails (%s); at least %d lines lost\n", field(st.LogError), st.LogLinesLost)
	case st.LogLinesLost > 0:
		fmt.Fprintf(w, "log loss:  %d lines lost (writing works again)\n", st.LogLinesLost)
	}
	if len(st.Exits) > 0 {
		fmt.Fprintln(w, "last exits, newest first:")
		for i := len(st.Exits) - 1; i >= 0; i-- {
			e := st.Exits[i]
			kind := field(e.Kind)
			if kind == "" {
				kind = "exit"
			}
			fmt.Fprintf(w, "  %s  after %s  [%s] %s\n", e.Time.Local().Format("2006-01-02 15:04:05"), e.Ran.Round(time.Millisecond), kind, field(e.Reason))
			// The last lines it printed, as corral logs shows them.
			for _, line := range lastN(e.LastLines, statusLines) {
				fmt.Fprintf(w, "      | %s\n", escape(line, escapeLine))
			}
		}
	}
}

func newActionCommand(g *globalOptions, verb, short string, do func(c *api.Client, ctx context.Context, names []string) error) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " NAME...",
		Short: short,
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			if err := do(api.NewClient(g.socketPath()), ctx, args); err != nil {
				return ctlError(err)
			}
			return nil
		},
	}
}

// followTail is how many past lines `logs -f` prints before it follows,
// unless --tail says otherwise.
const followTail = 10

func newLogsCommand(g *globalOptions) *cobra.Command {
	var req api.LogsRequest
	var raw bool
	cmd := &cobra.Command{
		Use:   "logs [-f] [--tail N] [--raw] NAME",
		Short: "Print a service's output, with timestamps; -f keeps following it",
		Long: `Print a service's output, one line per record: the time, the stream (stdout
or stderr) and the text; -f keeps following it.

On a terminal, the text is escaped as in a Go string, so that the service
cannot drive the terminal: a control character other than newline and tab
is \xNN, a C1 control \u00NN and a byte that is not UTF-8 \xNN. Into a pipe
or a file, and with --raw, its bytes are printed as they are.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			req.Name = args[0]
			if req.Follow && !cmd.Flags().Changed("tail") {
				// As journalctl -f: the recent past, then what comes.
				req.Tail = followTail
			}
			var out io.Writer = os.Stdout
			if !raw && isTerminal(os.Stdout) {
				tw := newTextWriter(os.Stdout)
				defer tw.Flush()
				out = tw
			}
			err := api.NewClient(g.socketPath()).Logs(ctx, req, out)
			if err != nil && !(req.Follow && ctx.Err() != nil) {
				return ctlError(err)
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&req.Follow, "follow", "f", false, "keep printing new lines")
	cmd.Flags().IntVar(&req.Tail, "tail", -1, fmt.Sprintf("print only the last N lines (default: all; with -f, %d; -1: all)", followTail))
	cmd.Flags().BoolVar(&raw, "raw", false, "print the service's bytes as they are, even on a terminal")
	return cmd
}

func newReloadCommand(g *globalOptions) *cobra.Command {
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "reload [--dry-run]",
		Short: "Re-read the service file and apply only what changed (or, with --dry-run, print the plan)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			plan, err := api.NewClient(g.socketPath()).Reload(ctx, dryRun)
			if err != nil {
				return ctlError(err)
			}
			verb := "applied"
			if dryRun {
				verb = "would apply (dry run)"
			}
			fmt.Printf("reload %s:\n", verb)
			for _, l := range []struct {
				what  string
				names []string
			}{
				{"add", plan.Add}, {"remove", plan.Remove}, {"restart", plan.Restart},
				{"update limits in place", plan.Update}, {"unchanged", plan.Unchanged},
			} {
				if len(l.names) > 0 {
					fmt.Printf("  %-22s %s\n", l.what+":", strings.Join(l.names, " "))
				}
			}
			for _, name := range plan.Restart {
				if why := plan.Why[name]; why != "" {
					fmt.Printf("  %s: %s\n", field(name), field(why))
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only print what a reload would do")
	return cmd
}

func newEventsCommand(g *globalOptions) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream state changes of the services as they happen",
		Long:  "Stream state changes of the services as they happen.\n\n" + escapeHelp,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := signalContext()
			defer cancel()
			events, errs := api.NewClient(g.socketPath()).Events(ctx)
			for {
				select {
				case e, ok := <-events:
					if !ok {
						return nil
					}
					if asJSON {
						js, err := json.Marshal(e)
						if err != nil {
							return err
						}
						if _, err := os.Stdout.Write(append(jsonSafe(js), '\n')); err != nil {
							return err
						}
						continue
					}
					fmt.Println(formatEvent(e))
				case err := <-errs:
					if err != nil && ctx.Err() == nil {
						return ctlError(err)
					}
					return nil
				}
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object per line")
	return cmd
}

// printJSON prints v indented, with every control character escaped
// (jsonSafe).
func printJSON(v any) error {
	js, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(append(jsonSafe(js), '\n'))
	return err
}

// statusLines is how many of each exit's last output lines status shows.
const statusLines = 5

func lastN(lines []string, n int) []string {
	if len(lines) > n {
		return lines[len(lines)-n:]
	}
	return lines
}

// formatEvent is one line of `corral events`: a change of state (with the
// exit's kind when a sandbox ended), or of the health check's verdict.
// Every field is escaped (escapeField).
func formatEvent(e api.Event) string {
	at := e.Time.Local().Format("15:04:05.000")
	change := e.From + " -> " + e.To
	if e.Health != "" {
		change = "health: " + e.Health
	}
	if from := e.From; from == "" {
		change = "-> " + e.To
	}
	reason := e.Reason
	if e.Exit != nil && e.Exit.Kind != "" {
		reason = "[" + e.Exit.Kind + "] " + reason
	}
	return field(fmt.Sprintf("%s  %-16s %s  %s", at, e.Service, change, reason))
}

// terminalWidth is the width of the terminal f is, 0 if it is none.
func terminalWidth(f *os.File) int {
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return 0
	}
	return int(ws.Col)
}

// cutWriter cuts each line written through it to width characters.
type cutWriter struct {
	w     io.Writer
	width int
	line  []byte
}

func (c *cutWriter) Write(p []byte) (int, error) {
	for _, b := range p {
		if b != '\n' {
			c.line = append(c.line, b)
			continue
		}
		if err := c.flush(); err != nil {
			return 0, err
		}
		if _, err := io.WriteString(c.w, "\n"); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

func (c *cutWriter) flush() error {
	line := []rune(string(c.line))
	c.line = c.line[:0]
	if len(line) > c.width {
		line = append(line[:c.width-1], '…')
	}
	_, err := io.WriteString(c.w, string(line))
	return err
}
