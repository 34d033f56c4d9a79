package main

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"gatehouse/xmpp/storage"
)

// newSetManagerCmd is `gatehouse user set-manager`: the manager is who
// policy rules with "notify: [manager]" tell about a user's traffic.
func newSetManagerCmd(g *globals) *cobra.Command {
	var clear bool
	cmd := &cobra.Command{
		Use:   "set-manager USER [MANAGER]",
		Short: "Set (or with --clear remove) an account's manager",
		Long: `Set the manager of USER to MANAGER, another account of this server. Policy
rules with "notify: [manager]" send their notices to the manager of the local
user whose traffic they acted on. Deleting either account removes the link.`,
		Example: `  gatehouse user set-manager alice boss
  gatehouse user set-manager alice --clear`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if clear != (len(args) == 1) {
				return errors.New("give USER and MANAGER, or USER and --clear")
			}
			cfg, db, user, err := openForUser(cmd, g, args[0])
			if err != nil {
				return err
			}
			defer db.Close()
			if err := auditCLI(cmd.Context(), cfg, "user.set-manager", strings.Join(args, " ")); err != nil {
				return err
			}
			if clear {
				if err := db.ClearManager(cmd.Context(), user); err != nil {
					if errors.Is(err, storage.ErrNotFound) {
						return fmt.Errorf("%s has no manager", user)
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s has no manager now\n", user)
				return nil
			}
			manager, err := normaliseUser(cfg, args[1])
			if err != nil {
				return err
			}
			switch err := db.SetManager(cmd.Context(), user, manager); {
			case errors.Is(err, storage.ErrNoUser):
				return fmt.Errorf("%s and %s must both be accounts (see 'gatehouse user list')", user, manager)
			case errors.Is(err, storage.ErrInvalid):
				return fmt.Errorf("%s cannot be their own manager", user)
			case err != nil:
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "manager of %s is %s\n", user, manager)
			return nil
		},
	}
	cmd.Flags().BoolVar(&clear, "clear", false, "remove the manager")
	return cmd
}
