package s2s

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"time"

	// The SQLite driver the rest of the server uses.
	_ "github.com/mattn/go-sqlite3"
)

// StoreFile is the federation store's file name inside the data directory.
const StoreFile = "federation.db"

// ErrStore wraps every error of the federation store.
var ErrStore = errors.New("s2s: federation store")

// Entry is one stored allow or deny entry.
type Entry struct {
	Domain string // canonical domain, or "*.domain" for its subdomains
	List   List
	Added  time.Time
	Note   string
}

// Store keeps the allow and deny entries made with `gatehouse federation`
// in a small SQLite file of their own, so the CLI can change them while the
// server runs: the server notices a change by PRAGMA data_version, which
// moves when another connection (another process) commits.
type Store struct {
	db *sql.DB
}

const storeSchema = `
CREATE TABLE IF NOT EXISTS federation_domains (
	domain   TEXT PRIMARY KEY,
	list     TEXT NOT NULL CHECK (list IN ('allow', 'deny')),
	added_ms INTEGER NOT NULL,
	note     TEXT NOT NULL DEFAULT ''
) WITHOUT ROWID`

// OpenStore opens (creating, mode 0600) the federation store at path.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	_ = f.Close()
	u := url.URL{Scheme: "file", Opaque: (&url.URL{Path: path}).EscapedPath(),
		RawQuery: "mode=rw&_busy_timeout=5000&_journal_mode=WAL&_txlock=immediate"}
	db, err := sql.Open("sqlite3", u.String())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	// One connection: data_version is per connection, and the store is
	// tiny and rarely written.
	db.SetMaxOpenConns(1)
	db.SetMaxIdleConns(1)
	db.SetConnMaxLifetime(0)
	db.SetConnMaxIdleTime(0)
	if _, err := db.ExecContext(ctx, storeSchema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("%w: %s: %w", ErrStore, path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the store.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("%w: %w", ErrStore, err)
	}
	return nil
}

// Set puts domain on list (moving it off the other list).
func (s *Store) Set(ctx context.Context, domain string, list List, note string) error {
	if list != ListAllow && list != ListDeny {
		return fmt.Errorf("%w: unknown list %q", ErrStore, list)
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO federation_domains (domain, list, added_ms, note) VALUES (?, ?, ?, ?)
		ON CONFLICT (domain) DO UPDATE SET list = excluded.list, added_ms = excluded.added_ms, note = excluded.note`,
		domain, string(list), time.Now().UnixMilli(), note)
	if err != nil {
		return fmt.Errorf("%w: set %s: %w", ErrStore, domain, err)
	}
	return nil
}

// Remove deletes domain's entry; it reports whether there was one.
func (s *Store) Remove(ctx context.Context, domain string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM federation_domains WHERE domain = ?`, domain)
	if err != nil {
		return false, fmt.Errorf("%w: remove %s: %w", ErrStore, domain, err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// List returns every entry, ordered by domain.
func (s *Store) List(ctx context.Context) ([]Entry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT domain, list, added_ms, note FROM federation_domains ORDER BY domain`)
	if err != nil {
		return nil, fmt.Errorf("%w: list: %w", ErrStore, err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var list string
		var ms int64
		if err := rows.Scan(&e.Domain, &list, &ms, &e.Note); err != nil {
			return nil, fmt.Errorf("%w: list: %w", ErrStore, err)
		}
		e.List, e.Added = List(list), time.UnixMilli(ms).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%w: list: %w", ErrStore, err)
	}
	return out, nil
}

// Version returns SQLite's data_version: it changes when another
// connection commits, so polling it finds the CLI's changes cheaply.
func (s *Store) Version(ctx context.Context) (int64, error) {
	var v int64
	if err := s.db.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
		return 0, fmt.Errorf("%w: data_version: %w", ErrStore, err)
	}
	return v, nil
}

// Errors of RemoveFrom.
var (
	ErrNotListed = errors.New("s2s: not on the stored list")
	ErrOtherList = errors.New("s2s: on the other stored list")
)

// RemoveFrom removes domain's stored entry if it is on list: ErrOtherList
// when it is on the other list (nothing changes), ErrNotListed when it has
// no stored entry.
func (s *Store) RemoveFrom(ctx context.Context, domain string, list List) error {
	entries, err := s.List(ctx)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if e.Domain == domain && e.List != list {
			return fmt.Errorf("%w: %s is on the stored %s list, not %s", ErrOtherList, domain, e.List, list)
		}
	}
	ok, err := s.Remove(ctx, domain)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("%w: %s is not on the stored %s list", ErrNotListed, domain, list)
	}
	return nil
}
