package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/sirupsen/logrus"
	"github.com/spf13/cobra"

	"gatehouse/logging/archive"
	"gatehouse/xmpp/config"
	"gatehouse/xmpp/server"
)

func newArchiveCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "archive",
		Short: "Search, export, verify and prune the compliance archive; manage legal holds",
		Long: `The compliance archive (archive.file in the data directory, docs/archive.md)
records every crossing of the company border. These commands work on the
archive file directly and may run while the server does. Every search,
export, hold and prune is itself recorded in the archive (admin_actions) with
the operating system user who ran it.

Reviewers can also read the archive with plain SQL:
  sqlite3 -readonly data/archive.db`,
	}
	cmd.AddCommand(newArchiveVerifyCmd(g), newArchiveSearchCmd(g), newArchiveExportCmd(g),
		newArchivePruneCmd(g), newArchiveHoldCmd(g))
	return cmd
}

// archiveActor is who runs the CLI, as recorded in admin_actions.
func archiveActor() archive.Actor {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	return archive.Actor{Name: "os:" + name, Origin: "cli"}
}

// openArchiveCLI opens the configured archive, which must exist: a typo
// in --data must not create an empty archive that then "verifies".
func openArchiveCLI(ctx context.Context, g *globals) (*archive.Archive, *config.Config, error) {
	cfg, err := g.load()
	if err != nil {
		return nil, nil, err
	}
	path := cfg.Archive.Path(cfg.DataDir, cfg.Archive.File)
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, nil, fmt.Errorf("no compliance archive at %s (check --data and archive.file)", path)
	}
	log := logrus.New()
	log.SetOutput(io.Discard)
	a, err := server.OpenArchive(ctx, cfg, log)
	if err != nil {
		return nil, nil, err
	}
	return a, cfg, nil
}

func closeArchiveCLI(a *archive.Archive, err *error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if cerr := a.Close(ctx); cerr != nil && *err == nil {
		*err = cerr
	}
}

