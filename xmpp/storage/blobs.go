package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// VCard returns the user's stored vcard-temp (XEP-0054) XML, or nil, nil
// when there is none.
func (db *DB) VCard(ctx context.Context, user string) ([]byte, error) {
	b, err := readBlob(ctx, db.q.rVCard, user)
	if err != nil {
		return nil, fmt.Errorf("storage: vcard of %q: %w", user, err)
	}
	return b, nil
}

// SetVCard stores the user's vCard XML, replacing any previous one. Empty
// xml deletes the stored vCard. It returns ErrNoUser if the account does
// not exist.
func (db *DB) SetVCard(ctx context.Context, user string, xml []byte) error {
	var err error
	if len(xml) == 0 {
		_, err = db.q.wVCardDelete.ExecContext(ctx, user)
	} else {
		_, err = db.q.wVCardPut.ExecContext(ctx, user, xml, time.Now().UnixMilli())
	}
	if err != nil {
		return fmt.Errorf("storage: set vcard of %q: %w", user, noUserOnFK(err))
	}
	return nil
}

// Private returns the private XML (XEP-0049) stored under key, which
// names the root element as "namespace localname" (for example
// "storage:bookmarks storage"), or nil, nil when there is none.
func (db *DB) Private(ctx context.Context, user, key string) ([]byte, error) {
	b, err := readBlob(ctx, db.q.rPrivate, user, key)
	if err != nil {
		return nil, fmt.Errorf("storage: private %q of %q: %w", key, user, err)
	}
	return b, nil
}

// SetPrivate stores private XML under key, replacing any previous value.
// Empty xml deletes it. It returns ErrNoUser if the account does not exist.
func (db *DB) SetPrivate(ctx context.Context, user, key string, xml []byte) error {
	var err error
	switch {
	case key == "":
		err = ErrInvalid
	case len(xml) == 0:
		_, err = db.q.wPrivateDelete.ExecContext(ctx, user, key)
	default:
		_, err = db.q.wPrivatePut.ExecContext(ctx, user, key, xml, time.Now().UnixMilli())
	}
	if err != nil {
		return fmt.Errorf("storage: set private %q of %q: %w", key, user, noUserOnFK(err))
	}
	return nil
}

func readBlob(ctx context.Context, st *sql.Stmt, args ...any) ([]byte, error) {
	var b []byte
	err := st.QueryRowContext(ctx, args...).Scan(&b)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return b, err
}
