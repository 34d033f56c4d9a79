package irc

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	_ "github.com/mattn/go-sqlite3" // the SQLite driver
)

// Registration is one user's account on one IRC network.
type Registration struct {
	User     string // the user's bare JID
	Network  string
	Nick     string
	Password string // server password (PASS), may be empty
}

// Store keeps registrations and contacts in SQLite.
type Store struct{ db *sql.DB }

// ErrNotRegistered: the user has no registration on the network.
var ErrNotRegistered = errors.New("irc: not registered")

const schema = `
CREATE TABLE IF NOT EXISTS registrations (
	user     TEXT NOT NULL,
	network  TEXT NOT NULL,
	nick     TEXT NOT NULL,
	password TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (user, network)
);
CREATE TABLE IF NOT EXISTS contacts (
	user    TEXT NOT NULL,
	network TEXT NOT NULL,
	folded  TEXT NOT NULL, -- the nick case-folded (the key)
	nick    TEXT NOT NULL, -- as last seen
	PRIMARY KEY (user, network, folded)
);
`

// OpenStore opens (creating) the database at path.
func OpenStore(ctx context.Context, path string) (*Store, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000&_journal_mode=WAL&_foreign_keys=on")
	if err != nil {
		return nil, fmt.Errorf("irc: open %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, schema); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("irc: schema of %s: %w", path, err)
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

// Register stores (or replaces) a registration.
func (s *Store) Register(ctx context.Context, r Registration) error {
	_, err := s.db.ExecContext(ctx, `INSERT INTO registrations (user, network, nick, password) VALUES (?, ?, ?, ?)
		ON CONFLICT (user, network) DO UPDATE SET nick = excluded.nick, password = excluded.password`,
		r.User, r.Network, r.Nick, r.Password)
	if err != nil {
		return fmt.Errorf("irc: register %s: %w", r.User, err)
	}
	return nil
}

// Unregister removes the user's registrations and contacts on network, or
// on every network when network is empty.
func (s *Store) Unregister(ctx context.Context, user, network string) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("irc: unregister: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, table := range []string{"registrations", "contacts"} {
		if _, err := tx.ExecContext(ctx, `DELETE FROM `+table+` WHERE user = ? AND (? = '' OR network = ?)`, user, network, network); err != nil {
			return fmt.Errorf("irc: unregister: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("irc: unregister: %w", err)
	}
	return nil
}

// Registrations returns the user's registrations, or everyone's when user
// is empty, ordered by user and network.
func (s *Store) Registrations(ctx context.Context, user string) ([]Registration, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT user, network, nick, password FROM registrations
		WHERE ? = '' OR user = ? ORDER BY user, network`, user, user)
	if err != nil {
		return nil, fmt.Errorf("irc: registrations: %w", err)
	}
	defer rows.Close()
	var out []Registration
	for rows.Next() {
		var r Registration
		if err := rows.Scan(&r.User, &r.Network, &r.Nick, &r.Password); err != nil {
			return nil, fmt.Errorf("irc: registrations: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("irc: registrations: %w", err)
	}
	return out, nil
}

// Registration returns the user's registration on network.
func (s *Store) Registration(ctx context.Context, user, network string) (Registration, error) {
	r := Registration{User: user, Network: network}
	err := s.db.QueryRowContext(ctx, `SELECT nick, password FROM registrations WHERE user = ? AND network = ?`, user, network).
		Scan(&r.Nick, &r.Password)
	if errors.Is(err, sql.ErrNoRows) {
		return r, ErrNotRegistered
	}
	if err != nil {
		return r, fmt.Errorf("irc: registration: %w", err)
	}
	return r, nil
}

// AddContact stores nick as the user's contact on network; it reports
// whether the contact is new.
func (s *Store) AddContact(ctx context.Context, user, network, nick string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO contacts (user, network, folded, nick) VALUES (?, ?, ?, ?)
		ON CONFLICT DO NOTHING`, user, network, fold(nick), nick)
	if err != nil {
		return false, fmt.Errorf("irc: add contact: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// RemoveContact removes nick from the user's contacts.
func (s *Store) RemoveContact(ctx context.Context, user, network, nick string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM contacts WHERE user = ? AND network = ? AND folded = ?`, user, network, fold(nick)); err != nil {
		return fmt.Errorf("irc: remove contact: %w", err)
	}
	return nil
}

// Contacts returns the user's contacts on network.
func (s *Store) Contacts(ctx context.Context, user, network string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT nick FROM contacts WHERE user = ? AND network = ? ORDER BY folded`, user, network)
	if err != nil {
		return nil, fmt.Errorf("irc: contacts: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("irc: contacts: %w", err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// fold case-folds a nick or channel name by RFC 1459 rules ({}|^ are the
// lower case of []\~), which every server accepts.
func fold(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'A' && r <= 'Z':
			return r + 32
		case r == '[':
			return '{'
		case r == ']':
			return '}'
		case r == '\\':
			return '|'
		case r == '~':
			return '^'
		}
		return r
	}, s)
}
