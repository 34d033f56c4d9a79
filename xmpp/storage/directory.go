package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// migrationDirectory records what the directory sync (xmpp/directory)
// owns, so that a sync removes only what an earlier sync made and never a
// local account, group or roster item, and when SCRAM keys were cached
// from a directory bind.
const migrationDirectory = `
CREATE TABLE directory_owned (
	kind TEXT NOT NULL CHECK (kind IN ('user', 'group')),
	name TEXT NOT NULL,
	dn   TEXT NOT NULL,
	PRIMARY KEY (kind, name)
) WITHOUT ROWID;
CREATE TABLE directory_roster (
	username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
	contact  TEXT NOT NULL,
	PRIMARY KEY (username, contact)
) WITHOUT ROWID;
CREATE TABLE directory_scram (
	username  TEXT NOT NULL PRIMARY KEY REFERENCES users(username) ON DELETE CASCADE,
	cached_ms INTEGER NOT NULL
) WITHOUT ROWID;
`

// Kinds of directory-owned entries.
const (
	DirectoryUser  = "user"
	DirectoryGroup = "group"
)

// DirectoryOwned returns the names (and DNs) of the kind the directory
// sync created.
func (db *DB) DirectoryOwned(ctx context.Context, kind string) (map[string]string, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT name, dn FROM directory_owned WHERE kind = ?`, kind)
	if err != nil {
		return nil, fmt.Errorf("storage: directory owned: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var n, dn string
		if err := rows.Scan(&n, &dn); err != nil {
			return nil, fmt.Errorf("storage: directory owned: %w", err)
		}
		out[n] = dn
	}
	return out, rows.Err()
}

// SetDirectoryOwned marks name as made by the directory sync.
func (db *DB) SetDirectoryOwned(ctx context.Context, kind, name, dn string) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO directory_owned (kind, name, dn) VALUES (?, ?, ?)
		ON CONFLICT (kind, name) DO UPDATE SET dn = excluded.dn`, kind, name, dn)
	if err != nil {
		return fmt.Errorf("storage: directory owned %s %q: %w", kind, name, err)
	}
	return nil
}

// DropDirectoryOwned forgets name.
func (db *DB) DropDirectoryOwned(ctx context.Context, kind, name string) error {
	if _, err := db.w.ExecContext(ctx, `DELETE FROM directory_owned WHERE kind = ? AND name = ?`, kind, name); err != nil {
		return fmt.Errorf("storage: directory owned %s %q: %w", kind, name, err)
	}
	return nil
}

// DirectoryRoster returns the roster items the shared-roster sync made:
// user -> contact bare JIDs.
func (db *DB) DirectoryRoster(ctx context.Context) (map[string]map[string]bool, error) {
	rows, err := db.r.QueryContext(ctx, `SELECT username, contact FROM directory_roster`)
	if err != nil {
		return nil, fmt.Errorf("storage: directory roster: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]bool{}
	for rows.Next() {
		var u, c string
		if err := rows.Scan(&u, &c); err != nil {
			return nil, fmt.Errorf("storage: directory roster: %w", err)
		}
		if out[u] == nil {
			out[u] = map[string]bool{}
		}
		out[u][c] = true
	}
	return out, rows.Err()
}

// SetDirectoryRoster records (add) or forgets (!add) a shared-roster item.
func (db *DB) SetDirectoryRoster(ctx context.Context, user, contact string, add bool) error {
	q := `DELETE FROM directory_roster WHERE username = ? AND contact = ?`
	if add {
		q = `INSERT OR IGNORE INTO directory_roster (username, contact) VALUES (?, ?)`
	}
	if _, err := db.w.ExecContext(ctx, q, user, contact); err != nil {
		return fmt.Errorf("storage: directory roster %s/%s: %w", user, contact, err)
	}
	return nil
}

// SCRAMCachedAt returns when user's SCRAM keys were cached from a
// directory bind; ok is false when they were not (local credentials).
func (db *DB) SCRAMCachedAt(ctx context.Context, user string) (t time.Time, ok bool, err error) {
	var ms int64
	err = db.r.QueryRowContext(ctx, `SELECT cached_ms FROM directory_scram WHERE username = ?`, user).Scan(&ms)
	if errors.Is(err, sql.ErrNoRows) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("storage: scram cache of %q: %w", user, err)
	}
	return time.UnixMilli(ms), true, nil
}

// SetSCRAMCachedAt records that user's SCRAM keys come from a directory
// bind at t.
func (db *DB) SetSCRAMCachedAt(ctx context.Context, user string, t time.Time) error {
	_, err := db.w.ExecContext(ctx, `INSERT INTO directory_scram (username, cached_ms) VALUES (?, ?)
		ON CONFLICT (username) DO UPDATE SET cached_ms = excluded.cached_ms`, user, t.UnixMilli())
	if err != nil {
		return fmt.Errorf("storage: scram cache of %q: %w", user, err)
	}
	return nil
}
