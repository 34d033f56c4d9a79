package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/s2s"
	"gatehouse/xmpp/admin"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
)

func newFederationCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "federation",
		Short: "Control federation with other XMPP servers (s2s)",
		Long: `Control which remote domains this server federates with.

s2s.mode in the configuration decides how the lists are read: open (every
domain, lists ignored), allowlist (only allowed domains) or denylist (every
domain but denied ones). "*.example.com" covers the subdomains of
example.com.

allow and deny edit a list kept in <data_dir>/federation.db. Its entries take
precedence over s2s.allow and s2s.deny in the configuration and a running
server applies them within seconds: links with a domain that is no longer
allowed are closed. See docs/federation.md.`,
	}
	var note string
	var remove bool
	edit := func(list s2s.List) *cobra.Command {
		c := &cobra.Command{
			Use:   string(list) + " DOMAIN...",
			Short: map[s2s.List]string{s2s.ListAllow: "Allow federation with domains", s2s.ListDeny: "Deny federation with domains"}[list],
			Example: fmt.Sprintf(`  gatehouse federation %[1]s partner.example
  gatehouse federation %[1]s '*.partner.example' --note "ticket 4711"
  gatehouse federation %[1]s --remove partner.example`, list),
			Args: cobra.MinimumNArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				cfg, err := g.load()
				if err != nil {
					return err
				}
				domains := make([]string, 0, len(args))
				for _, a := range args {
					d, err := config.NormalizeDomain(a)
					if err != nil {
						return err
					}
					domains = append(domains, d)
				}
				out := cmd.OutOrStdout()
				report := func(d string) {
					if remove {
						fmt.Fprintf(out, "removed %s from the stored %s list\n", d, list)
					} else {
						fmt.Fprintf(out, "%s: %s\n", d, map[s2s.List]string{s2s.ListAllow: "allowed", s2s.ListDeny: "denied"}[list])
					}
				}
				// A running server with federation makes the change itself:
				// it applies at once and the admin API audits it.
				if cl := liveFederation(cmd.Context(), cfg); cl != nil {
					var res server.FederationEditResult
					err := cl.Do(cmd.Context(), http.MethodPost, "/v1/federation/"+string(list),
						server.FederationEdit{Domains: domains, Note: note, Remove: remove}, &res)
					for _, d := range res.Changed {
						report(d)
					}
					if err != nil {
						return err
					}
					warnMode(cmd.ErrOrStderr(), cfg, list)
					return nil
				}
				store, err := openStore(cmd.Context(), cfg)
				if err != nil {
					return err
				}
				defer store.Close()
				for _, d := range domains {
					if remove {
						err = store.RemoveFrom(cmd.Context(), d, list)
					} else {
						err = store.Set(cmd.Context(), d, list, note)
					}
					if err != nil {
						return err
					}
					report(d)
				}
				warnMode(cmd.ErrOrStderr(), cfg, list)
				return nil
			},
		}
		c.Flags().StringVar(&note, "note", "", "why (shown by list)")
		c.Flags().BoolVar(&remove, "remove", false, "remove the stored entry instead (the configured lists then apply again)")
		return c
	}
	var output string
	list := &cobra.Command{
		Use:     "list",
		Short:   "Show the federation mode and the allow and deny lists",
		Example: "  gatehouse federation list\n  gatehouse federation list -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, store, err := openFederation(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer store.Close()
			entries, err := store.List(cmd.Context())
			if err != nil {
				return err
			}
			return printList(cmd.OutOrStdout(), output, cfg, entries)
		},
	}
	list.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	status := &cobra.Command{
		Use:   "status",
		Short: "Show federation links (direction, authentication, TLS, queue)",
		Long: `Show the federation links of the running server: for each, the direction,
the domains, its state (up, or connecting/retrying while stanzas wait), the
authentication method, TLS version, bidi, queue depth, since when and the
peer's address, and why the last attempt failed.

The links come live from the admin API. When the admin socket is off or
does not answer, this reads the snapshot the server writes to
<data_dir>/federation-status.json whenever its links change (checked every
two seconds), and says how old it is and whether its server still runs.`,
		Example: "  gatehouse federation status\n  gatehouse federation status -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			if p := cfg.AdminSocketPath(); p != "" {
				var st s2s.Status
				err := admin.NewClient(p).Do(cmd.Context(), http.MethodGet, "/v1/federation", nil, &st)
				switch {
				case err == nil:
					return printStatus(cmd.OutOrStdout(), output, cfg, &st, statusLive, time.Now())
				case errors.Is(err, admin.ErrNotFound):
					return printStatus(cmd.OutOrStdout(), output, cfg, nil, statusDisabled, time.Now())
				case !errors.Is(err, admin.ErrNotRunning):
					return err
				}
			}
			return printSnapshot(cmd.OutOrStdout(), output, cfg, time.Now())
		},
	}
	status.Flags().StringVarP(&output, "output", "o", "table", "table or json")
	cmd.AddCommand(edit(s2s.ListAllow), edit(s2s.ListDeny), list, status)
	return cmd
}

