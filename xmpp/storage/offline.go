package storage

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// OfflineMessage is a stanza stored for a user who was offline. XML is the
// serialized stanza as the caller gave it; Stamp is when it was stored
// (millisecond precision, UTC), for the XEP-0203 delay element.
type OfflineMessage struct {
	ID    int64
	Stamp time.Time
	XML   []byte
}

// StoreOffline appends a message to the user's offline queue. It returns
// ErrOfflineFull, storing nothing, when the user already has max or more
// messages (so max <= 0 refuses every message), ErrNoUser if the account
// does not exist and ErrInvalid for empty xml.
func (db *DB) StoreOffline(ctx context.Context, user string, stamp time.Time, xml []byte, max int) error {
	if len(xml) == 0 {
		return fmt.Errorf("storage: store offline: empty message: %w", ErrInvalid)
	}
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.StmtContext(ctx, db.q.wOfflineCount).QueryRowContext(ctx, user).Scan(&n); err != nil {
			return err
		}
		if n >= max {
			return ErrOfflineFull
		}
		_, err := tx.StmtContext(ctx, db.q.wOfflineInsert).ExecContext(ctx, user, stamp.UnixMilli(), xml)
		return noUserOnFK(err)
	})
	if err != nil {
		return fmt.Errorf("storage: store offline for %q: %w", user, err)
	}
	return nil
}

// TakeOffline returns the user's offline messages, oldest first, and
// deletes them in the same transaction. It returns nil when there are none.
func (db *DB) TakeOffline(ctx context.Context, user string) ([]OfflineMessage, error) {
	var msgs []OfflineMessage
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.StmtContext(ctx, db.q.wOfflineList).QueryContext(ctx, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				m  OfflineMessage
				ms int64
			)
			if err := rows.Scan(&m.ID, &ms, &m.XML); err != nil {
				return err
			}
			m.Stamp = time.UnixMilli(ms).UTC()
			msgs = append(msgs, m)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(msgs) == 0 {
			return nil
		}
		_, err = tx.StmtContext(ctx, db.q.wOfflineDelete).ExecContext(ctx, user)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("storage: take offline for %q: %w", user, err)
	}
	return msgs, nil
}

// OfflineCount returns how many offline messages the user has queued.
func (db *DB) OfflineCount(ctx context.Context, user string) (int, error) {
	var n int
	if err := db.q.rOfflineCount.QueryRowContext(ctx, user).Scan(&n); err != nil {
		return 0, fmt.Errorf("storage: offline count for %q: %w", user, err)
	}
	return n, nil
}