func newArchiveVerifyCmd(g *globals) *cobra.Command {
	var anchor string
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Walk the hash chain and report the first altered, inserted or missing row",
		Long: `Verify recomputes every row's hash from its columns and the previous row's
hash, follows the checkpoints that prune left, and checks the anchor file
(archive.anchor_file, or --anchor): an anchored row that is gone means the
tail was truncated. Exit status 0: the chain verifies; 3: it does not (the
problems are listed, first one first); 1: verification could not run.`,
		Example: `  gatehouse archive verify
  gatehouse archive verify --anchor /mnt/offsite/archive.anchor --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			a, _, err := openArchiveCLI(ctx, g)
			if err != nil {
				return err
			}
			defer closeArchiveCLI(a, &err)
			bar := newProgress(cmd.ErrOrStderr(), "verify")
			rep, err := a.Verify(ctx, archive.VerifyOptions{AnchorPath: anchor, Progress: bar.update})
			bar.done()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printReport(out, rep)
			}
			if !rep.OK() {
				return &exitError{code: 3, err: fmt.Errorf("the archive does not verify: %s", rep.Problems[0])}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&anchor, "anchor", "", "anchor file to check against (default: archive.anchor_file)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	return cmd
}

func printReport(w io.Writer, rep *archive.Report) {
	fmt.Fprintf(w, "rows checked: %d (seq %d-%d)\n", rep.Rows, rep.FirstSeq, rep.LastSeq)
	if rep.PrunedRanges > 0 {
		fmt.Fprintf(w, "pruned: %d rows in %d ranges, attested by checkpoints\n", rep.PrunedRows, rep.PrunedRanges)
	}
	switch {
	case rep.NoAnchorFile:
		fmt.Fprintln(w, "anchors: none (no anchor file): a truncated tail cannot be detected")
	default:
		fmt.Fprintf(w, "anchors: %d read, %d checked\n", rep.Anchors, rep.AnchorsHit)
	}
	if rep.TornAnchor {
		fmt.Fprintln(w, "anchors: the last anchor line is incomplete (a crash while writing it); skipped")
	}
	fmt.Fprintf(w, "head: %s\n", rep.Head)
	if rep.OK() {
		fmt.Fprintln(w, "OK: the chain verifies")
		return
	}
	fmt.Fprintf(w, "FAILED: %d problem(s)\n", len(rep.Problems)+rep.Omitted)
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
	if rep.Omitted > 0 {
		fmt.Fprintf(w, "  ... and %d more\n", rep.Omitted)
	}
}

// filterFlags are the selection flags shared by search and export.
type filterFlags struct {
	account, peer, network, direction, from, to, text string
	kinds                                             []string
	limit                                             int
}

func (f *filterFlags) add(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.account, "account", "", "local account (bare JID, e.g. alice@example.com)")
	fl.StringVar(&f.peer, "peer", "", "outside party: a bare JID, or a domain for everyone there")
	fl.StringVar(&f.network, "network", "", "outside network: federated domain or transport domain")
	fl.StringVar(&f.direction, "direction", "", "in, out or internal")
	fl.StringVar(&f.from, "from", "", "start of the period (inclusive): 2006-01-02 or RFC 3339, UTC")
	fl.StringVar(&f.to, "to", "", "end of the period (exclusive): 2006-01-02 or RFC 3339, UTC")
	fl.StringVar(&f.text, "text", "", `full-text query over subjects and bodies: words, "a phrase", prefix*, AND/OR/NOT`)
	fl.StringSliceVar(&f.kinds, "kind", nil, "stanza kinds: message (default), presence, iq")
	fl.IntVar(&f.limit, "limit", 0, "at most this many rows (0: all)")
}

func (f *filterFlags) filter() (archive.Filter, error) {
	out := archive.Filter{Account: f.account, Peer: f.peer, Network: f.network, Text: f.text, Kinds: f.kinds, Limit: f.limit}
	switch archive.Direction(f.direction) {
	case "", archive.In, archive.Out, archive.Internal:
		out.Direction = archive.Direction(f.direction)
	default:
		return out, fmt.Errorf("--direction %q: want in, out or internal", f.direction)
	}
	for _, k := range f.kinds {
		if k != "message" && k != "presence" && k != "iq" {
			return out, fmt.Errorf("--kind %q: want message, presence or iq", k)
		}
	}
	var err error
	if out.From, err = parseDate(f.from); err != nil {
		return out, fmt.Errorf("--from: %w", err)
	}
	if out.To, err = parseDate(f.to); err != nil {
		return out, fmt.Errorf("--to: %w", err)
	}
	if f.limit < 0 {
		return out, errors.New("--limit must not be negative")
	}
	return out, nil
}

// parseDate accepts a UTC date (2006-01-02, midnight) or RFC 3339.
func parseDate(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither a date (2006-01-02) nor an RFC 3339 time (2006-01-02T15:04:05Z)", s)
	}
	return t.UTC(), nil
}

func newArchiveSearchCmd(g *globals) *cobra.Command {
	var ff filterFlags
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "search",
		Short: "List archived messages by account, peer, network, period and text",
		Long: `Search prints the matching stanza records oldest first: one line each, or
JSON Lines with --json (the keys are the stanzas table's column names). The
search itself is recorded (admin_actions, action archive.search).`,
		Example: `  gatehouse archive search --account alice@example.com --network partner.example --from 2025-01-01 --to 2025-04-01
  gatehouse archive search --text '"term sheet" OR merger' --direction out
  gatehouse archive search --peer rival.example --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			f, err := ff.filter()
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			a, _, err := openArchiveCLI(ctx, g)
			if err != nil {
				return err
			}
			defer closeArchiveCLI(a, &err)
			out := cmd.OutOrStdout()
			var fn func(*archive.StanzaRow) error
			var tw *tabwriter.Writer
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				fn = func(r *archive.StanzaRow) error { return enc.Encode(r) }
			} else {
				tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SEQ\tTIME (UTC)\tDIR\tACCOUNT\tPEER\tNETWORK\tVERDICT\tRULE\tBODY")
				fn = func(r *archive.StanzaRow) error {
					_, err := fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Seq, r.TsUTC, r.Direction, r.Account,
						r.Peer, r.Network, r.Verdict, dash(r.Rule), oneLine(r.Body, 60))
					return err
				}
			}
			n, err := a.Search(ctx, f, archiveActor(), fn)
			if tw != nil {
				if ferr := tw.Flush(); err == nil {
					err = ferr
				}
				if err == nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "%d row(s)\n", n)
				}
			}
			return err
		},
	}
	ff.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON Lines")
	return cmd
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine shortens s to n runes on one line for the table.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func newArchiveExportCmd(g *globals) *cobra.Command {
	var ff filterFlags
	var format, outPath string
	var quiet bool
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export archived messages as JSON Lines, or per conversation as mbox or .eml",
		Long: `Export writes the matching stanza records for e-discovery tools:
  --format jsonl  one JSON object per record (keys: the stanzas columns), to --out or stdout
  --format mbox   one mbox file per conversation (account and peer) in the --out directory
  --format eml    one RFC 5322 .eml file per message, a directory per conversation
Mail exports carry X-Gatehouse-* headers (seq, direction, network, verdict,
rule, policy version). A progress bar is drawn on standard error (--quiet
turns it off). The export is recorded (admin_actions, archive.export).`,
		Example: `  gatehouse archive export --format jsonl --account alice@example.com --out alice.jsonl
  gatehouse archive export --format mbox --network partner.example --from 2025-01-01 --out case-17/`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			f, err := ff.filter()
			if err != nil {
				return err
			}
			if format != "jsonl" && format != "mbox" && format != "eml" {
				return fmt.Errorf("--format %q: want jsonl, mbox or eml", format)
			}
			if format != "jsonl" && outPath == "" {
				return fmt.Errorf("--format %s needs --out DIRECTORY", format)
			}
			ctx := cmd.Context()
			a, _, err := openArchiveCLI(ctx, g)
			if err != nil {
				return err
			}
			defer closeArchiveCLI(a, &err)
			bar := newProgress(cmd.ErrOrStderr(), "export")
			if quiet {
				bar = nil
			}
			var n int64
			switch format {
			case "jsonl":
				w, dest := cmd.OutOrStdout(), "stdout"
				if outPath != "" {
					file, err := os.OpenFile(outPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
					if err != nil {
						return err
					}
					defer func() {
						if cerr := file.Close(); err == nil {
							err = cerr
						}
					}()
					w, dest = file, outPath
				}
				n, err = a.ExportJSONL(ctx, f, archiveActor(), dest, w, bar.update)
			default:
				n, err = a.ExportMail(ctx, f, archiveActor(), archive.MailFormat(format), outPath, bar.update)
			}
			bar.done()
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "exported %d record(s)\n", n)
			return nil
		},
	}
	ff.add(cmd)
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl, mbox or eml")
	cmd.Flags().StringVarP(&outPath, "out", "o", "", "output file (jsonl; default stdout) or directory (mbox, eml)")
	cmd.Flags().BoolVarP(&quiet, "quiet", "q", false, "no progress bar")
	return cmd
}