// openFederation loads the configuration and opens the federation store
// in its data directory.
func openFederation(ctx context.Context, g *globals) (*config.Config, *s2s.Store, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, nil, err
	}
	store, err := openStore(ctx, cfg)
	if err != nil {
		return nil, nil, err
	}
	return cfg, store, nil
}

func openStore(ctx context.Context, cfg *config.Config) (*s2s.Store, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	return s2s.OpenStore(ctx, filepath.Join(cfg.DataDir, s2s.StoreFile))
}

// liveFederation returns a client of the running server when it answers
// on the admin socket with federation enabled; nil otherwise (the store
// is then edited directly, and a server started later reads it).
func liveFederation(ctx context.Context, cfg *config.Config) *admin.Client {
	p := cfg.AdminSocketPath()
	if p == "" {
		return nil
	}
	cl := admin.NewClient(p)
	if err := cl.Do(ctx, http.MethodGet, "/v1/federation", nil, nil); err != nil {
		return nil
	}
	return cl
}

// warnMode says when the mode makes the edited list moot.
func warnMode(w io.Writer, cfg *config.Config, list s2s.List) {
	switch {
	case !cfg.S2S.Enabled:
		fmt.Fprintln(w, "note: federation is disabled (s2s.enabled: false); the lists apply once it is enabled")
	case cfg.S2S.Mode == config.FederationOpen:
		fmt.Fprintln(w, "note: s2s.mode is open: the lists are not consulted until the mode is allowlist or denylist")
	case cfg.S2S.Mode == config.FederationAllowlist && list == s2s.ListDeny:
		fmt.Fprintln(w, "note: s2s.mode is allowlist: a denied domain is refused, as is every domain not allowed")
	}
}

type listRow struct {
	Domain string    `json:"domain"`
	List   string    `json:"list"`
	Source string    `json:"source"` // "store" or "config"
	Added  time.Time `json:"added,omitzero"`
	Note   string    `json:"note,omitempty"`
	// Overridden: a configured entry that a stored one replaces.
	Overridden bool `json:"overridden,omitempty"`
}

