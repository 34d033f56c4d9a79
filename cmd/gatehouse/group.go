package main

import (
	"errors"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gatehouse/xmpp/server"
	"gatehouse/xmpp/storage"
)

// newGroupCmd manages the administrative user groups policy rules name
// ("groups: [interns]"). The running server re-reads memberships every
// policy.directory_refresh, so changes need no reload.
func newGroupCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "group",
		Short: "Manage user groups (the subjects of policy rules)",
		Long: `Groups are named sets of accounts that policy rules apply to. They live in the
data directory; the running server sees changes within
policy.directory_refresh (default 10s), without a reload.`,
	}
	var listOut string
	create := &cobra.Command{
		Use:     "create GROUP",
		Short:   "Create a group",
		Example: "  gatehouse group create interns",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDBAudited(cmd, g, "group.create", args[0], func(db *storage.DB) error {
				if err := db.CreateGroup(cmd.Context(), args[0]); err != nil {
					if errors.Is(err, storage.ErrGroupExists) {
						return fmt.Errorf("group %q already exists", args[0])
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "created group %s\n", args[0])
				return nil
			})
		},
	}
	del := &cobra.Command{
		Use:     "delete GROUP",
		Short:   "Delete a group and its memberships",
		Example: "  gatehouse group delete interns",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDBAudited(cmd, g, "group.delete", args[0], func(db *storage.DB) error {
				if err := db.DeleteGroup(cmd.Context(), args[0]); err != nil {
					if errors.Is(err, storage.ErrNotFound) {
						return fmt.Errorf("no group %q (see 'gatehouse group list')", args[0])
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "deleted group %s\n", args[0])
				return nil
			})
		},
	}
	add := &cobra.Command{
		Use:     "add GROUP USER...",
		Short:   "Add accounts to a group",
		Example: "  gatehouse group add interns carol dave@example.com",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDBAudited(cmd, g, "group.add", strings.Join(args, " "), func(db *storage.DB) error {
				cfg, err := g.load()
				if err != nil {
					return err
				}
				for _, name := range args[1:] {
					user, err := normaliseUser(cfg, name)
					if err != nil {
						return err
					}
					switch err := db.AddToGroup(cmd.Context(), args[0], user); {
					case errors.Is(err, storage.ErrNotFound):
						return fmt.Errorf("no group %q (create it with 'gatehouse group create %s')", args[0], args[0])
					case errors.Is(err, storage.ErrNoUser):
						return fmt.Errorf("no user %q (see 'gatehouse user list')", user)
					case err != nil:
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "added %s to %s\n", user, args[0])
				}
				return nil
			})
		},
	}
	remove := &cobra.Command{
		Use:     "remove GROUP USER...",
		Short:   "Remove accounts from a group",
		Example: "  gatehouse group remove interns carol",
		Args:    cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDBAudited(cmd, g, "group.remove", strings.Join(args, " "), func(db *storage.DB) error {
				cfg, err := g.load()
				if err != nil {
					return err
				}
				for _, name := range args[1:] {
					user, err := normaliseUser(cfg, name)
					if err != nil {
						return err
					}
					if err := db.RemoveFromGroup(cmd.Context(), args[0], user); err != nil {
						if errors.Is(err, storage.ErrNotFound) {
							return fmt.Errorf("%s is not in group %q", user, args[0])
						}
						return err
					}
					fmt.Fprintf(cmd.OutOrStdout(), "removed %s from %s\n", user, args[0])
				}
				return nil
			})
		},
	}
	list := &cobra.Command{
		Use:   "list [GROUP]",
		Short: "List groups with their members, or one group's members",
		Example: `  gatehouse group list
  gatehouse group list interns
  gatehouse group list -o json`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withDB(cmd, g, func(db *storage.DB) error {
				names := args
				if len(args) == 0 {
					var err error
					if names, err = db.Groups(cmd.Context()); err != nil {
						return err
					}
				}
				groups := map[string][]string{}
				for _, name := range names {
					members, err := db.GroupMembers(cmd.Context(), name)
					if errors.Is(err, storage.ErrNotFound) {
						return fmt.Errorf("no group %q", name)
					}
					if err != nil {
						return err
					}
					groups[name] = members
				}
				return render(cmd.OutOrStdout(), listOut, groups, func(w *tabwriter.Writer) {
					if len(args) == 1 {
						for _, m := range groups[args[0]] {
							fmt.Fprintln(w, m)
						}
						return
					}
					for _, name := range names {
						fmt.Fprintf(w, "%s: %s\n", name, listOr(groups[name], "(no members)"))
					}
				})
			})
		},
	}
	outputFlag(list, &listOut)
	cmd.AddCommand(create, del, add, remove, list)
	return cmd
}

// withDB opens the data directory's database for fn.
func withDB(cmd *cobra.Command, g *globals, fn func(*storage.DB) error) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	db, err := server.OpenDB(cmd.Context(), cfg.DataDir)
	if err != nil {
		return err
	}
	defer db.Close()
	return fn(db)
}

// withDBAudited is withDB for a change: it is recorded in the compliance
// archive's admin log first, and not made if it cannot be recorded.
func withDBAudited(cmd *cobra.Command, g *globals, action, target string, fn func(*storage.DB) error) error {
	cfg, err := g.load()
	if err != nil {
		return err
	}
	if err := auditCLI(cmd.Context(), cfg, action, target); err != nil {
		return err
	}
	return withDB(cmd, g, fn)
}
