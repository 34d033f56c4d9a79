package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// CreateGroup creates an administrative user group. It returns
// ErrGroupExists if the group exists and ErrInvalid for an empty name.
func (db *DB) CreateGroup(ctx context.Context, name string) error {
	if name == "" {
		return fmt.Errorf("storage: create group: empty name: %w", ErrInvalid)
	}
	res, err := db.q.wGroupInsert.ExecContext(ctx, name)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = ErrGroupExists
		}
	}
	if err != nil {
		return fmt.Errorf("storage: create group %q: %w", name, err)
	}
	return nil
}

// DeleteGroup deletes the group and its memberships. It returns
// ErrNotFound if the group does not exist.
func (db *DB) DeleteGroup(ctx context.Context, name string) error {
	res, err := db.q.wGroupDelete.ExecContext(ctx, name)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("storage: delete group %q: %w", name, err)
	}
	return nil
}

// AddToGroup makes user a member of group; adding an existing member is
// not an error. It returns ErrNotFound if the group does not exist and
// ErrNoUser if the account does not exist.
func (db *DB) AddToGroup(ctx context.Context, group, user string) error {
	err := db.writeTx(ctx, func(tx *sql.Tx) error {
		if err := checkRow(ctx, tx.StmtContext(ctx, db.q.wGroupCheck), ErrNotFound, group); err != nil {
			return err
		}
		// The group exists, so a foreign key failure can only be the user.
		_, err := tx.StmtContext(ctx, db.q.wMemberInsert).ExecContext(ctx, group, user)
		return noUserOnFK(err)
	})
	if err != nil {
		return fmt.Errorf("storage: add %q to group %q: %w", user, group, err)
	}
	return nil
}

// RemoveFromGroup removes user from group. It returns ErrNotFound if the
// user is not a member (or either does not exist).
func (db *DB) RemoveFromGroup(ctx context.Context, group, user string) error {
	res, err := db.q.wMemberDelete.ExecContext(ctx, group, user)
	if err == nil {
		var n int64
		if n, err = res.RowsAffected(); err == nil && n == 0 {
			err = ErrNotFound
		}
	}
	if err != nil {
		return fmt.Errorf("storage: remove %q from group %q: %w", user, group, err)
	}
	return nil
}

// Groups returns all group names, sorted.
func (db *DB) Groups(ctx context.Context) ([]string, error) {
	l, err := collectStrings(db.q.rGroupList.QueryContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("storage: groups: %w", err)
	}
	return l, nil
}

// GroupMembers returns the group's members, sorted. It returns ErrNotFound
// if the group does not exist.
func (db *DB) GroupMembers(ctx context.Context, group string) ([]string, error) {
	members, err := func() ([]string, error) {
		rows, err := db.q.rGroupMembers.QueryContext(ctx, group)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		found := false
		var out []string
		for rows.Next() {
			found = true
			var u sql.NullString
			if err := rows.Scan(&u); err != nil {
				return nil, err
			}
			if u.Valid { // NULL: the group exists but has no members
				out = append(out, u.String)
			}
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		if !found {
			return nil, ErrNotFound
		}
		return out, nil
	}()
	if err != nil {
		return nil, fmt.Errorf("storage: members of group %q: %w", group, err)
	}
	return members, nil
}

// UserGroups returns the groups the user belongs to, sorted.
func (db *DB) UserGroups(ctx context.Context, user string) ([]string, error) {
	l, err := collectStrings(db.q.rUserGroups.QueryContext(ctx, user))
	if err != nil {
		return nil, fmt.Errorf("storage: groups of %q: %w", user, err)
	}
	return l, nil
}
