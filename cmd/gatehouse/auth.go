package main

import (
	"fmt"
	"net/http"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/xmpp/auth/throttle"
)

func newAuthCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "auth",
		Short: "See and lift the login back-off against password guessing",
		Long: `After auth.throttle.free failed logins from one address, or against one account,
further attempts wait a delay that doubles with each failure (auth.throttle in
the configuration). These commands show who is waiting and lift a wait early.
They need the running server.`,
	}
	var out string
	blocked := &cobra.Command{
		Use:   "blocked",
		Short: "List addresses and accounts with failed logins, those waiting first",
		Example: `  gatehouse auth blocked
  gatehouse auth blocked -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cl, err := adminClient(g)
			if err != nil {
				return err
			}
			var rows []throttle.Entry
			if err := cl.Do(cmd.Context(), http.MethodGet, "/v1/auth/blocked", nil, &rows); err != nil {
				return notRunningHint(err)
			}
			return render(cmd.OutOrStdout(), out, rows, func(w *tabwriter.Writer) {
				fmt.Fprintln(w, "KEY\tFAILURES\tLAST FAILURE\tWAITS FOR")
				now := time.Now()
				for _, r := range rows {
					wait := "-"
					if !r.Until.IsZero() {
						wait = r.Until.Sub(now).Round(time.Second).String()
					}
					fmt.Fprintf(w, "%s\t%d\t%s\t%s\n", r.Key, r.Failures, r.Last.Local().Format("15:04:05"), wait)
				}
			})
		},
	}
	outputFlag(blocked, &out)
	unblock := &cobra.Command{
		Use:   "unblock KEY",
		Short: "Forget the failed logins of an address (ip:ADDR) or account (account:USER)",
		Example: `  gatehouse auth unblock ip:192.0.2.7
  gatehouse auth unblock account:alice`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cl, err := adminClient(g)
			if err != nil {
				return err
			}
			if err := cl.Do(cmd.Context(), http.MethodPost, "/v1/auth/unblock", map[string]string{"key": args[0]}, nil); err != nil {
				return notRunningHint(err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "unblocked %s\n", args[0])
			return nil
		},
	}
	cmd.AddCommand(blocked, unblock)
	return cmd
}
