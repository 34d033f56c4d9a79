package push

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"strings"
	"time"

	_ "github.com/mattn/go-sqlite3" // SQLite driver
)

// Registration is one app server a client enabled (XEP-0357 §5).
type Registration struct {
	Service string // the app server's JID
	Node    string // its node for this device
	Options []byte // the publish-options data form, as XML ("" if none)
}

// Store keeps registrations in an SQLite file of their own.
type Store struct{ db *sql.DB }

const schema = `
CREATE TABLE IF NOT EXISTS push_registration (
	user    TEXT NOT NULL,
	service TEXT NOT NULL,
	node    TEXT NOT NULL,
	options BLOB NOT NULL,
	created INTEGER NOT NULL,
	PRIMARY KEY (user, service, node)
);`

// OpenStore opens (creating, mode 0600) the database at path.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("push: open: %w", err)
	}
	_ = f.Close()
	base := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	db, err := sql.Open("sqlite3", base+"?mode=rw&_txlock=immediate&_journal_mode=WAL&_busy_timeout=5000&_synchronous=NORMAL")
	if err != nil {
		return nil, fmt.Errorf("push: open: %w", err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("push: schema: %w", err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Put adds or replaces a registration, keeping at most max per user (the
// oldest go).
func (s *Store) Put(ctx context.Context, user string, r Registration, max int) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("push: put: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `INSERT OR REPLACE INTO push_registration (user, service, node, options, created) VALUES (?, ?, ?, ?, ?)`,
		user, r.Service, r.Node, r.Options, time.Now().UnixNano()); err != nil {
		return fmt.Errorf("push: put: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM push_registration WHERE user = ? AND rowid NOT IN
		(SELECT rowid FROM push_registration WHERE user = ? ORDER BY created DESC LIMIT ?)`, user, user, max); err != nil {
		return fmt.Errorf("push: put: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("push: put: %w", err)
	}
	return nil
}

// Delete removes the user's registrations with service (and node, if
// not empty); it returns how many went.
func (s *Store) Delete(ctx context.Context, user, service, node string) (int64, error) {
	q, args := `DELETE FROM push_registration WHERE user = ? AND service = ?`, []any{user, service}
	if node != "" {
		q += ` AND node = ?`
		args = append(args, node)
	}
	res, err := s.db.ExecContext(ctx, q, args...)
	if err != nil {
		return 0, fmt.Errorf("push: delete: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// List returns the user's registrations, oldest first.
func (s *Store) List(ctx context.Context, user string) ([]Registration, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT service, node, options FROM push_registration WHERE user = ? ORDER BY created`, user)
	if err != nil {
		return nil, fmt.Errorf("push: list: %w", err)
	}
	defer rows.Close()
	var out []Registration
	for rows.Next() {
		var r Registration
		if err := rows.Scan(&r.Service, &r.Node, &r.Options); err != nil {
			return nil, fmt.Errorf("push: list: %w", err)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}