func printList(w io.Writer, format string, cfg *config.Config, entries []s2s.Entry) error {
	stored := make(map[string]bool, len(entries))
	var rows []listRow
	for _, e := range entries {
		stored[e.Domain] = true
		rows = append(rows, listRow{Domain: e.Domain, List: string(e.List), Source: "store", Added: e.Added, Note: e.Note})
	}
	for _, l := range []struct {
		name    string
		domains []string
	}{{"allow", cfg.S2S.Allow}, {"deny", cfg.S2S.Deny}} {
		for _, d := range l.domains {
			rows = append(rows, listRow{Domain: d, List: l.name, Source: "config", Overridden: stored[d]})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Domain < rows[j].Domain })
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Enabled bool      `json:"enabled"`
			Mode    string    `json:"mode"`
			Entries []listRow `json:"entries"`
		}{cfg.S2S.Enabled, cfg.S2S.Mode, rows})
	case "table":
	default:
		return fmt.Errorf("unknown output format %q (table or json)", format)
	}
	fmt.Fprintf(w, "federation: %s, mode %s\n", enabledWord(cfg.S2S.Enabled), cfg.S2S.Mode)
	if len(rows) == 0 {
		fmt.Fprintln(w, "no allow or deny entries")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DOMAIN\tLIST\tSOURCE\tADDED\tNOTE")
	for _, r := range rows {
		added, src := "-", r.Source
		if !r.Added.IsZero() {
			added = r.Added.Format(time.RFC3339)
		}
		if r.Overridden {
			src += " (overridden)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Domain, r.List, src, added, r.Note)
	}
	return tw.Flush()
}

func enabledWord(on bool) string {
	if on {
		return "enabled"
	}
	return "disabled"
}

// Where printStatus's links come from.
type statusSource int

const (
	statusLive     statusSource = iota // the admin API
	statusDisabled                     // the running server has federation off
	statusSnapshot                     // the snapshot of a running server
	statusStale                        // the snapshot of a server that is gone
	statusNone                         // no server, no snapshot
)

// printSnapshot prints the status from the snapshot file.
func printSnapshot(w io.Writer, format string, cfg *config.Config, now time.Time) error {
	st, err := s2s.ReadStatus(filepath.Join(cfg.DataDir, s2s.StatusFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return printStatus(w, format, cfg, nil, statusNone, now)
	case err != nil:
		return err
	case !processRuns(st.PID):
		return printStatus(w, format, cfg, st, statusStale, now)
	}
	return printStatus(w, format, cfg, st, statusSnapshot, now)
}

func printStatus(w io.Writer, format string, cfg *config.Config, st *s2s.Status, src statusSource, now time.Time) error {
	if format != "table" && format != "json" {
		return fmt.Errorf("unknown output format %q (table or json)", format)
	}
	if format == "json" {
		return json.NewEncoder(w).Encode(struct {
			Enabled bool        `json:"enabled"`
			Mode    string      `json:"mode"`
			Live    bool        `json:"live"`
			Status  *s2s.Status `json:"status"`
			Running bool        `json:"server_running"`
		}{cfg.S2S.Enabled, cfg.S2S.Mode, src == statusLive, st, src == statusLive || src == statusSnapshot || src == statusDisabled})
	}
	if st != nil && (src == statusLive || src == statusSnapshot) {
		// What the server runs with, which the configuration read here
		// may not match.
		fmt.Fprintf(w, "federation: enabled, mode %s, listening on %s\n", st.Mode, strings.Join(st.Listen, ", "))
	} else {
		fmt.Fprintf(w, "federation: %s in the configuration, mode %s, listening on %s (STARTTLS) and %s (direct TLS)\n",
			enabledWord(cfg.S2S.Enabled), cfg.S2S.Mode, strings.Join(cfg.S2S.Listen, ", "), strings.Join(cfg.S2S.ListenTLS, ", "))
	}
	switch src {
	case statusDisabled:
		fmt.Fprintln(w, "the running server has federation disabled: no links")
		return nil
	case statusNone:
		fmt.Fprintln(w, "no server answers on the admin socket and there is no link snapshot in the data directory:")
		fmt.Fprintln(w, "the server is not running with federation enabled here")
		return nil
	case statusStale:
		fmt.Fprintf(w, "the server that wrote the snapshot (pid %d) is no longer running; its last links:\n", st.PID)
	case statusSnapshot:
		fmt.Fprintf(w, "links as of %s (%s ago, server pid %d; from the snapshot, as the admin socket did not answer):\n",
			st.Written.Local().Format(time.RFC3339), now.Sub(st.Written).Round(time.Second), st.PID)
	case statusLive:
		fmt.Fprintf(w, "live links of server pid %d:\n", st.PID)
	}
	if len(st.Links) == 0 {
		fmt.Fprintln(w, "no links")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIR\tLOCAL\tREMOTE\tSTATE\tAUTH\tTLS\tBIDI\tQUEUE\tSINCE\tPEER")
	var failing []s2s.LinkInfo
	for _, l := range st.Links {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%v\t%d\t%s\t%s\n", l.Direction, l.Local, l.Remote, fedDash(l.State), fedDash(l.Method),
			fedDash(l.TLSVersion), l.Bidi, l.Queue, l.Since.Local().Format(time.RFC3339), fedDash(l.Peer))
		if l.LastError != "" {
			failing = append(failing, l)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, l := range failing {
		retry := ""
		if !l.Retry.IsZero() {
			retry = fmt.Sprintf(" (next attempt %s)", l.Retry.Local().Format(time.RFC3339))
		}
		fmt.Fprintf(w, "%s → %s: last attempt failed: %s%s\n", l.Local, l.Remote, l.LastError, retry)
	}
	return nil
}

// fedDash shows an empty status field as "-".
func fedDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// processRuns reports whether a process with pid exists (signal 0).
func processRuns(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
