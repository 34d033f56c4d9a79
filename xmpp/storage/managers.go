package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Managers: each account may have one manager, another account of this
// server. Boundary policy (policy/) notifies a user's manager when a rule
// with "notify: [manager]" acts on the user's traffic. Deleting either
// account deletes the relation (ON DELETE CASCADE in migration 2).

// migrationManagers creates the user_managers table.
const migrationManagers = `
CREATE TABLE user_managers (
	username TEXT NOT NULL PRIMARY KEY REFERENCES users(username) ON DELETE CASCADE,
	manager  TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
	CHECK (username <> manager)
) WITHOUT ROWID;
CREATE INDEX user_managers_manager ON user_managers (manager, username);
`

// SetManager makes manager the manager of user, replacing any previous
// one. It returns ErrNoUser if either account does not exist and
// ErrInvalid for an empty name or a user who would manage themselves.
func (db *DB) SetManager(ctx context.Context, user, manager string) error {
	if user == "" || manager == "" {
		return fmt.Errorf("storage: set manager: empty name: %w", ErrInvalid)
	}
	if user == manager {
		return fmt.Errorf("storage: set manager of %q: a user cannot be their own manager: %w", user, ErrInvalid)
	}
	_, err := db.w.ExecContext(ctx, `INSERT INTO user_managers (username, manager) VALUES (?, ?)
		ON CONFLICT (username) DO UPDATE SET manager = excluded.manager`, user, manager)
	if err != nil {
		return fmt.Errorf("storage: set manager of %q to %q: %w", user, manager, noUserOnFK(err))
	}
	return nil
}

// ClearManager removes user's manager. It returns ErrNotFound if the user
// has none.
func (db *DB) ClearManager(ctx context.Context, user string) error {
	res, err := db.w.ExecContext(ctx, `DELETE FROM user_managers WHERE username = ?`, user)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("storage: clear manager of %q: %w", user, err)
	}
	return nil
}

// Manager returns the account name of user's manager, or "" if the user
// has none (or does not exist).
func (db *DB) Manager(ctx context.Context, user string) (string, error) {
	var m string
	err := db.r.QueryRowContext(ctx, `SELECT manager FROM user_managers WHERE username = ?`, user).Scan(&m)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return "", nil
	case err != nil:
		return "", fmt.Errorf("storage: manager of %q: %w", user, err)
	}
	return m, nil
}

// Reports returns the accounts whose manager is manager, sorted.
func (db *DB) Reports(ctx context.Context, manager string) ([]string, error) {
	l, err := collectStrings(db.r.QueryContext(ctx, `SELECT username FROM user_managers WHERE manager = ? ORDER BY username`, manager))
	if err != nil {
		return nil, fmt.Errorf("storage: reports of %q: %w", manager, err)
	}
	return l, nil
}
