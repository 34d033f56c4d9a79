package main

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"gatehouse/logging/archive"
	"gatehouse/logging/report"
	"gatehouse/xmpp/server"
)

func newReportCmd(g *globals) *cobra.Command {
	var (
		period, from, to, format, out string
	)
	c := &cobra.Command{
		Use:   "report",
		Short: "Activity report from the compliance archive: per user, group and network",
		Long: `Summarises the border traffic in the compliance archive for a period: messages
in and out, distinct external contacts, policy hits (denied crossings and other
policy actions such as manager notifications) and files, per user, per group
and per outside network, with a day-by-day series.

Formats: table (default), csv, json, and html: one self-contained page with
charts (no external files; mail it or keep it with the audit records).
Running a report is recorded in the archive's admin log.`,
		Example: `  gatehouse report --period week
  gatehouse report --period month -o csv --out november.csv
  gatehouse report --from 2026-11-01 --to 2026-12-01 -o html --out november.html`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			start, end, err := reportPeriod(period, from, to, time.Now())
			if err != nil {
				return err
			}
			switch format {
			case "table", "csv", "json", "html":
			default:
				return fmt.Errorf("unknown output format %q (use table, csv, json or html)", format)
			}
			a, cfg, err := openArchiveCLI(cmd.Context(), g)
			if err != nil {
				return err
			}
			defer a.Close(cmd.Context())
			ro, err := sql.Open("sqlite3", "file:"+a.Path()+"?mode=ro&_busy_timeout=5000")
			if err != nil {
				return err
			}
			defer ro.Close()
			groups := map[string][]string{}
			db, err := server.OpenDB(cmd.Context(), cfg.DataDir)
			if err != nil {
				return err
			}
			names, err := db.Groups(cmd.Context())
			for _, n := range names {
				if err != nil {
					break
				}
				groups[n], err = db.GroupMembers(cmd.Context(), n)
			}
			_ = db.Close()
			if err != nil {
				return fmt.Errorf("reading groups: %w", err)
			}
			rep, err := report.Build(cmd.Context(), ro, report.Options{From: start, To: end, Groups: groups})
			if err != nil {
				return err
			}
			detail, _ := json.Marshal(map[string]string{"from": start.Format(time.RFC3339), "to": end.Format(time.RFC3339), "format": format})
			by := archiveActor()
			if _, err := a.Append(cmd.Context(), &archive.AdminAction{Actor: by.Name, Origin: by.Origin, Action: "archive.report", Detail: string(detail)}); err != nil {
				return fmt.Errorf("the report could not be recorded in the archive's admin log, so it is not shown: %w", err)
			}
			w := cmd.OutOrStdout()
			if out != "" && out != "-" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			if err := writeReport(w, rep, format); err != nil {
				return err
			}
			if out != "" && out != "-" {
				fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%s, %s to %s)\n", out, format, start.Format(time.DateOnly), end.Format(time.DateOnly))
			}
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&period, "period", "week", "day, week or month: that many days up to now (ignored with --from)")
	f.StringVar(&from, "from", "", "start of the period (YYYY-MM-DD or RFC 3339, UTC)")
	f.StringVar(&to, "to", "", "end of the period, exclusive (default: now)")
	f.StringVarP(&format, "output", "o", "table", "table, csv, json or html")
	f.StringVar(&out, "out", "", "write to this file (mode 0600) instead of standard output")
	return c
}

func writeReport(w io.Writer, r *report.Report, format string) error {
	switch format {
	case "table", "":
		return r.WriteTable(w)
	case "csv":
		return r.WriteCSV(w)
	case "html":
		return r.WriteHTML(w)
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(r)
	}
	return fmt.Errorf("unknown output format %q (use table, csv, json or html)", format)
}

// reportPeriod turns the flags into [start, end).
func reportPeriod(period, from, to string, now time.Time) (time.Time, time.Time, error) {
	parse := func(flag, s string) (time.Time, error) {
		for _, layout := range []string{time.RFC3339, time.DateOnly} {
			if t, err := time.Parse(layout, s); err == nil {
				return t.UTC(), nil
			}
		}
		return time.Time{}, fmt.Errorf("--%s %q: use YYYY-MM-DD or RFC 3339 (2026-11-01T00:00:00Z)", flag, s)
	}
	end := now.UTC()
	if to != "" {
		t, err := parse("to", to)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		end = t
	}
	if from != "" {
		start, err := parse("from", from)
		if err != nil {
			return time.Time{}, time.Time{}, err
		}
		if !end.After(start) {
			return time.Time{}, time.Time{}, fmt.Errorf("--to (%s) must be after --from (%s)", end.Format(time.RFC3339), start.Format(time.RFC3339))
		}
		return start, end, nil
	}
	days := map[string]int{"day": 1, "week": 7, "month": 30}[strings.ToLower(period)]
	if days == 0 {
		return time.Time{}, time.Time{}, fmt.Errorf("--period %q: use day, week or month, or give --from", period)
	}
	return end.Add(-time.Duration(days) * 24 * time.Hour), end, nil
}
