package main

import (
	"fmt"
	"io"
	"os"
	"slices"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/corral-dev/corral/runtime/api"
	"github.com/corral-dev/corral/runtime/daemon"
	"github.com/corral-dev/corral/spec"
)

func newAuditCommand(g *globalOptions) *cobra.Command {
	var (
		asJSON    bool
		config    string
		failAbove float64
	)
	cmd := &cobra.Command{
		Use:   "audit [NAME...]",
		Short: "Score each service's sandbox: every hardening property, loosened or not",
		Long: `audit lists, for each service of the running daemon (or of the service file
given with --config), every property of its sandbox's hardening: user and
other namespaces, capabilities, seccomp, no_new_privileges, the read-only
root, masked paths, memory, CPU and pids limits, the network, writable,
id-mapped and host mounts, devices. Each has a verdict (ok, partial,
exposed), and the service an exposure score from 0 (locked down) to 10
(exposed), as systemd-analyze security scores units.

With --fail-above N it exits 1 when a service scores above N, for CI.

` + escapeHelp,
		RunE: func(cmd *cobra.Command, args []string) error {
			var reports []api.AuditReport
			if config != "" {
				r, err := auditFile(g, config, args)
				if err != nil {
					return err
				}
				reports = r
			} else {
				ctx, cancel := signalContext()
				defer cancel()
				r, err := api.NewClient(g.socketPath()).Audit(ctx, args)
				if err != nil {
					return ctlError(err)
				}
				reports = r
			}
			if asJSON {
				if err := printJSON(reports); err != nil {
					return err
				}
			} else {
				printAudit(os.Stdout, reports)
			}
			if cmd.Flags().Changed("fail-above") {
				for _, r := range reports {
					if r.Score > failAbove {
						return &exitError{code: 1, err: fmt.Errorf("audit: %s scores %.1f, above %g", r.Service, r.Score, failAbove)}
					}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.Flags().StringVar(&config, "config", "", "audit this service file instead of the running daemon's services")
	cmd.Flags().Float64Var(&failAbove, "fail-above", 10, "exit 1 if a service scores above this (0 to 10)")
	return cmd
}

// auditFile audits the services of a service file, checked on this host
// as the daemon would load it.
func auditFile(g *globalOptions, path string, names []string) ([]api.AuditReport, error) {
	cfg, err := spec.LoadOn(path, g.host())
	if err != nil {
		return nil, &exitError{code: 1, err: err}
	}
	var out []api.AuditReport
	for _, n := range names {
		if cfg.Unit(n) == nil {
			return nil, &exitError{code: 3, err: fmt.Errorf("audit: service %q is not in %s", n, path)}
		}
	}
	for _, u := range cfg.Units {
		if len(names) == 0 || slices.Contains(names, u.Service.Name) {
			out = append(out, daemon.AuditReport(&u.Service))
		}
	}
	return out, nil
}

func printAudit(w io.Writer, reports []api.AuditReport) {
	for i, r := range reports {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s: exposure %.1f/10\n", field(r.Service), r.Score)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, c := range r.Checks {
			mark := "✓"
			switch c.Verdict {
			case "partial":
				mark = "~"
			case "exposed":
				mark = "✗"
			}
			weight := ""
			if c.Weight > 0 && c.Exposure > 0 {
				weight = fmt.Sprintf("+%.1f", c.Weight*c.Exposure)
			}
			fmt.Fprintf(tw, "  %s %s\t%s\t%s\n", mark, c.Name, field(c.Setting), weight)
		}
		tw.Flush()
	}
}
