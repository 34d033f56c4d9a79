// Package review is the queue of messages that boundary policy holds for
// review (action hold, docs/policy.md#hold-and-review): a SQLite file of
// its own in the data directory, shared by the running server, which adds
// held messages and carries out decisions, and `gatehouse review`, which
// lists them and records reviewers' decisions. Every change of an item is
// an event row: the audit trail.
//
// It imports nothing of the server: it stores items and events only.
package review

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3"
)

// FileName is the queue's file in the data directory.
const FileName = "review.db"

// Status is where an item is in review.
type Status string

// Statuses. An item is pending until a reviewer (or the timeout) decides;
// the server then carries the decision out and marks the item done.
const (
	Pending  Status = "pending"
	Released Status = "released"
	Rejected Status = "rejected"
)

// Item is one held message.
type Item struct {
	ID            int64
	Held          time.Time
	Account       string // the sender's bare JID
	Peer          string // the recipient's bare JID
	Rule          string // the hold rule
	Rules         string // every rule that acted
	PolicyVersion string
	Body          string // for listing; Stanza is the whole message
	Stanza        string // XML, jabber:client
	Status        Status
	DecidedBy     string
	Decided       time.Time
	Note          string
	Done          time.Time // when the server carried the decision out
	Outcome       string    // what the server did: "delivered", "bounced", or why not
}

// Event is one line of an item's audit trail.
type Event struct {
	Item   int64
	At     time.Time
	Actor  string
	Action string // held, released, rejected, delivered, bounced, failed
	Note   string
}

// Errors.
var (
	ErrNotFound = errors.New("review: no such held message")
	ErrDecided  = errors.New("review: already decided")
)

const schema = `
CREATE TABLE IF NOT EXISTS held (
	id             INTEGER PRIMARY KEY,
	held_ms        INTEGER NOT NULL,
	account        TEXT NOT NULL,
	peer           TEXT NOT NULL,
	rule           TEXT NOT NULL,
	rules          TEXT NOT NULL,
	policy_version TEXT NOT NULL,
	body           TEXT NOT NULL,
	stanza         TEXT NOT NULL,
	status         TEXT NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'released', 'rejected')),
	decided_by     TEXT,
	decided_ms     INTEGER,
	note           TEXT,
	done_ms        INTEGER,
	outcome        TEXT
);
CREATE INDEX IF NOT EXISTS held_todo ON held (status, done_ms);
CREATE TABLE IF NOT EXISTS held_events (
	item   INTEGER NOT NULL REFERENCES held(id),
	at_ms  INTEGER NOT NULL,
	actor  TEXT NOT NULL,
	action TEXT NOT NULL,
	note   TEXT
);
CREATE INDEX IF NOT EXISTS held_events_item ON held_events (item, at_ms);
`

// Store is an open queue. Safe for concurrent use, and for use by several
// processes (SQLite locking, busy timeout 5s).
type Store struct {
	db  *sql.DB
	now func() time.Time
}

// Open opens (creating, mode 0600) the queue at path.
func Open(ctx context.Context, path string) (*Store, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("review: open: %w", err)
	}
	_ = f.Close()
	base := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite3", base+"?mode=rw&_txlock=immediate&_journal_mode=WAL&_busy_timeout=5000&_synchronous=FULL&_foreign_keys=1")
	if err != nil {
		return nil, fmt.Errorf("review: open: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("review: schema: %w", err)
	}
	return &Store{db: db, now: time.Now}, nil
}

// SetClock replaces the clock (tests).
func (s *Store) SetClock(now func() time.Time) { s.now = now }

// Close closes the queue.
func (s *Store) Close() error { return s.db.Close() }

func ms(t time.Time) int64 { return t.UnixMilli() }

func event(ctx context.Context, tx *sql.Tx, item int64, at time.Time, actor, action, note string) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO held_events (item, at_ms, actor, action, note) VALUES (?, ?, ?, ?, ?)`,
		item, ms(at), actor, action, nullStr(note))
	return err
}

func nullStr(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Add queues a held message and returns its id.
func (s *Store) Add(ctx context.Context, it Item) (int64, error) {
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("review: add: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, `INSERT INTO held (held_ms, account, peer, rule, rules, policy_version, body, stanza) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		ms(now), it.Account, it.Peer, it.Rule, it.Rules, it.PolicyVersion, it.Body, it.Stanza)
	if err != nil {
		return 0, fmt.Errorf("review: add: %w", err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, fmt.Errorf("review: add: %w", err)
	}
	if err := event(ctx, tx, id, now, "server", "held", "rule "+it.Rule); err != nil {
		return 0, fmt.Errorf("review: add: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("review: add: %w", err)
	}
	return id, nil
}

const itemCols = `id, held_ms, account, peer, rule, rules, policy_version, body, stanza, status, decided_by, decided_ms, note, done_ms, outcome`

func scanItem(sc interface{ Scan(...any) error }) (Item, error) {
	var it Item
	var held int64
	var status string
	var by, note, outcome sql.NullString
	var decided, done sql.NullInt64
	err := sc.Scan(&it.ID, &held, &it.Account, &it.Peer, &it.Rule, &it.Rules, &it.PolicyVersion, &it.Body, &it.Stanza,
		&status, &by, &decided, &note, &done, &outcome)
	if err != nil {
		return it, err
	}
	it.Held, it.Status, it.DecidedBy, it.Note, it.Outcome = time.UnixMilli(held).UTC(), Status(status), by.String, note.String, outcome.String
	if decided.Valid {
		it.Decided = time.UnixMilli(decided.Int64).UTC()
	}
	if done.Valid {
		it.Done = time.UnixMilli(done.Int64).UTC()
	}
	return it, nil
}

func (s *Store) query(ctx context.Context, where string, args ...any) ([]Item, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+itemCols+` FROM held `+where, args...)
	if err != nil {
		return nil, fmt.Errorf("review: list: %w", err)
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		it, err := scanItem(rows)
		if err != nil {
			return nil, fmt.Errorf("review: list: %w", err)
		}
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("review: list: %w", err)
	}
	return out, nil
}

