package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/corral-dev/corral/runtime/idmap"
)

func newSetupCommand() *cobra.Command {
	return &cobra.Command{
		Use:   "setup",
		Short: "Prepare this host for corral: give corral its range of subordinate IDs",
		Long: `setup adds a line ` + idmap.Owner + `:START:COUNT to /etc/subuid and /etc/subgid
where corral has none: the same range in both, aligned to 65536, clear of
every other owner's. Each sandbox's user namespace gets a block of 65536
IDs from it. It changes nothing when the lines are there.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			did, err := idmap.Setup(idmap.SubUIDPath, idmap.SubGIDPath)
			if err != nil {
				return fmt.Errorf("setup: %w", err)
			}
			if did == "" {
				did = "corral's ID range is in /etc/subuid and /etc/subgid already"
			}
			fmt.Fprintln(cmd.OutOrStdout(), did)
			return nil
		},
	}
}
