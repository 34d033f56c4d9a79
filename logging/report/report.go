// Package report builds activity reports from the compliance archive: who
// used IM across the border, with whom, how much, and what the policy did
// about it, per user, group and network. It reads the archive with plain
// SQL (the documented schema, docs/archive.md) and never writes to it.
package report

import (
	"context"
	"database/sql"
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Row is the activity of one user, group or network.
type Row struct {
	Name string `json:"name"`
	// MessagesIn and MessagesOut count message stanzas that crossed the
	// border (internal traffic, when archived, counts as neither).
	MessagesIn  int64 `json:"messages_in"`
	MessagesOut int64 `json:"messages_out"`
	// ExternalContacts is the number of distinct outside addresses.
	ExternalContacts int64 `json:"external_contacts"`
	// PolicyHits counts crossings the policy denied plus the other policy
	// actions (notifications, holds) recorded for the row.
	PolicyHits int64 `json:"policy_hits"`
	Files      int64 `json:"files"`
	FileBytes  int64 `json:"file_bytes"`
}

// Messages is the total of both directions.
func (r Row) Messages() int64 { return r.MessagesIn + r.MessagesOut }

// Day is the border traffic of one UTC day.
type Day struct {
	Date string `json:"date"` // YYYY-MM-DD
	In   int64  `json:"in"`
	Out  int64  `json:"out"`
}

// Report is one period's activity.
type Report struct {
	From      time.Time `json:"from"`
	To        time.Time `json:"to"`
	Generated time.Time `json:"generated"`
	Totals    Row       `json:"totals"`
	Users     []Row     `json:"users"`
	Groups    []Row     `json:"groups"`
	Networks  []Row     `json:"networks"`
	Days      []Day     `json:"days"`
}

// Options selects the period [From, To) and names the groups: group name
// to member localparts (accounts are matched by localpart on any host).
type Options struct {
	From, To time.Time
	Groups   map[string][]string
	Now      func() time.Time
}

// Build reads the archive through db (opened read-only by the caller).
func Build(ctx context.Context, db *sql.DB, o Options) (*Report, error) {
	if !o.To.After(o.From) {
		return nil, fmt.Errorf("report: the period ends (%s) before it starts (%s)", o.To.Format(time.RFC3339), o.From.Format(time.RFC3339))
	}
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	r := &Report{From: o.From.UTC(), To: o.To.UTC(), Generated: now().UTC()}
	from, to := o.From.UnixMilli(), o.To.UnixMilli()

	users, err := rows(ctx, db, "account", from, to)
	if err != nil {
		return nil, err
	}
	networks, err := rows(ctx, db, "network", from, to)
	if err != nil {
		return nil, err
	}
	r.Users, r.Networks = sorted(users), sorted(networks)

	// Groups: the union of their members' accounts.
	member := map[string][]string{} // localpart -> groups
	for g, ms := range o.Groups {
		for _, m := range ms {
			member[m] = append(member[m], g)
		}
	}
	groupAccounts := map[string][]string{}
	for acct := range users {
		local, _, _ := strings.Cut(acct, "@")
		for _, g := range member[local] {
			groupAccounts[g] = append(groupAccounts[g], acct)
		}
	}
	for g := range o.Groups {
		row := Row{Name: g}
		for _, acct := range groupAccounts[g] {
			u := users[acct]
			row.MessagesIn += u.MessagesIn
			row.MessagesOut += u.MessagesOut
			row.PolicyHits += u.PolicyHits
			row.Files += u.Files
			row.FileBytes += u.FileBytes
		}
		if n, err := distinctPeers(ctx, db, groupAccounts[g], from, to); err != nil {
			return nil, err
		} else {
			row.ExternalContacts = n
		}
		r.Groups = append(r.Groups, row)
	}
	r.Groups = sorted(toMap(r.Groups))

	all, err := rows(ctx, db, "'all'", from, to)
	if err != nil {
		return nil, err
	}
	if t, ok := all["all"]; ok {
		r.Totals = *t
	}
	r.Totals.Name = "total"
	if r.Days, err = days(ctx, db, from, to); err != nil {
		return nil, err
	}
	return r, nil
}

// rows aggregates by the SQL expression key ("account", "network").
func rows(ctx context.Context, db *sql.DB, key string, from, to int64) (map[string]*Row, error) {
	out := map[string]*Row{}
	get := func(k string) *Row {
		if out[k] == nil {
			out[k] = &Row{Name: k}
		}
		return out[k]
	}
	q := `SELECT ` + key + `,
	        coalesce(sum(kind = 'message' AND direction = 'in'), 0),
	        coalesce(sum(kind = 'message' AND direction = 'out'), 0),
	        count(DISTINCT CASE WHEN zone <> 'local' THEN peer END),
	        coalesce(sum(verdict = 'deny'), 0)
	      FROM stanzas WHERE ts_ms >= ? AND ts_ms < ? AND direction <> 'internal'
	      GROUP BY 1`
	err := scan(ctx, db, q, []any{from, to}, func(rs *sql.Rows) error {
		var (
			k  string
			rw Row
		)
		if err := rs.Scan(&k, &rw.MessagesIn, &rw.MessagesOut, &rw.ExternalContacts, &rw.PolicyHits); err != nil {
			return err
		}
		rw.Name = k
		*get(k) = rw
		return nil
	})
	if err != nil {
		return nil, err
	}
	pk := key
	if key == "network" {
		pk = "coalesce(network, '')"
	} else if key == "account" {
		pk = "coalesce(account, '')"
	}
	q = `SELECT ` + pk + `, count(*) FROM policy_actions
	      WHERE ts_ms >= ? AND ts_ms < ? AND account IS NOT NULL AND account <> '' GROUP BY 1`
	err = scan(ctx, db, q, []any{from, to}, func(rs *sql.Rows) error {
		var (
			k string
			n int64
		)
		if err := rs.Scan(&k, &n); err != nil {
			return err
		}
		if k != "" {
			get(k).PolicyHits += n
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	q = `SELECT ` + key + `, count(*), coalesce(sum(size_bytes), 0) FROM file_transfers
	      WHERE ts_ms >= ? AND ts_ms < ? AND direction <> 'internal' GROUP BY 1`
	err = scan(ctx, db, q, []any{from, to}, func(rs *sql.Rows) error {
		var (
			k    string
			n, b int64
		)
		if err := rs.Scan(&k, &n, &b); err != nil {
			return err
		}
		r := get(k)
		r.Files, r.FileBytes = n, b
		return nil
	})
	return out, err
}

func distinctPeers(ctx context.Context, db *sql.DB, accounts []string, from, to int64) (int64, error) {
	if len(accounts) == 0 {
		return 0, nil
	}
	args := []any{from, to}
	marks := make([]string, len(accounts))
	for i, a := range accounts {
		marks[i] = "?"
		args = append(args, a)
	}
	var n int64
	err := db.QueryRowContext(ctx, `SELECT count(DISTINCT peer) FROM stanzas
		WHERE ts_ms >= ? AND ts_ms < ? AND zone <> 'local' AND account IN (`+strings.Join(marks, ",")+`)`, args...).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("report: %w", err)
	}
	return n, nil
}

func days(ctx context.Context, db *sql.DB, from, to int64) ([]Day, error) {
	byDate := map[string]Day{}
	err := scan(ctx, db, `SELECT date(ts_ms / 1000, 'unixepoch'),
	        coalesce(sum(direction = 'in'), 0), coalesce(sum(direction = 'out'), 0)
	      FROM stanzas WHERE ts_ms >= ? AND ts_ms < ? AND kind = 'message' AND direction <> 'internal'
	      GROUP BY 1`, []any{from, to}, func(rs *sql.Rows) error {
		var d Day
		if err := rs.Scan(&d.Date, &d.In, &d.Out); err != nil {
			return err
		}
		byDate[d.Date] = d
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Every day of the period, quiet ones included, so charts show gaps.
	var out []Day
	for t := time.UnixMilli(from).UTC().Truncate(24 * time.Hour); t.UnixMilli() < to; t = t.Add(24 * time.Hour) {
		k := t.Format(time.DateOnly)
		d := byDate[k]
		d.Date = k
		out = append(out, d)
	}
	return out, nil
}

func scan(ctx context.Context, db *sql.DB, q string, args []any, fn func(*sql.Rows) error) error {
	rs, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("report: %w", err)
	}
	defer rs.Close()
	for rs.Next() {
		if err := fn(rs); err != nil {
			return fmt.Errorf("report: %w", err)
		}
	}
	if err := rs.Err(); err != nil {
		return fmt.Errorf("report: %w", err)
	}
	return nil
}

func toMap(rs []Row) map[string]*Row {
	m := make(map[string]*Row, len(rs))
	for i := range rs {
		m[rs[i].Name] = &rs[i]
	}
	return m
}

// sorted orders rows by traffic, busiest first, then by name.
func sorted(m map[string]*Row) []Row {
	out := make([]Row, 0, len(m))
	for _, r := range m {
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool {
		if a, b := out[i].Messages(), out[j].Messages(); a != b {
			return a > b
		}
		return out[i].Name < out[j].Name
	})
	return out
}

// Section is one of the report's tables.
type Section struct {
	Title string
	Rows  []Row
}

// Sections are the report's tables in order: users, groups, networks.
func (r *Report) Sections() []Section {
	return []Section{{"user", r.Users}, {"group", r.Groups}, {"network", r.Networks}}
}

// WriteTable writes the report as aligned text tables.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "Activity %s to %s (UTC)\n", r.From.Format("2006-01-02 15:04"), r.To.Format("2006-01-02 15:04"))
	for _, s := range r.Sections() {
		fmt.Fprintln(w)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintf(tw, "%s\tmsgs in\tmsgs out\texternal contacts\tpolicy hits\tfiles\tfile bytes\t\n", strings.ToUpper(s.Title))
		for _, row := range s.Rows {
			writeRow(tw, row)
		}
		if len(s.Rows) == 0 {
			fmt.Fprintf(tw, "(none)\t\t\t\t\t\t\t\n")
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	writeRow(tw, r.Totals)
	return tw.Flush()
}

func writeRow(w io.Writer, r Row) {
	fmt.Fprintf(w, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t\n", r.Name, r.MessagesIn, r.MessagesOut, r.ExternalContacts, r.PolicyHits, r.Files, r.FileBytes)
}

// WriteCSV writes one line per row with its section in the first column.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"section", "name", "messages_in", "messages_out", "external_contacts", "policy_hits", "files", "file_bytes", "from", "to"})
	rec := func(section string, row Row) {
		_ = cw.Write([]string{section, row.Name, i(row.MessagesIn), i(row.MessagesOut), i(row.ExternalContacts),
			i(row.PolicyHits), i(row.Files), i(row.FileBytes), r.From.Format(time.RFC3339), r.To.Format(time.RFC3339)})
	}
	for _, s := range r.Sections() {
		for _, row := range s.Rows {
			rec(s.Title, row)
		}
	}
	rec("total", r.Totals)
	for _, d := range r.Days {
		_ = cw.Write([]string{"day", d.Date, i(d.In), i(d.Out), "", "", "", "", r.From.Format(time.RFC3339), r.To.Format(time.RFC3339)})
	}
	cw.Flush()
	return cw.Error()
}

func i(n int64) string { return strconv.FormatInt(n, 10) }
