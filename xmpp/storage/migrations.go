package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// migrations is the ordered schema history. Migration i (0-based) brings the
// schema to version i+1. Never edit or reorder an entry that has shipped;
// append a new one instead.
var migrations = [...]string{
	// 1: initial schema.
	`
CREATE TABLE users (
	username   TEXT    NOT NULL PRIMARY KEY CHECK (username <> ''),
	locked     INTEGER NOT NULL DEFAULT 0,
	roster_ver INTEGER NOT NULL DEFAULT 0,
	created_ms INTEGER NOT NULL
);

CREATE TABLE scram_keys (
	username   TEXT    NOT NULL REFERENCES users(username) ON DELETE CASCADE,
	hash       TEXT    NOT NULL,
	salt       BLOB    NOT NULL,
	iter       INTEGER NOT NULL,
	stored_key BLOB    NOT NULL,
	server_key BLOB    NOT NULL,
	PRIMARY KEY (username, hash)
) WITHOUT ROWID;

CREATE TABLE roster (
	username     TEXT    NOT NULL REFERENCES users(username) ON DELETE CASCADE,
	contact      TEXT    NOT NULL CHECK (contact <> ''),
	name         TEXT    NOT NULL DEFAULT '',
	subscription TEXT    NOT NULL DEFAULT 'none' CHECK (subscription IN ('none', 'to', 'from', 'both')),
	ask          INTEGER NOT NULL DEFAULT 0,
	pending_in   INTEGER NOT NULL DEFAULT 0,
	approved     INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX roster_user_contact ON roster (username, contact);

CREATE TABLE roster_groups (
	username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
	contact  TEXT NOT NULL,
	grp      TEXT NOT NULL,
	PRIMARY KEY (username, contact, grp),
	FOREIGN KEY (username, contact) REFERENCES roster (username, contact) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE offline (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	username TEXT    NOT NULL REFERENCES users(username) ON DELETE CASCADE,
	stamp_ms INTEGER NOT NULL,
	xml      BLOB    NOT NULL
);
CREATE INDEX offline_user_id ON offline (username, id);

CREATE TABLE vcards (
	username   TEXT    NOT NULL PRIMARY KEY REFERENCES users(username) ON DELETE CASCADE,
	xml        BLOB    NOT NULL,
	updated_ms INTEGER NOT NULL
);

CREATE TABLE private_xml (
	username   TEXT    NOT NULL REFERENCES users(username) ON DELETE CASCADE,
	key        TEXT    NOT NULL,
	xml        BLOB    NOT NULL,
	updated_ms INTEGER NOT NULL,
	PRIMARY KEY (username, key)
);

CREATE TABLE blocklist (
	username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
	jid      TEXT NOT NULL CHECK (jid <> ''),
	PRIMARY KEY (username, jid)
) WITHOUT ROWID;

CREATE TABLE user_groups (
	name TEXT NOT NULL PRIMARY KEY CHECK (name <> '')
) WITHOUT ROWID;

CREATE TABLE user_group_members (
	grp      TEXT NOT NULL REFERENCES user_groups(name) ON DELETE CASCADE,
	username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
	PRIMARY KEY (grp, username)
) WITHOUT ROWID;
CREATE INDEX user_group_members_user ON user_group_members (username, grp);
`,
	migrationManagers,  // 2: a manager per user (managers.go)
	migrationDirectory, // 3: what the directory sync owns (directory.go)
}

// SchemaVersion is the schema version this build migrates databases to.
const SchemaVersion = len(migrations)

// migrate applies the pending migrations in one write transaction, so a
// failure leaves the schema as it was and two processes opening the same
// file cannot both apply a migration.
func migrate(ctx context.Context, w *sql.DB) error {
	err := func() error {
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY)`); err != nil {
			return err
		}
		var cur int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
			return err
		}
		if cur > len(migrations) {
			return fmt.Errorf("%w (database %d, build %d)", ErrSchemaVersion, cur, len(migrations))
		}
		for v := cur + 1; v <= len(migrations); v++ {
			if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version) VALUES (?)`, v); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		if errors.Is(err, ErrSchemaVersion) {
			return err
		}
		return fmt.Errorf("storage: migrate: %w", err)
	}
	return nil
}
