package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
	"gatehouse/xmpp/storage"
)

// newUserLockCmds returns `user lock` and `user unlock`: through the
// running server when there is one (so sessions end at once), else on the
// data directory.
func newUserLockCmds(g *globals) []*cobra.Command {
	mk := func(lock bool) *cobra.Command {
		verb, example := "unlock", "  gatehouse user unlock alice"
		short := "Unlock an account so it can log in again"
		if lock {
			verb, example = "lock", "  gatehouse user lock alice"
			short = "Lock an account: logins fail with account-disabled and its sessions end"
		}
		return &cobra.Command{
			Use: verb + " USER", Short: short, Example: example, Args: cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				cfg, err := g.load()
				if err != nil {
					return err
				}
				var res server.LockResult
				if ran, err := userViaServer(cmd, cfg, args[0], verb, &res); ran {
					if err == nil {
						fmt.Fprintf(cmd.OutOrStdout(), "%sed %s\n", verb, res.User)
						printKicked(cmd, res.Kicked)
					}
					return err
				}
				cfg, db, user, err := userOnDisk(cmd, g, args[0], verb)
				if err != nil {
					return err
				}
				defer db.Close()
				if err := db.SetLocked(cmd.Context(), user, lock); err != nil {
					if errors.Is(err, storage.ErrNoUser) {
						return fmt.Errorf("no user %q (see 'gatehouse user list')", user)
					}
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%sed %s@%s\n", verb, user, cfg.Hosts[0])
				return nil
			},
		}
	}
	return []*cobra.Command{mk(true), mk(false)}
}

// userViaServer asks the running server to act on a user (POST
// /v1/users/NAME/ACTION), so that the user's sessions end at once. ran is
// false when no server answers: the caller then works on the data
// directory.
func userViaServer(cmd *cobra.Command, cfg *config.Config, name, action string, out any) (ran bool, err error) {
	p := cfg.AdminSocketPath()
	if p == "" {
		return false, nil
	}
	err = admin.NewClient(p).Do(cmd.Context(), http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/"+action, nil, out)
	switch {
	case errors.Is(err, admin.ErrNotRunning):
		return false, nil
	case errors.Is(err, admin.ErrNotFound):
		return true, fmt.Errorf("no user %q (see 'gatehouse user list')", name)
	}
	return true, err
}

// userOnDisk opens the data directory for a change to user and records
// the change (user.ACTION) in the archive's admin log first.
func userOnDisk(cmd *cobra.Command, g *globals, name, action string) (*config.Config, *storage.DB, string, error) {
	cfg, db, user, err := openForUser(cmd, g, name)
	if err != nil {
		return nil, nil, "", err
	}
	exists, err := db.Exists(cmd.Context(), user)
	if err == nil && exists {
		err = auditCLI(cmd.Context(), cfg, "user."+action, user+"@"+cfg.Hosts[0])
	}
	if err != nil {
		_ = db.Close()
		return nil, nil, "", err
	}
	return cfg, db, user, nil
}

func printKicked(cmd *cobra.Command, kicked []string) {
	for _, j := range kicked {
		fmt.Fprintf(cmd.OutOrStdout(), "kicked %s\n", j)
	}
}

// userDetails is what `user show` prints.
type userDetails struct {
	JID      string               `json:"jid"`
	Locked   bool                 `json:"locked"`
	Groups   []string             `json:"groups"`
	Manager  string               `json:"manager,omitempty"`
	Offline  int                  `json:"offline_messages"`
	Contacts int                  `json:"roster_items"`
	Sessions []server.SessionInfo `json:"sessions"`
	Running  bool                 `json:"server_running"`
}

func newUserShowCmd(g *globals) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "show USER",
		Short: "Show an account: lock state, groups, manager, roster size, offline messages and live sessions",
		Example: `  gatehouse user show alice
  gatehouse user show alice@example.com -o json`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, db, user, err := openForUser(cmd, g, args[0])
			if err != nil {
				return err
			}
			defer db.Close()
			ctx := cmd.Context()
			d := userDetails{JID: user + "@" + cfg.Hosts[0], Sessions: []server.SessionInfo{}}
			if d.Locked, err = db.Locked(ctx, user); err != nil {
				if errors.Is(err, storage.ErrNoUser) {
					return fmt.Errorf("no user %q (see 'gatehouse user list')", user)
				}
				return err
			}
			if d.Groups, err = db.UserGroups(ctx, user); err != nil {
				return err
			}
			if d.Manager, err = db.Manager(ctx, user); err != nil {
				return err
			}
			if d.Offline, err = db.OfflineCount(ctx, user); err != nil {
				return err
			}
			items, _, err := db.Roster(ctx, user)
			if err != nil {
				return err
			}
			d.Contacts = len(items)
			if p := cfg.AdminSocketPath(); p != "" {
				err := admin.NewClient(p).Do(ctx, http.MethodGet, "/v1/sessions?user="+url.QueryEscape(d.JID), nil, &d.Sessions)
				switch {
				case err == nil:
					d.Running = true
				case !errors.Is(err, admin.ErrNotRunning):
					return err
				}
			}
			return render(cmd.OutOrStdout(), out, d, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "user\t%s\n", d.JID)
				fmt.Fprintf(w, "locked\t%v\n", d.Locked)
				fmt.Fprintf(w, "groups\t%v\n", d.Groups)
				fmt.Fprintf(w, "manager\t%s\n", orNone(d.Manager))
				fmt.Fprintf(w, "roster\t%d contacts\n", d.Contacts)
				fmt.Fprintf(w, "offline\t%d messages waiting\n", d.Offline)
				switch {
				case !d.Running:
					fmt.Fprintf(w, "sessions\t(server not running)\n")
				case len(d.Sessions) == 0:
					fmt.Fprintf(w, "sessions\tnone\n")
				}
				for _, s := range d.Sessions {
					fmt.Fprintf(w, "session\t%s from %s, %s %s, idle %s\n", s.JID, s.Address, s.TLS, s.Mechanism, time.Duration(s.IdleSecs)*time.Second)
				}
			})
		},
	}
	outputFlag(c, &out)
	return c
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
