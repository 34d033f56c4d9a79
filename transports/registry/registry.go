// Package registry keeps the transports an administrator added with
// `gatehouse transport add` in <data_dir>/transports.db. The server reads
// them at start, after the ones in the configuration file (which win for
// the same domain).
package registry

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver

	"gatehouse/xmpp/config"
)

// File is the registry's name in the data directory.
const File = "transports.db"

// Errors.
var (
	ErrExists   = errors.New("registry: transport already added")
	ErrNotFound = errors.New("registry: no such transport")
)

// Entry is one added transport.
type Entry struct {
	config.Component
	Added time.Time
}

// Registry is the store.
type Registry struct{ db *sql.DB }

const schema = `CREATE TABLE IF NOT EXISTS transports (
	domain   TEXT PRIMARY KEY,
	secret   TEXT NOT NULL,
	name     TEXT NOT NULL DEFAULT '',
	type     TEXT NOT NULL DEFAULT '',
	roster   TEXT NOT NULL DEFAULT '',
	message  TEXT NOT NULL DEFAULT '',
	presence TEXT NOT NULL DEFAULT '',
	version  INTEGER NOT NULL DEFAULT 0,
	added_ms INTEGER NOT NULL
)`

// Open opens (creating) the registry in dataDir.
func Open(ctx context.Context, dataDir string) (*Registry, error) {
	path := filepath.Join(dataDir, File)
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		return nil, fmt.Errorf("registry: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("registry: %s: %w", path, err)
	}
	return &Registry{db: db}, nil
}

// Close closes the store.
func (r *Registry) Close() error { return r.db.Close() }

// Validate checks c as the configuration would.
func Validate(c config.Component) error {
	cfg := config.Default()
	cfg.Components.Transports = []config.Component{c}
	return cfg.Validate()
}

// Add stores a transport.
func (r *Registry) Add(ctx context.Context, c config.Component, now time.Time) error {
	if c.Builtin != "" || c.SecretFile != "" {
		return errors.New("registry: only external transports with an inline secret can be added")
	}
	if err := Validate(c); err != nil {
		return err
	}
	p := c.Privileges
	res, err := r.db.ExecContext(ctx, `INSERT INTO transports (domain, secret, name, type, roster, message, presence, version, added_ms)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		c.Domain, c.Secret, c.Name, c.Type, p.Roster, p.Message, p.Presence, p.Version, now.UnixMilli())
	if err != nil {
		return fmt.Errorf("registry: add %s: %w", c.Domain, err)
	}
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return fmt.Errorf("%w: %s", ErrExists, c.Domain)
	}
	return nil
}

// Remove deletes a transport.
func (r *Registry) Remove(ctx context.Context, domain string) error {
	res, err := r.db.ExecContext(ctx, `DELETE FROM transports WHERE domain = ?`, domain)
	if err != nil {
		return fmt.Errorf("registry: remove %s: %w", domain, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("%w: %s", ErrNotFound, domain)
	}
	return nil
}

// List returns the added transports by domain.
func (r *Registry) List(ctx context.Context) ([]Entry, error) {
	rows, err := r.db.QueryContext(ctx, `SELECT domain, secret, name, type, roster, message, presence, version, added_ms
		FROM transports ORDER BY domain`)
	if err != nil {
		return nil, fmt.Errorf("registry: list: %w", err)
	}
	defer rows.Close()
	var out []Entry
	for rows.Next() {
		var e Entry
		var ms int64
		p := &e.Privileges
		if err := rows.Scan(&e.Domain, &e.Secret, &e.Name, &e.Type, &p.Roster, &p.Message, &p.Presence, &p.Version, &ms); err != nil {
			return nil, fmt.Errorf("registry: list: %w", err)
		}
		e.Added = time.UnixMilli(ms).UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// Merge returns the configured transports followed by the added ones whose
// domain the configuration does not list.
func Merge(configured []config.Component, added []Entry) []config.Component {
	out := append([]config.Component(nil), configured...)
	seen := map[string]bool{}
	for _, c := range configured {
		seen[c.Domain] = true
	}
	for _, e := range added {
		if !seen[e.Domain] {
			out = append(out, e.Component)
		}
	}
	return out
}
