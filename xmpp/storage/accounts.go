package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"gatehouse/xmpp/auth"
)

// Hash names used as keys in scram_keys.
const (
	hashSHA1   = "SHA-1"
	hashSHA256 = "SHA-256"
	hashSHA512 = "SHA-512"
)

func (db *DB) loadUsers(ctx context.Context) error {
	names, err := collectStrings(db.q.rUserList.QueryContext(ctx))
	if err != nil {
		return fmt.Errorf("storage: load users: %w", err)
	}
	db.usersMu.Lock()
	defer db.usersMu.Unlock()
	for _, n := range names {
		db.users[n] = struct{}{}
	}
	return nil
}

// CreateUser creates an account with the given verifiers. Zero SCRAMKey
// values in c are not stored. It returns ErrUserExists if the username is
// taken.
func (db *DB) CreateUser(ctx context.Context, username string, c auth.Credentials) error {
	if username == "" {
		return fmt.Errorf("storage: create user: empty username: %w", ErrInvalid)
	}
	db.acctMu.Lock()
	defer db.acctMu.Unlock()
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, db.q.wUserInsert).ExecContext(ctx, username, time.Now().UnixMilli())
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrUserExists
		}
		return db.putKeys(ctx, tx, username, c)
	})
	if err != nil {
		return fmt.Errorf("storage: create user %q: %w", username, err)
	}
	db.usersMu.Lock()
	db.users[username] = struct{}{}
	db.usersMu.Unlock()
	return nil
}

// putKeys stores the non-zero verifiers of c. The caller has removed any
// previous ones.
func (db *DB) putKeys(ctx context.Context, tx *sql.Tx, username string, c auth.Credentials) error {
	ins := tx.StmtContext(ctx, db.q.wKeyInsert)
	for _, k := range []struct {
		hash string
		key  *auth.SCRAMKey
	}{{hashSHA1, &c.SHA1}, {hashSHA256, &c.SHA256}, {hashSHA512, &c.SHA512}} {
		if isZeroKey(k.key) {
			continue
		}
		if _, err := ins.ExecContext(ctx, username, k.hash, nonNil(k.key.Salt), k.key.Iter,
			nonNil(k.key.StoredKey), nonNil(k.key.ServerKey)); err != nil {
			return err
		}
	}
	return nil
}

func isZeroKey(k *auth.SCRAMKey) bool {
	return k.Iter == 0 && len(k.Salt) == 0 && len(k.StoredKey) == 0 && len(k.ServerKey) == 0
}

// SetCredentials replaces all of the user's verifiers with c.
func (db *DB) SetCredentials(ctx context.Context, username string, c auth.Credentials) error {
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		if err := checkRow(ctx, tx.StmtContext(ctx, db.q.wUserCheck), ErrNoUser, username); err != nil {
			return err
		}
		if _, err := tx.StmtContext(ctx, db.q.wKeysDelete).ExecContext(ctx, username); err != nil {
			return err
		}
		return db.putKeys(ctx, tx, username, c)
	})
	if err != nil {
		return fmt.Errorf("storage: set credentials for %q: %w", username, err)
	}
	return nil
}

// checkRow runs a "SELECT 1 ... WHERE key = ?" statement and returns
// missing if it yields no row.
func checkRow(ctx context.Context, st *sql.Stmt, missing error, args ...any) error {
	var one int
	err := st.QueryRowContext(ctx, args...).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return missing
	}
	return err
}

// Credentials returns the user's stored verifiers. Hashes without a stored
// verifier are zero. It returns an error wrapping ErrNoUser if the account
// does not exist.
func (db *DB) Credentials(ctx context.Context, username string) (auth.Credentials, error) {
	var c auth.Credentials
	rows, err := db.q.rUserKeys.QueryContext(ctx, username)
	if err != nil {
		return c, fmt.Errorf("storage: credentials for %q: %w", username, err)
	}
	defer rows.Close()
	found := false
	for rows.Next() {
		found = true
		var (
			hash sql.NullString
			k    auth.SCRAMKey
			iter sql.NullInt64
		)
		if err := rows.Scan(&hash, &k.Salt, &iter, &k.StoredKey, &k.ServerKey); err != nil {
			return auth.Credentials{}, fmt.Errorf("storage: credentials for %q: %w", username, err)
		}
		if !hash.Valid { // account without any verifier (LEFT JOIN)
			continue
		}
		k.Iter = int(iter.Int64)
		switch hash.String {
		case hashSHA1:
			c.SHA1 = k
		case hashSHA256:
			c.SHA256 = k
		case hashSHA512:
			c.SHA512 = k
		}
	}
	if err := rows.Err(); err != nil {
		return auth.Credentials{}, fmt.Errorf("storage: credentials for %q: %w", username, err)
	}
	if !found {
		return auth.Credentials{}, fmt.Errorf("storage: credentials for %q: %w", username, ErrNoUser)
	}
	return c, nil
}

// DeleteUser removes the account and, through cascading foreign keys, all
// of its data: verifiers, roster, offline messages, vCard, private XML,
// blocklist and group memberships. It returns ErrNoUser if absent.
func (db *DB) DeleteUser(ctx context.Context, username string) error {
	db.acctMu.Lock()
	defer db.acctMu.Unlock()
	res, err := db.q.wUserDelete.ExecContext(ctx, username)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = ErrNoUser
		}
	}
	if err != nil {
		return fmt.Errorf("storage: delete user %q: %w", username, err)
	}
	db.usersMu.Lock()
	delete(db.users, username)
	db.usersMu.Unlock()
	db.invalidateBlocked(username)
	return nil
}

// Exists reports whether the account exists. Hits are answered from memory
// (the set is loaded at Open and kept in step by CreateUser and DeleteUser);
// a miss asks the database, because another process (the CLI on the same
// data directory) may have created the account since.
func (db *DB) Exists(ctx context.Context, username string) (bool, error) {
	db.usersMu.RLock()
	_, ok := db.users[username]
	db.usersMu.RUnlock()
	if ok || username == "" {
		return ok, nil
	}
	var one int
	err := db.q.rUserLocked.QueryRowContext(ctx, username).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: exists %q: %w", username, err)
	}
	db.usersMu.Lock()
	db.users[username] = struct{}{}
	db.usersMu.Unlock()
	return true, nil
}

// ListUsers returns all usernames, sorted.
func (db *DB) ListUsers(ctx context.Context) ([]string, error) {
	names, err := collectStrings(db.q.rUserList.QueryContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("storage: list users: %w", err)
	}
	return names, nil
}

// SetLocked locks or unlocks the account. Locking only records the flag;
// refusing logins and ending sessions is the caller's job.
func (db *DB) SetLocked(ctx context.Context, username string, locked bool) error {
	res, err := db.q.wUserSetLocked.ExecContext(ctx, b2i(locked), username)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = ErrNoUser
		}
	}
	if err != nil {
		return fmt.Errorf("storage: set locked for %q: %w", username, err)
	}
	return nil
}

// Locked reports whether the account is locked.
func (db *DB) Locked(ctx context.Context, username string) (bool, error) {
	var locked bool
	err := db.q.rUserLocked.QueryRowContext(ctx, username).Scan(&locked)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNoUser
	}
	if err != nil {
		return false, fmt.Errorf("storage: locked for %q: %w", username, err)
	}
	return locked, nil
}