// List returns the pending items, oldest first; with all, every item.
func (s *Store) List(ctx context.Context, all bool) ([]Item, error) {
	if all {
		return s.query(ctx, `ORDER BY id`)
	}
	return s.query(ctx, `WHERE status = 'pending' ORDER BY id`)
}

// Get returns an item and its audit trail.
func (s *Store) Get(ctx context.Context, id int64) (Item, []Event, error) {
	it, err := scanItem(s.db.QueryRowContext(ctx, `SELECT `+itemCols+` FROM held WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return it, nil, fmt.Errorf("%w: %d", ErrNotFound, id)
	}
	if err != nil {
		return it, nil, fmt.Errorf("review: get %d: %w", id, err)
	}
	rows, err := s.db.QueryContext(ctx, `SELECT item, at_ms, actor, action, note FROM held_events WHERE item = ? ORDER BY rowid`, id)
	if err != nil {
		return it, nil, fmt.Errorf("review: get %d: %w", id, err)
	}
	defer rows.Close()
	var evs []Event
	for rows.Next() {
		var e Event
		var at int64
		var note sql.NullString
		if err := rows.Scan(&e.Item, &at, &e.Actor, &e.Action, &note); err != nil {
			return it, nil, fmt.Errorf("review: get %d: %w", id, err)
		}
		e.At, e.Note = time.UnixMilli(at).UTC(), note.String
		evs = append(evs, e)
	}
	return it, evs, rows.Err()
}

// Decide records a reviewer's decision on a pending item: release (deliver
// it) or reject (bounce it). The server carries it out.
func (s *Store) Decide(ctx context.Context, id int64, release bool, actor, note string) error {
	if actor == "" {
		return errors.New("review: a decision needs a reviewer")
	}
	now := s.now()
	status, action := Rejected, "rejected"
	if release {
		status, action = Released, "released"
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("review: decide: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var cur string
	err = tx.QueryRowContext(ctx, `SELECT status FROM held WHERE id = ?`, id).Scan(&cur)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %d", ErrNotFound, id)
	case err != nil:
		return fmt.Errorf("review: decide: %w", err)
	case Status(cur) != Pending:
		return fmt.Errorf("%w: %d is %s", ErrDecided, id, cur)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE held SET status = ?, decided_by = ?, decided_ms = ?, note = ? WHERE id = ?`,
		string(status), actor, ms(now), nullStr(note), id); err != nil {
		return fmt.Errorf("review: decide: %w", err)
	}
	if err := event(ctx, tx, id, now, actor, action, note); err != nil {
		return fmt.Errorf("review: decide: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("review: decide: %w", err)
	}
	return nil
}

// Expire decides the items pending since before: released when release,
// else rejected, by the actor "timeout". It returns their ids.
func (s *Store) Expire(ctx context.Context, before time.Time, release bool) ([]int64, error) {
	items, err := s.query(ctx, `WHERE status = 'pending' AND held_ms < ? ORDER BY id`, ms(before))
	if err != nil {
		return nil, err
	}
	var ids []int64
	for _, it := range items {
		err := s.Decide(ctx, it.ID, release, "timeout", "no reviewer decided in time")
		if errors.Is(err, ErrDecided) {
			continue // a reviewer was quicker
		}
		if err != nil {
			return ids, err
		}
		ids = append(ids, it.ID)
	}
	return ids, nil
}

// Todo returns the decided items the server has not carried out yet.
func (s *Store) Todo(ctx context.Context) ([]Item, error) {
	return s.query(ctx, `WHERE status != 'pending' AND done_ms IS NULL ORDER BY id`)
}

// Finish records what the server did with a decided item.
func (s *Store) Finish(ctx context.Context, id int64, outcome, note string) error {
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("review: finish: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, `UPDATE held SET done_ms = ?, outcome = ? WHERE id = ? AND done_ms IS NULL AND status != 'pending'`, ms(now), outcome, id)
	if err != nil {
		return fmt.Errorf("review: finish: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %d is not waiting to be carried out", ErrNotFound, id)
	}
	if err := event(ctx, tx, id, now, "server", outcome, note); err != nil {
		return fmt.Errorf("review: finish: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("review: finish: %w", err)
	}
	return nil
}
