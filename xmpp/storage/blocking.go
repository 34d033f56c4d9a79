package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// Blocklist returns the user's blocked JIDs (XEP-0191), sorted.
func (db *DB) Blocklist(ctx context.Context, user string) ([]string, error) {
	l, err := collectStrings(db.q.rBlocklist.QueryContext(ctx, user))
	if err != nil {
		return nil, fmt.Errorf("storage: blocklist of %q: %w", user, err)
	}
	return l, nil
}

// Block adds jids (domain, bare or full JID strings) to the user's
// blocklist; entries already present are kept. Block with no jids does
// nothing. It returns ErrNoUser if the account does not exist and
// ErrInvalid for an empty JID.
func (db *DB) Block(ctx context.Context, user string, jids ...string) error {
	if len(jids) == 0 {
		return nil
	}
	for _, j := range jids {
		if j == "" {
			return fmt.Errorf("storage: block: empty JID: %w", ErrInvalid)
		}
	}
	defer db.invalidateBlocked(user)
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		ins := tx.StmtContext(ctx, db.q.wBlockInsert)
		for _, j := range jids {
			if _, err := ins.ExecContext(ctx, user, j); err != nil {
				return noUserOnFK(err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: block for %q: %w", user, err)
	}
	return nil
}

// Unblock removes jids from the user's blocklist; with no jids it clears
// the whole list. Removing an entry that is not present is not an error.
func (db *DB) Unblock(ctx context.Context, user string, jids ...string) error {
	defer db.invalidateBlocked(user)
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		if len(jids) == 0 {
			_, err := tx.StmtContext(ctx, db.q.wBlockClear).ExecContext(ctx, user)
			return err
		}
		del := tx.StmtContext(ctx, db.q.wBlockDelete)
		for _, j := range jids {
			if _, err := del.ExecContext(ctx, user, j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: unblock for %q: %w", user, err)
	}
	return nil
}

// BlockedSet returns the user's blocklist as a set, for the per-stanza
// blocking check. The set is cached in memory per user and replaced when
// Block, Unblock or DeleteUser change it.
//
// The returned map is shared with the cache and with other callers: it
// must not be modified.
func (db *DB) BlockedSet(ctx context.Context, user string) (map[string]struct{}, error) {
	db.blockMu.Lock()
	if m, ok := db.blockCache[user]; ok {
		db.blockMu.Unlock()
		return m, nil
	}
	gen := db.blockGen
	db.blockMu.Unlock()

	l, err := db.Blocklist(ctx, user)
	if err != nil {
		return nil, err
	}
	m := make(map[string]struct{}, len(l))
	for _, j := range l {
		m[j] = struct{}{}
	}
	// Cache only accounts that exist (so the cache is bounded by the
	// account table) and only if no blocklist changed since the read
	// started: a change in between may not be in l.
	if ok, _ := db.Exists(ctx, user); ok {
		db.blockMu.Lock()
		if db.blockGen == gen {
			db.blockCache[user] = m
		}
		db.blockMu.Unlock()
	}
	return m, nil
}

// invalidateBlocked drops the user's cached blocklist. It must run after
// the change it reflects has committed.
func (db *DB) invalidateBlocked(user string) {
	db.blockMu.Lock()
	delete(db.blockCache, user)
	db.blockGen++
	db.blockMu.Unlock()
}
