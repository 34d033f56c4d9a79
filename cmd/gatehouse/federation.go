package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/s2s"
	"gatehouse/xmpp/config"
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
				cfg, store, err := openFederation(cmd.Context(), g)
				if err != nil {
					return err
				}
				defer store.Close()
				out := cmd.OutOrStdout()
				for _, a := range args {
					d, err := config.NormalizeDomain(a)
					if err != nil {
						return err
					}
					if remove {
						if err := removeEntry(cmd.Context(), store, d, list); err != nil {
							return err
						}
						fmt.Fprintf(out, "removed %s from the stored %s list\n", d, list)
						continue
					}
					if err := store.Set(cmd.Context(), d, list, note); err != nil {
						return err
					}
					fmt.Fprintf(out, "%s: %s\n", d, map[s2s.List]string{s2s.ListAllow: "allowed", s2s.ListDeny: "denied"}[list])
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
		Long: `Show the federation links of the server using this data directory.

Until the admin API exists (issue 8) this reads the snapshot a running server
writes to <data_dir>/federation-status.json whenever its links change (at
most every two seconds); it says how old the snapshot is and whether the
server that wrote it still runs.`,
		Example: "  gatehouse federation status\n  gatehouse federation status -o json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := g.load()
			if err != nil {
				return err
			}
			return printStatus(cmd.OutOrStdout(), output, cfg, time.Now())
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
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("data directory: %w", err)
	}
	store, err := s2s.OpenStore(ctx, filepath.Join(cfg.DataDir, s2s.StoreFile))
	if err != nil {
		return nil, nil, err
	}
	return cfg, store, nil
}

func removeEntry(ctx context.Context, store *s2s.Store, domain string, list s2s.List) error {
	entries, err := store.List(ctx)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Domain == domain && e.List != list {
			return fmt.Errorf("%s is on the stored %s list, not %s", domain, e.List, list)
		}
	}
	ok, err := store.Remove(ctx, domain)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%s is not on the stored %s list", domain, list)
	}
	return nil
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

func printStatus(w io.Writer, format string, cfg *config.Config, now time.Time) error {
	if format != "table" && format != "json" {
		return fmt.Errorf("unknown output format %q (table or json)", format)
	}
	st, err := s2s.ReadStatus(filepath.Join(cfg.DataDir, s2s.StatusFile))
	if errors.Is(err, fs.ErrNotExist) {
		st = nil
	} else if err != nil {
		return err
	}
	running := st != nil && processRuns(st.PID)
	if format == "json" {
		return json.NewEncoder(w).Encode(struct {
			Enabled  bool        `json:"enabled"`
			Mode     string      `json:"mode"`
			Snapshot *s2s.Status `json:"snapshot"`
			Running  bool        `json:"server_running"`
		}{cfg.S2S.Enabled, cfg.S2S.Mode, st, running})
	}
	fmt.Fprintf(w, "federation: %s, mode %s, listening on %s (STARTTLS) and %s (direct TLS)\n",
		enabledWord(cfg.S2S.Enabled), cfg.S2S.Mode, strings.Join(cfg.S2S.Listen, ", "), strings.Join(cfg.S2S.ListenTLS, ", "))
	switch {
	case st == nil:
		fmt.Fprintln(w, "no link snapshot: the server is not running with federation enabled on this data directory")
		fmt.Fprintln(w, "(live status from the server itself needs the admin API, not available yet)")
		return nil
	case !running:
		fmt.Fprintf(w, "the server that wrote the snapshot (pid %d) is no longer running; its last links:\n", st.PID)
	default:
		fmt.Fprintf(w, "links as of %s (%s ago, server pid %d; the snapshot follows changes within seconds,\nlive status needs the admin API):\n",
			st.Written.Local().Format(time.RFC3339), now.Sub(st.Written).Round(time.Second), st.PID)
	}
	if len(st.Links) == 0 {
		fmt.Fprintln(w, "no links")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DIR\tLOCAL\tREMOTE\tAUTH\tTLS\tBIDI\tQUEUE\tSINCE\tPEER")
	for _, l := range st.Links {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%d\t%s\t%s\n", l.Direction, l.Local, l.Remote, l.Method, l.TLSVersion,
			l.Bidi, l.Queue, l.Since.Local().Format(time.RFC3339), l.Peer)
	}
	return tw.Flush()
}

// processRuns reports whether a process with pid exists (signal 0).
func processRuns(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
