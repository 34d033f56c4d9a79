package storage

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// Subscription is an RFC 6121 subscription state.
type Subscription string

// Subscription states.
const (
	SubNone Subscription = "none"
	SubTo   Subscription = "to"
	SubFrom Subscription = "from"
	SubBoth Subscription = "both"
)

// RosterItem is one contact in a user's roster. JID is the contact's bare
// JID as a string.
//
// All items are stored, including ones RFC 6121 says not to show (state
// "none" with only a pending inbound request); the caller decides what to
// show.
type RosterItem struct {
	JID          string
	Name         string
	Subscription Subscription
	Ask          bool     // we sent subscribe, awaiting answer ("pending out")
	PendingIn    bool     // contact asked to subscribe to us, not answered yet ("pending in")
	Approved     bool     // pre-approved subscription (RFC 6121 §3.4)
	Groups       []string // sorted, without duplicates; nil when none
}

// Roster returns the user's roster sorted by JID and the user's roster
// version counter, read from one snapshot. It returns ErrNoUser if the
// account does not exist.
func (db *DB) Roster(ctx context.Context, user string) (items []RosterItem, ver uint64, err error) {
	err = db.readTx(ctx, func(tx *sql.Tx) error {
		if err := tx.StmtContext(ctx, db.q.rRosterVer).QueryRowContext(ctx, user).Scan(&ver); err != nil {
			if errors.Is(err, sql.ErrNoRows) {
				return ErrNoUser
			}
			return err
		}
		rows, err := tx.StmtContext(ctx, db.q.rRosterItems).QueryContext(ctx, user)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			it, err := scanRosterItem(rows)
			if err != nil {
				return err
			}
			items = append(items, it)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(items) == 0 {
			return nil
		}
		grows, err := tx.StmtContext(ctx, db.q.rRosterGroups).QueryContext(ctx, user)
		if err != nil {
			return err
		}
		defer grows.Close()
		// Both queries are ordered by contact, so merge them in one pass.
		i := 0
		for grows.Next() {
			var contact, grp string
			if err := grows.Scan(&contact, &grp); err != nil {
				return err
			}
			for i < len(items) && items[i].JID < contact {
				i++
			}
			if i < len(items) && items[i].JID == contact {
				items[i].Groups = append(items[i].Groups, grp)
			}
		}
		return grows.Err()
	})
	if err != nil {
		return nil, 0, fmt.Errorf("storage: roster of %q: %w", user, err)
	}
	return items, ver, nil
}

type scanner interface{ Scan(dest ...any) error }

func scanRosterItem(s scanner) (RosterItem, error) {
	var (
		it  RosterItem
		sub string
	)
	err := s.Scan(&it.JID, &it.Name, &sub, &it.Ask, &it.PendingIn, &it.Approved)
	it.Subscription = Subscription(sub)
	return it, err
}

// RosterItem returns one roster item; ok is false if the user has no item
// for contact (including when the user does not exist).
func (db *DB) RosterItem(ctx context.Context, user, contact string) (item RosterItem, ok bool, err error) {
	err = db.readTx(ctx, func(tx *sql.Tx) error {
		item, err = scanRosterItem(tx.StmtContext(ctx, db.q.rRosterItem).QueryRowContext(ctx, user, contact))
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		item.Groups, err = collectStrings(tx.StmtContext(ctx, db.q.rRosterItemGroups).QueryContext(ctx, user, contact))
		return err
	})
	if err != nil {
		return RosterItem{}, false, fmt.Errorf("storage: roster item of %q: %w", user, err)
	}
	if !ok {
		return RosterItem{}, false, nil
	}
	return item, true, nil
}

// PutRosterItem inserts or replaces the item for it.JID and returns the
// new roster version. An empty Subscription is stored as "none"; empty and
// duplicate group names are dropped. It returns ErrNoUser if the account
// does not exist and ErrInvalid for an empty JID or unknown subscription.
func (db *DB) PutRosterItem(ctx context.Context, user string, it RosterItem) (ver uint64, err error) {
	sub := it.Subscription
	if sub == "" {
		sub = SubNone
	}
	switch {
	case it.JID == "":
		return 0, fmt.Errorf("storage: put roster item: empty JID: %w", ErrInvalid)
	case sub != SubNone && sub != SubTo && sub != SubFrom && sub != SubBoth:
		return 0, fmt.Errorf("storage: put roster item: subscription %q: %w", sub, ErrInvalid)
	}
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		if _, err := tx.StmtContext(ctx, db.q.wRosterUpsert).ExecContext(ctx, user, it.JID, it.Name,
			string(sub), b2i(it.Ask), b2i(it.PendingIn), b2i(it.Approved)); err != nil {
			return noUserOnFK(err)
		}
		if _, err := tx.StmtContext(ctx, db.q.wRosterGroupsDel).ExecContext(ctx, user, it.JID); err != nil {
			return err
		}
		ins := tx.StmtContext(ctx, db.q.wRosterGroupIns)
		for _, g := range it.Groups {
			if g == "" {
				continue
			}
			if _, err := ins.ExecContext(ctx, user, it.JID, g); err != nil {
				return err
			}
		}
		return tx.StmtContext(ctx, db.q.wRosterBump).QueryRowContext(ctx, user).Scan(&ver)
	})
	if err != nil {
		return 0, fmt.Errorf("storage: put roster item of %q: %w", user, err)
	}
	return ver, nil
}

// DeleteRosterItem removes the item for contact and returns the new roster
// version. It returns ErrNotFound if there is no such item.
func (db *DB) DeleteRosterItem(ctx context.Context, user, contact string) (ver uint64, err error) {
	err = db.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.StmtContext(ctx, db.q.wRosterDelete).ExecContext(ctx, user, contact)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrNotFound
		}
		return tx.StmtContext(ctx, db.q.wRosterBump).QueryRowContext(ctx, user).Scan(&ver)
	})
	if err != nil {
		return 0, fmt.Errorf("storage: delete roster item of %q: %w", user, err)
	}
	return ver, nil
}

// RosterVersion returns the user's roster version counter: 0 for a new
// account, incremented by every PutRosterItem and DeleteRosterItem. It
// returns ErrNoUser if the account does not exist.
func (db *DB) RosterVersion(ctx context.Context, user string) (uint64, error) {
	var ver uint64
	err := db.q.rRosterVer.QueryRowContext(ctx, user).Scan(&ver)
	if errors.Is(err, sql.ErrNoRows) {
		err = ErrNoUser
	}
	if err != nil {
		return 0, fmt.Errorf("storage: roster version of %q: %w", user, err)
	}
	return ver, nil
}
