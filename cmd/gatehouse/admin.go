package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/server"
)

// adminClient returns a client for the running server's admin socket.
func adminClient(g *globals) (*admin.Client, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, err
	}
	p := cfg.AdminSocketPath()
	if p == "" {
		return nil, errors.New("the admin API is off (admin.socket is empty in the configuration)")
	}
	return admin.NewClient(p), nil
}

// outputFlag adds -o table|json to c.
func outputFlag(c *cobra.Command, out *string) {
	c.Flags().StringVarP(out, "output", "o", "table", "output format: table or json")
}

// render writes v as indented JSON or, for table, calls table.
func render(w io.Writer, format string, v any, table func(w *tabwriter.Writer)) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "table", "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		table(tw)
		return tw.Flush()
	}
	return fmt.Errorf("unknown output format %q (use table or json)", format)
}

// notRunningHint makes ErrNotRunning say what to do.
func notRunningHint(err error) error {
	if errors.Is(err, admin.ErrNotRunning) {
		return fmt.Errorf("%w: start it with 'gatehouse serve' (and the same -c/--data as here)", err)
	}
	return err
}

func newStatusCmd(g *globals) *cobra.Command {
	var out string
	c := &cobra.Command{
		Use:   "status",
		Short: "Show the running server's status",
		Example: `  gatehouse status
  gatehouse status -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := adminClient(g)
			if err != nil {
				return err
			}
			var st server.Status
			if err := cl.Do(cmd.Context(), http.MethodGet, "/v1/status", nil, &st); err != nil {
				return notRunningHint(err)
			}
			return render(cmd.OutOrStdout(), out, st, func(w *tabwriter.Writer) {
				fmt.Fprintf(w, "version\t%s\n", st.Version)
				fmt.Fprintf(w, "pid\t%d\n", st.PID)
				fmt.Fprintf(w, "started\t%s (up %s)\n", st.Started.Local().Format(time.RFC3339), st.Uptime)
				fmt.Fprintf(w, "hosts\t%v\n", st.Hosts)
				fmt.Fprintf(w, "sessions\t%d (%d users)\n", st.Sessions, st.Users)
				fmt.Fprintf(w, "goroutines\t%d\n", st.Goroutines)
				fmt.Fprintf(w, "heap\t%.1f MiB\n", float64(st.HeapBytes)/(1<<20))
			})
		},
	}
	outputFlag(c, &out)
	return c
}

func newSessionCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "session", Short: "List and end live client sessions"}
	var out, user string
	list := &cobra.Command{
		Use:   "list",
		Short: "List live client sessions",
		Example: `  gatehouse session list
  gatehouse session list --user alice -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := adminClient(g)
			if err != nil {
				return err
			}
			path := "/v1/sessions"
			if user != "" {
				path += "?user=" + url.QueryEscape(user)
			}
			var rows []server.SessionInfo
			if err := cl.Do(cmd.Context(), http.MethodGet, path, nil, &rows); err != nil {
				return notRunningHint(err)
			}
			return render(cmd.OutOrStdout(), out, rows, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "JID\tADDRESS\tTLS\tSASL\tCLIENT\tCONNECTED\tIDLE\tPRESENCE")
				for _, r := range rows {
					pres := "unavailable"
					if r.Available {
						pres = fmt.Sprintf("available (%d)", r.Priority)
					}
					client := r.Client
					if client == "" {
						client = "-"
					}
					fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.JID, r.Address, r.TLS, r.Mechanism, client,
						r.Started.Local().Format("2006-01-02 15:04:05"), (time.Duration(r.IdleSecs) * time.Second).String(), pres)
				}
			})
		},
	}
	list.Flags().StringVar(&user, "user", "", "only this user's sessions")
	outputFlag(list, &out)
	var reason string
	kick := &cobra.Command{
		Use:   "kick JID",
		Short: "End a session (full JID) or all of a user's sessions (user or bare JID)",
		Example: `  gatehouse session kick alice@example.com/phone
  gatehouse session kick alice --reason "account under review"`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := adminClient(g)
			if err != nil {
				return err
			}
			var res server.KickResult
			if err := cl.Do(cmd.Context(), http.MethodPost, "/v1/sessions/kick", server.KickRequest{JID: args[0], Reason: reason}, &res); err != nil {
				return notRunningHint(err)
			}
			for _, j := range res.Kicked {
				fmt.Fprintf(cmd.OutOrStdout(), "kicked %s\n", j)
			}
			return nil
		},
	}
	kick.Flags().StringVar(&reason, "reason", "", "text sent to the client with the stream error")
	cmd.AddCommand(list, kick)
	return cmd
}

func newReloadCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "reload",
		Short: "Make the running server re-read its configuration, certificate and policy",
		Long: `Asks the running server to re-read its configuration file (the one it was started
with): the log level, the TLS certificate and key, and the policy file. An invalid
configuration is refused and nothing changes. Same as sending the server SIGHUP.`,
		Example: `  gatehouse reload`,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := adminClient(g)
			if err != nil {
				return err
			}
			var res server.ReloadResult
			if err := cl.Do(cmd.Context(), http.MethodPost, "/v1/reload", nil, &res); err != nil {
				return notRunningHint(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "reloaded: %v\n", res.Reloaded)
			if len(res.Failed) > 0 {
				for part, why := range res.Failed {
					fmt.Fprintf(cmd.OutOrStdout(), "not reloaded: %s: %s\n", part, why)
				}
				return errors.New("part of the configuration was not reloaded (see above)")
			}
			return nil
		},
	}
}
