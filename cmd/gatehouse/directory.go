package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/directory"
	"gatehouse/xmpp/server"
)

func newDirectoryCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "directory",
		Short: "Check and sync the corporate directory (LDAP)",
		Long: `Users, groups, managers, shared rosters and vCards come from the directory
configured under 'directory' (docs/directory.md). The server re-reads it every
directory.refresh; these commands test the connection and sync at once.`,
	}
	var out string
	test := &cobra.Command{
		Use:   "test USER",
		Short: "Look a user up in the directory: DN, groups (nesting resolved), manager, vCard",
		Example: `  gatehouse directory test alice
  gatehouse directory test alice -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if !cfg.Directory.Enabled {
				return errors.New("the directory is not enabled (set directory.enabled and directory.url; see docs/directory.md)")
			}
			d, err := directory.New(cfg.Directory)
			if err != nil {
				return err
			}
			defer d.Close()
			u, err := d.User(cmd.Context(), args[0])
			if err != nil {
				return fmt.Errorf("%w (check directory.url, bind_dn, base_dn and user_filter)", err)
			}
			photo := len(u.VCard.Photo)
			u.VCard.Photo = nil
			v := struct {
				*directory.User
				JID        string `json:"jid"`
				PhotoBytes int    `json:"photo_bytes"`
			}{u, u.Name + "@" + cfg.Hosts[0], photo}
			return render(cmd.OutOrStdout(), out, v, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "jid\t%s\n", v.JID)
				fmt.Fprintf(w, "dn\t%s\n", u.DN)
				fmt.Fprintf(w, "disabled\t%v\n", u.Disabled)
				fmt.Fprintf(w, "groups\t%v\n", u.Groups)
				fmt.Fprintf(w, "manager\t%s\n", orNone(u.Manager))
				fmt.Fprintf(w, "name\t%s\n", u.VCard.FullName)
				fmt.Fprintf(w, "title\t%s\n", u.VCard.Title)
				fmt.Fprintf(w, "department\t%s\n", u.VCard.Department)
				fmt.Fprintf(w, "phone\t%s\n", u.VCard.Phone)
				fmt.Fprintf(w, "email\t%s\n", u.VCard.Email)
				fmt.Fprintf(w, "photo\t%d bytes\n", photo)
			})
		},
	}
	outputFlag(test, &out)
	var syncOut string
	syncCmd := &cobra.Command{
		Use:   "sync",
		Short: "Read the directory now and apply it (through the running server, else on the data directory)",
		Example: `  gatehouse directory sync
  gatehouse directory sync -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if !cfg.Directory.Enabled {
				return errors.New("the directory is not enabled (set directory.enabled and directory.url; see docs/directory.md)")
			}
			var res directory.Result
			err = admin.ErrNotRunning
			if p := cfg.AdminSocketPath(); p != "" {
				err = admin.NewClient(p).Do(cmd.Context(), http.MethodPost, "/v1/directory/sync", nil, &res)
			}
			if errors.Is(err, admin.ErrNotRunning) {
				// No server: sync the data directory (no roster pushes needed).
				if aerr := auditCLI(cmd.Context(), cfg, "directory.sync", cfg.Directory.URL); aerr != nil {
					return aerr
				}
				d, derr := directory.New(cfg.Directory)
				if derr != nil {
					return derr
				}
				defer d.Close()
				db, derr := server.OpenDB(cmd.Context(), cfg.DataDir)
				if derr != nil {
					return derr
				}
				defer db.Close()
				s := &directory.Syncer{Dir: d, DB: db, Cfg: cfg.Directory, Domain: cfg.Hosts[0]}
				res, err = s.Sync(cmd.Context())
			}
			if err != nil {
				return err
			}
			if syncOut == "json" {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "synced %d users (%d new, %d locked), %d groups (%d removed, %d membership changes), shared roster +%d -%d\n",
				res.Users, res.Created, res.Locked, res.Groups, res.GroupsRemoved, res.Memberships, res.RosterAdded, res.RosterRemoved)
			return nil
		},
	}
	syncCmd.Flags().StringVarP(&syncOut, "output", "o", "table", "output format: table or json")
	cmd.AddCommand(test, syncCmd)
	return cmd
}