func newArchivePruneCmd(g *globals) *cobra.Command {
	var before, reason string
	var dryRun bool
	cmd := &cobra.Command{
		Use:   "prune --before DATE",
		Short: "Remove rows older than DATE that no legal hold covers",
		Long: `Prune removes rows older than --before (UTC) except rows under an active legal
hold and earlier checkpoints. For every run of removed rows it keeps a pruned
range (the hashes around it) attested by a checkpoint row, so the remaining
chain still verifies. It refuses to run when the part of the chain it would
remove does not verify. The prune is recorded (admin_actions, archive.prune).`,
		Example: `  gatehouse archive prune --before 2019-01-01 --dry-run
  gatehouse archive prune --before 2019-01-01 --reason "7-year retention"`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			t, err := parseDate(before)
			if err != nil {
				return fmt.Errorf("--before: %w", err)
			}
			if t.IsZero() {
				return errors.New("--before DATE is required")
			}
			ctx := cmd.Context()
			a, _, err := openArchiveCLI(ctx, g)
			if err != nil {
				return err
			}
			defer closeArchiveCLI(a, &err)
			res, err := a.Prune(ctx, archive.PruneOptions{Before: t, By: archiveActor(), Reason: reason, DryRun: dryRun})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if dryRun {
				fmt.Fprintf(out, "dry run: %d row(s) would be removed, %d kept under legal hold\n", res.Removed, res.Held)
				return nil
			}
			fmt.Fprintf(out, "removed %d row(s) in %d range(s); %d kept under legal hold; checkpoints %v\n",
				res.Removed, res.Ranges, res.Held, res.Checkpoints)
			return nil
		},
	}
	cmd.Flags().StringVar(&before, "before", "", "remove rows older than this (2006-01-02 or RFC 3339, UTC)")
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded)")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "count only; remove and record nothing")
	return cmd
}

func newArchiveHoldCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hold",
		Short: "Place, list and release legal holds (rows under hold are never pruned)",
	}
	cmd.AddCommand(newHoldAddCmd(g), newHoldListCmd(g), newHoldReleaseCmd(g))
	return cmd
}

