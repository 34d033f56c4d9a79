// Package storage is Gatehouse's persistent state: accounts and their SCRAM
// verifiers, rosters (RFC 6121), offline messages (XEP-0160), vcard-temp
// (XEP-0054), private XML storage (XEP-0049), blocklists (XEP-0191) and
// administrative user groups. Everything lives in one SQLite file opened in
// WAL mode, with a pool of read connections and a single writer connection.
//
// The package only stores and returns data; protocol rules (what a roster
// push contains, which items are visible, what a vCard must look like) belong
// to the callers. It imports gatehouse/xmpp/auth for the Credentials type and
// must not import any other gatehouse package.
//
// Conventions: usernames are JID localparts already normalised by the
// caller. Writes that name an unknown user fail with ErrNoUser; reads of
// per-user collections (offline messages, vCard, private XML, blocklist,
// groups of a user) for an unknown user return empty results, while reads of
// account-level state (Credentials, Locked, Roster, RosterVersion) return
// ErrNoUser. Timestamps are stored as integer Unix milliseconds (UTC).
package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/mattn/go-sqlite3"
)

// Sentinel errors. Returned errors wrap these; test with errors.Is.
var (
	// ErrUserExists is returned by CreateUser when the username is taken.
	ErrUserExists = errors.New("storage: user already exists")
	// ErrNoUser is returned when an operation names an account that does
	// not exist.
	ErrNoUser = errors.New("storage: no such user")
	// ErrOfflineFull is returned by StoreOffline when the user's offline
	// queue already holds the maximum number of messages.
	ErrOfflineFull = errors.New("storage: offline message queue full")
	// ErrNotFound is returned when a named item (roster item, group,
	// group membership) does not exist.
	ErrNotFound = errors.New("storage: not found")
	// ErrGroupExists is returned by CreateGroup when the group exists.
	ErrGroupExists = errors.New("storage: group already exists")
	// ErrInvalid is returned for arguments the store cannot hold, such as
	// an empty username, an empty JID or an unknown subscription state.
	ErrInvalid = errors.New("storage: invalid argument")
	// ErrSchemaVersion is returned by Open when the database was written
	// by a newer Gatehouse with migrations this build does not know.
	ErrSchemaVersion = errors.New("storage: database schema is newer than this build")
)

// busyTimeoutMS is how long a connection waits for a lock held by another
// connection (for example an admin tool using the same file) before giving
// up with SQLITE_BUSY.
const busyTimeoutMS = 5000

// DB is an open Gatehouse database. It is safe for concurrent use.
type DB struct {
	w *sql.DB // single writer connection
	r *sql.DB // read pool

	q stmts

	// acctMu serialises account creation and deletion with the update of
	// the users set, so the set cannot be left out of order with the rows.
	acctMu  sync.Mutex
	usersMu sync.RWMutex
	users   map[string]struct{}

	blockMu    sync.Mutex
	blockGen   uint64
	blockCache map[string]map[string]struct{}

	closeOnce sync.Once
	closeErr  error
}

// Open opens or creates the database file at path, applies any pending
// migrations and loads the account set. The file is created with mode 0600
// (and tightened to 0600 if it exists with wider permissions) because it
// holds credential verifiers; creating the directory is the caller's job.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" {
		return nil, fmt.Errorf("storage: open: empty path: %w", ErrInvalid)
	}
	if err := prepareFile(path); err != nil {
		return nil, err
	}
	base := "file:" + escapeURIPath(path)
	common := fmt.Sprintf("_foreign_keys=1&_busy_timeout=%d&_synchronous=NORMAL", busyTimeoutMS)

	w, err := sql.Open("sqlite3", base+"?mode=rw&_txlock=immediate&_journal_mode=WAL&_secure_delete=FAST&"+common)
	if err != nil {
		return nil, fmt.Errorf("storage: open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)

	db := &DB{
		w:          w,
		users:      make(map[string]struct{}),
		blockCache: make(map[string]map[string]struct{}),
	}
	fail := func(err error) (*DB, error) {
		db.q.close()
		if db.r != nil {
			db.r.Close()
		}
		w.Close()
		return nil, err
	}

	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail(fmt.Errorf("storage: open: %w", err))
	}
	if !strings.EqualFold(mode, "wal") {
		return fail(fmt.Errorf("storage: open: journal mode is %q, want wal", mode))
	}
	if err := migrate(ctx, w); err != nil {
		return fail(err)
	}

	// Readers are opened after the writer has switched the file to WAL
	// (a persistent setting), so they never need to change journal mode.
	r, err := sql.Open("sqlite3", base+"?mode=rw&_query_only=1&"+common)
	if err != nil {
		return fail(fmt.Errorf("storage: open readers: %w", err))
	}
	db.r = r
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)

	if err := db.q.prepare(ctx, w, r); err != nil {
		return fail(err)
	}
	if err := db.loadUsers(ctx); err != nil {
		return fail(err)
	}
	return db, nil
}

// Close closes the database. Calls after the first return the first
// call's result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() {
		db.q.close()
		errR := db.r.Close()
		errW := db.w.Close()
		if err := errors.Join(errR, errW); err != nil {
			db.closeErr = fmt.Errorf("storage: close: %w", err)
		}
	})
	return db.closeErr
}

// prepareFile creates the database file with mode 0600 if needed and
// tightens the permissions of an existing file and its WAL sidecars.
func prepareFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("storage: open: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("storage: open: %w", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("storage: open: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return fmt.Errorf("storage: open: tighten permissions: %w", err)
			}
		}
	}
	return nil
}

// escapeURIPath escapes the characters that would otherwise end or alter
// the path part of an SQLite "file:" URI.
func escapeURIPath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
}

// writeTx runs fn in a transaction on the writer connection. The writer
// begins transactions with BEGIN IMMEDIATE, so fn holds the write lock from
// its first statement and never has to upgrade a read lock.
func (db *DB) writeTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.w.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	return tx.Commit()
}

// readTx runs fn in a read transaction on the reader pool, so several
// queries see one snapshot.
func (db *DB) readTx(ctx context.Context, fn func(tx *sql.Tx) error) error {
	tx, err := db.r.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx)
}

// isForeignKey reports whether err is an SQLite foreign key violation.
func isForeignKey(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintForeignKey
}

// noUserOnFK turns a foreign key violation (a row referencing a missing
// user) into ErrNoUser.
func noUserOnFK(err error) error {
	if isForeignKey(err) {
		return ErrNoUser
	}
	return err
}

// collectStrings reads a single string column.
func collectStrings(rows *sql.Rows, err error) ([]string, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// nonNil makes a nil slice an empty one, because a nil []byte binds as
// SQL NULL.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
