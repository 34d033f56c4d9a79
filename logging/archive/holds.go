package archive

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"
)

// Hold is a legal hold: rows it covers are never pruned while it is
// active. A hold covers a row when the row's time is within [From, To]
// (a zero bound is open) and, if set, Account and Peer are each one of the
// row's parties (its account or peer column). A hold with neither covers
// every row in its time range: link events and admin actions included.
type Hold struct {
	ID      int64     `json:"id"`
	Case    string    `json:"case"`
	Account string    `json:"account,omitempty"` // bare JID
	Peer    string    `json:"peer,omitempty"`    // bare JID
	From    time.Time `json:"from,omitzero"`
	To      time.Time `json:"to,omitzero"`
	Reason  string    `json:"reason,omitempty"`

	Created    time.Time `json:"created"`
	CreatedBy  string    `json:"created_by"`
	CreatedSeq int64     `json:"created_seq"`
	Released   time.Time `json:"released,omitzero"`
	ReleasedBy string    `json:"released_by,omitempty"`
}

// Active reports whether the hold is in force.
func (h *Hold) Active() bool { return h.Released.IsZero() }

// covers reports whether the hold keeps a row at tsMS whose parties are
// account and peer ("" for none).
func (h *Hold) covers(tsMS int64, account, peer string) bool {
	if !h.From.IsZero() && tsMS < h.From.UnixMilli() {
		return false
	}
	if !h.To.IsZero() && tsMS > h.To.UnixMilli() {
		return false
	}
	party := func(j string) bool { return j != "" && (j == account || j == peer) }
	if h.Account != "" && !party(h.Account) {
		return false
	}
	if h.Peer != "" && !party(h.Peer) {
		return false
	}
	return true
}

// Actor identifies who performs an administrative action.
type Actor struct {
	Name   string // e.g. "os:alice"
	Origin string // "cli", "admin-api", "server"
}

func (ac Actor) check() error {
	if ac.Name == "" || ac.Origin == "" {
		return fmt.Errorf("%w: an admin action needs an actor and an origin", ErrInvalid)
	}
	return nil
}

func msOrNil(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

func detailJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// AddHold places a legal hold and records who did it (an admin_actions row
// "archive.hold.add" in the same transaction). It returns the hold id.
func (a *Archive) AddHold(ctx context.Context, h Hold, by Actor) (int64, error) {
	if err := by.check(); err != nil {
		return 0, err
	}
	if h.Case == "" {
		return 0, fmt.Errorf("%w: a hold needs a case name", ErrInvalid)
	}
	if !h.From.IsZero() && !h.To.IsZero() && h.To.Before(h.From) {
		return 0, fmt.Errorf("%w: hold ends (%s) before it starts (%s)", ErrInvalid, h.To, h.From)
	}
	var id int64
	err := a.do(ctx, func(ctx context.Context, ap *appender) error {
		detail := map[string]any{"case": h.Case}
		for k, v := range map[string]string{"account": h.Account, "peer": h.Peer, "reason": h.Reason} {
			if v != "" {
				detail[k] = v
			}
		}
		if !h.From.IsZero() {
			detail["from"] = h.From.UTC().Format(time.RFC3339)
		}
		if !h.To.IsZero() {
			detail["to"] = h.To.UTC().Format(time.RFC3339)
		}
		rc, err := ap.append(ctx, &AdminAction{Actor: by.Name, Origin: by.Origin, Action: "archive.hold.add", Target: h.Case, Detail: detailJSON(detail)})
		if err != nil {
			return err
		}
		res, err := ap.tx.ExecContext(ctx, `INSERT INTO holds (case_name, account, peer, from_ms, to_ms, reason, created_ms, created_by, created_seq)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			h.Case, null(h.Account), null(h.Peer), msOrNil(h.From), msOrNil(h.To), null(h.Reason), rc.Time.UnixMilli(), by.Name, rc.Seq)
		if err != nil {
			return fmt.Errorf("archive: add hold: %w", err)
		}
		id, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("archive: add hold: %w", err)
	}
	return id, nil
}

// ReleaseHold ends a hold (an "archive.hold.release" admin row records it);
// rows it kept become prunable. Released holds stay listed.
func (a *Archive) ReleaseHold(ctx context.Context, id int64, reason string, by Actor) error {
	if err := by.check(); err != nil {
		return err
	}
	return a.do(ctx, func(ctx context.Context, ap *appender) error {
		var name string
		err := ap.tx.QueryRowContext(ctx, `SELECT case_name FROM holds WHERE id = ? AND released_ms IS NULL`, id).Scan(&name)
		if err == sql.ErrNoRows {
			return fmt.Errorf("%w: %d", ErrNoHold, id)
		}
		if err != nil {
			return fmt.Errorf("archive: release hold: %w", err)
		}
		detail := map[string]any{"hold": id, "case": name}
		if reason != "" {
			detail["reason"] = reason
		}
		rc, err := ap.append(ctx, &AdminAction{Actor: by.Name, Origin: by.Origin, Action: "archive.hold.release", Target: name, Detail: detailJSON(detail)})
		if err != nil {
			return err
		}
		_, err = ap.tx.ExecContext(ctx, `UPDATE holds SET released_ms = ?, released_by = ?, released_seq = ? WHERE id = ?`,
			rc.Time.UnixMilli(), by.Name, rc.Seq, id)
		if err != nil {
			return fmt.Errorf("archive: release hold: %w", err)
		}
		return nil
	})
}

// Holds lists legal holds, oldest first; all includes released ones.
func (a *Archive) Holds(ctx context.Context, all bool) ([]Hold, error) {
	return listHolds(ctx, a.r, all)
}

type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

func listHolds(ctx context.Context, q queryer, all bool) ([]Hold, error) {
	query := `SELECT id, case_name, account, peer, from_ms, to_ms, reason, created_ms, created_by, created_seq, released_ms, released_by FROM holds`
	if !all {
		query += ` WHERE released_ms IS NULL`
	}
	rows, err := q.QueryContext(ctx, query+` ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("archive: holds: %w", err)
	}
	defer rows.Close()
	var out []Hold
	for rows.Next() {
		var h Hold
		var account, peer, reason, releasedBy sql.NullString
		var from, to, released sql.NullInt64
		var created int64
		if err := rows.Scan(&h.ID, &h.Case, &account, &peer, &from, &to, &reason, &created, &h.CreatedBy, &h.CreatedSeq, &released, &releasedBy); err != nil {
			return nil, fmt.Errorf("archive: holds: %w", err)
		}
		h.Account, h.Peer, h.Reason, h.ReleasedBy = account.String, peer.String, reason.String, releasedBy.String
		h.Created = time.UnixMilli(created).UTC()
		if from.Valid {
			h.From = time.UnixMilli(from.Int64).UTC()
		}
		if to.Valid {
			h.To = time.UnixMilli(to.Int64).UTC()
		}
		if released.Valid {
			h.Released = time.UnixMilli(released.Int64).UTC()
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("archive: holds: %w", err)
	}
	return out, nil
}
