package archive

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Filter selects stanza records for Search and the exports. Zero fields
// do not filter.
type Filter struct {
	// Account is the local party's bare JID (stanzas.account).
	Account string `json:"account,omitempty"`
	// Peer is the other party: a bare JID, or a domain for everyone there.
	Peer string `json:"peer,omitempty"`
	// Network is the outside domain (s2s peer or transport).
	Network   string    `json:"network,omitempty"`
	Direction Direction `json:"direction,omitempty"`
	// Kinds are stanza kinds; default only "message".
	Kinds []string `json:"kinds,omitempty"`
	// From and To bound the time: From <= ts < To.
	From time.Time `json:"from,omitzero"`
	To   time.Time `json:"to,omitzero"`
	// Text is an FTS4 MATCH expression over subject and body: words,
	// "a phrase", prefix*, AND / OR / NOT.
	Text string `json:"text,omitempty"`
	// Limit caps the rows; 0 = all.
	Limit int `json:"limit,omitempty"`
}

// StanzaRow is a stanzas row as Search returns it; exported as JSON with
// the column names as keys.
type StanzaRow struct {
	Seq   int64  `json:"seq"`
	TsMS  int64  `json:"ts_ms"`
	TsUTC string `json:"ts_utc"`
	Stanza
}

// Time returns the row's timestamp.
func (r *StanzaRow) Time() time.Time { return time.UnixMilli(r.TsMS).UTC() }

func (f *Filter) where() (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, a ...any) {
		conds = append(conds, cond)
		args = append(args, a...)
	}
	if f.Account != "" {
		add("account = ?", f.Account)
	}
	switch {
	case f.Peer == "":
	case strings.Contains(f.Peer, "@"):
		add("peer = ?", f.Peer)
	default:
		// A bare domain: the server itself or anyone on it.
		add("(peer = ? OR peer LIKE ? ESCAPE '\\')", f.Peer, "%@"+escapeLike(f.Peer))
	}
	if f.Network != "" {
		add("network = ?", f.Network)
	}
	if f.Direction != "" {
		add("direction = ?", string(f.Direction))
	}
	kinds := f.Kinds
	if len(kinds) == 0 {
		kinds = []string{"message"}
	}
	ph := strings.TrimSuffix(strings.Repeat("?, ", len(kinds)), ", ")
	ka := make([]any, len(kinds))
	for i, k := range kinds {
		ka[i] = k
	}
	add("kind IN ("+ph+")", ka...)
	if !f.From.IsZero() {
		add("ts_ms >= ?", f.From.UnixMilli())
	}
	if !f.To.IsZero() {
		add("ts_ms < ?", f.To.UnixMilli())
	}
	if f.Text != "" {
		add("seq IN (SELECT docid FROM stanzas_fts WHERE stanzas_fts MATCH ?)", f.Text)
	}
	return strings.Join(conds, " AND "), args
}

func escapeLike(s string) string {
	return strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(s)
}

var stanzaCols = func() string {
	names := []string{"seq"}
	for _, c := range tableOf(TypeStanza).cols {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}()

// Count returns how many stanza rows match f (ignoring Limit).
func (a *Archive) Count(ctx context.Context, f Filter) (int64, error) {
	if err := a.textReady(ctx, f); err != nil {
		return 0, err
	}
	where, args := f.where()
	var n int64
	if err := a.r.QueryRowContext(ctx, `SELECT count(*) FROM stanzas WHERE `+where, args...).Scan(&n); err != nil {
		return 0, fmt.Errorf("archive: count: %w", err)
	}
	if f.Limit > 0 && n > int64(f.Limit) {
		n = int64(f.Limit)
	}
	return n, nil
}

// Search calls fn for every stanza row matching f, in seq order, and
// returns the number of rows. The search is itself recorded first (an
// "archive.search" admin action naming by and the filter): no record, no
// search.
func (a *Archive) Search(ctx context.Context, f Filter, by Actor, fn func(*StanzaRow) error) (int64, error) {
	if err := a.audit(ctx, by, "archive.search", "", map[string]any{"filter": f}); err != nil {
		return 0, err
	}
	return a.scan(ctx, f, "seq", fn)
}

// audit records an admin action and fails when it cannot.
func (a *Archive) audit(ctx context.Context, by Actor, action, target string, detail any) error {
	if err := by.check(); err != nil {
		return err
	}
	if _, err := a.Append(ctx, &AdminAction{Actor: by.Name, Origin: by.Origin, Action: action, Target: target, Detail: detailJSON(detail)}); err != nil {
		return fmt.Errorf("archive: recording %s: %w", action, err)
	}
	return nil
}

// textReady brings the full-text index up to date before a text search:
// the writer indexes in batches after committing, so the newest rows may
// not be in it yet.
func (a *Archive) textReady(ctx context.Context, f Filter) error {
	if f.Text == "" {
		return nil
	}
	return a.IndexNow(ctx)
}

func (a *Archive) scan(ctx context.Context, f Filter, order string, fn func(*StanzaRow) error) (int64, error) {
	if err := a.textReady(ctx, f); err != nil {
		return 0, err
	}
	where, args := f.where()
	q := `SELECT ` + stanzaCols + ` FROM stanzas WHERE ` + where + ` ORDER BY ` + order
	if f.Limit > 0 {
		q += fmt.Sprintf(" LIMIT %d", f.Limit)
	}
	rows, err := a.r.QueryContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("archive: search: %w", err)
	}
	defer rows.Close()
	var n int64
	for rows.Next() {
		r, err := scanStanza(rows)
		if err != nil {
			return n, err
		}
		n++
		if err := fn(r); err != nil {
			return n, err
		}
	}
	if err := rows.Err(); err != nil {
		return n, fmt.Errorf("archive: search: %w", err)
	}
	return n, nil
}

func scanStanza(rows *sql.Rows) (*StanzaRow, error) {
	var r StanzaRow
	var dir, zone, verdict string
	var legacy, sid, oid, thread, subject, body, rule, pv, cond, text, delivered sql.NullString
	var conn, rseq sql.NullInt64
	s := &r.Stanza
	err := rows.Scan(&r.Seq, &r.TsMS, &r.TsUTC, &dir, &zone, &s.Network, &s.Account, &s.LocalJID,
		&s.Peer, &s.PeerJID, &legacy, &s.Kind, &s.Type, &sid, &oid, &thread, &subject, &body,
		&verdict, &rule, &pv, &cond, &text, &conn, &rseq, &s.Raw, &delivered)
	if err != nil {
		return nil, fmt.Errorf("archive: search: %w", err)
	}
	s.Direction, s.Zone, s.Verdict = Direction(dir), Zone(zone), Verdict(verdict)
	s.LegacyID, s.StanzaID, s.OriginID, s.Thread = legacy.String, sid.String, oid.String, thread.String
	s.Subject, s.Body, s.Rule, s.PolicyVersion = subject.String, body.String, rule.String, pv.String
	s.DenyCondition, s.DenyText, s.RawDelivered = cond.String, text.String, delivered.String
	s.ConnID, s.RouteSeq = uint64(conn.Int64), uint64(rseq.Int64)
	return &r, nil
}