func newHoldAddCmd(g *globals) *cobra.Command {
	var h archive.Hold
	var from, to string
	cmd := &cobra.Command{
		Use:   "add --case NAME [--account JID] [--peer JID] [--from DATE] [--to DATE]",
		Short: "Place a legal hold by account, peer, or case with a time range",
		Long: `A hold keeps every row in its time range (--from/--to; open if left out) whose
parties include --account and --peer when given; with neither, every row in
the range. It is recorded (admin_actions, archive.hold.add).`,
		Example: `  gatehouse archive hold add --case "Acme v. Corp" --account alice@example.com --from 2024-01-01
  gatehouse archive hold add --case audit-2025 --from 2025-01-01 --to 2025-12-31T23:59:59Z`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			if h.From, err = parseDate(from); err != nil {
				return fmt.Errorf("--from: %w", err)
			}
			if h.To, err = parseDate(to); err != nil {
				return fmt.Errorf("--to: %w", err)
			}
			if h.Case == "" {
				return errors.New("--case NAME is required")
			}
			ctx := cmd.Context()
			a, _, err := openArchiveCLI(ctx, g)
			if err != nil {
				return err
			}
			defer closeArchiveCLI(a, &err)
			id, err := a.AddHold(ctx, h, archiveActor())
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "hold %d placed (case %q)\n", id, h.Case)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&h.Case, "case", "", "case name")
	fl.StringVar(&h.Account, "account", "", "local account (bare JID)")
	fl.StringVar(&h.Peer, "peer", "", "outside party (bare JID)")
	fl.StringVar(&from, "from", "", "start (2006-01-02 or RFC 3339, UTC)")
	fl.StringVar(&to, "to", "", "end, inclusive (2006-01-02 or RFC 3339, UTC)")
	fl.StringVar(&h.Reason, "reason", "", "why (recorded)")
	return cmd
}

func newHoldListCmd(g *globals) *cobra.Command {
	var all, asJSON bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List active legal holds (--all: released ones too)",
		Example: `  gatehouse archive hold list
  gatehouse archive hold list --all --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) (err error) {
			ctx := cmd.Context()
			a, _, err := openArchiveCLI(ctx, g)
			if err != nil {
				return err
			}
			defer closeArchiveCLI(a, &err)
			holds, err := a.Holds(ctx, all)
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				for _, h := range holds {
					if err := enc.Encode(h); err != nil {
						return err
					}
				}
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tCASE\tACCOUNT\tPEER\tFROM\tTO\tCREATED BY\tSTATE")
			for _, h := range holds {
				state := "active"
				if !h.Active() {
					state = "released " + h.Released.Format(time.DateOnly) + " by " + h.ReleasedBy
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", h.ID, h.Case, dash(h.Account), dash(h.Peer),
					timeOrDash(h.From), timeOrDash(h.To), h.CreatedBy, state)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&all, "all", false, "include released holds")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON Lines")
	return cmd
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

func newHoldReleaseCmd(g *globals) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     "release ID",
		Short:   "Release a legal hold; the rows it kept become prunable",
		Example: `  gatehouse archive hold release 3 --reason "case settled 2025-06-30"`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) (err error) {
			id, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("hold id %q: want the number hold list shows", args[0])
			}
			ctx := cmd.Context()
			a, _, err := openArchiveCLI(ctx, g)
			if err != nil {
				return err
			}
			defer closeArchiveCLI(a, &err)
			if err := a.ReleaseHold(ctx, id, reason, archiveActor()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "hold %d released\n", id)
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded)")
	return cmd
}

// progress draws a one-line progress bar on a terminal-like writer; a nil
// *progress draws nothing.
type progress struct {
	w     io.Writer
	label string
	last  time.Time
	drawn bool
}

func newProgress(w io.Writer, label string) *progress { return &progress{w: w, label: label} }

// update redraws at most ten times a second, and only for runs long
// enough to need it (over 1,000 rows).
func (p *progress) update(done, total int64) {
	if p == nil || total < 1000 {
		return
	}
	now := time.Now()
	if done < total && now.Sub(p.last) < 100*time.Millisecond {
		return
	}
	p.last = now
	const width = 30
	fill := int(done * width / max(total, 1))
	fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% %d/%d", p.label, strings.Repeat("#", fill), strings.Repeat(" ", width-fill),
		done*100/max(total, 1), done, total)
	p.drawn = true
}

func (p *progress) done() {
	if p != nil && p.drawn {
		fmt.Fprintln(p.w)
	}
}
