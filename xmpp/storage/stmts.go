package storage

import (
	"context"
	"database/sql"
	"fmt"
)

// stmts holds the prepared statements, reused for the life of the DB.
// Statements named w* run on the writer (inside transactions through
// Tx.StmtContext, which reuses the writer's preparation); r* run on the
// read pool.
type stmts struct {
	all []*sql.Stmt

	// accounts
	wUserInsert    *sql.Stmt
	wUserDelete    *sql.Stmt
	wUserCheck     *sql.Stmt
	wUserSetLocked *sql.Stmt
	wKeysDelete    *sql.Stmt
	wKeyInsert     *sql.Stmt
	rUserKeys      *sql.Stmt
	rUserList      *sql.Stmt
	rUserLocked    *sql.Stmt

	// roster
	wRosterUpsert     *sql.Stmt
	wRosterDelete     *sql.Stmt
	wRosterGroupsDel  *sql.Stmt
	wRosterGroupIns   *sql.Stmt
	wRosterBump       *sql.Stmt
	rRosterVer        *sql.Stmt
	rRosterItems      *sql.Stmt
	rRosterGroups     *sql.Stmt
	rRosterItem       *sql.Stmt
	rRosterItemGroups *sql.Stmt

	// offline
	wOfflineCount  *sql.Stmt
	wOfflineInsert *sql.Stmt
	wOfflineList   *sql.Stmt
	wOfflineDelete *sql.Stmt
	rOfflineCount  *sql.Stmt

	// vcard, private
	wVCardPut      *sql.Stmt
	wVCardDelete   *sql.Stmt
	rVCard         *sql.Stmt
	wPrivatePut    *sql.Stmt
	wPrivateDelete *sql.Stmt
	rPrivate       *sql.Stmt

	// blocking
	wBlockInsert *sql.Stmt
	wBlockDelete *sql.Stmt
	wBlockClear  *sql.Stmt
	rBlocklist   *sql.Stmt

	// groups
	wGroupInsert  *sql.Stmt
	wGroupDelete  *sql.Stmt
	wGroupCheck   *sql.Stmt
	wMemberInsert *sql.Stmt
	wMemberDelete *sql.Stmt
	rGroupList    *sql.Stmt
	rGroupMembers *sql.Stmt
	rUserGroups   *sql.Stmt
}

func (s *stmts) prepare(ctx context.Context, w, r *sql.DB) error {
	list := []struct {
		dst **sql.Stmt
		on  *sql.DB
		q   string
	}{
		{&s.wUserInsert, w, `INSERT INTO users (username, created_ms) VALUES (?, ?) ON CONFLICT (username) DO NOTHING`},
		{&s.wUserDelete, w, `DELETE FROM users WHERE username = ?`},
		{&s.wUserCheck, w, `SELECT 1 FROM users WHERE username = ?`},
		{&s.wUserSetLocked, w, `UPDATE users SET locked = ? WHERE username = ?`},
		{&s.wKeysDelete, w, `DELETE FROM scram_keys WHERE username = ?`},
		{&s.wKeyInsert, w, `INSERT INTO scram_keys (username, hash, salt, iter, stored_key, server_key) VALUES (?, ?, ?, ?, ?, ?)`},
		{&s.rUserKeys, r, `SELECT k.hash, k.salt, k.iter, k.stored_key, k.server_key
			FROM users u LEFT JOIN scram_keys k ON k.username = u.username WHERE u.username = ?`},
		{&s.rUserList, r, `SELECT username FROM users ORDER BY username`},
		{&s.rUserLocked, r, `SELECT locked FROM users WHERE username = ?`},

		{&s.wRosterUpsert, w, `INSERT INTO roster (username, contact, name, subscription, ask, pending_in, approved)
			VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (username, contact) DO UPDATE SET
				name = excluded.name, subscription = excluded.subscription, ask = excluded.ask,
				pending_in = excluded.pending_in, approved = excluded.approved`},
		{&s.wRosterDelete, w, `DELETE FROM roster WHERE username = ? AND contact = ?`},
		{&s.wRosterGroupsDel, w, `DELETE FROM roster_groups WHERE username = ? AND contact = ?`},
		{&s.wRosterGroupIns, w, `INSERT INTO roster_groups (username, contact, grp) VALUES (?, ?, ?) ON CONFLICT DO NOTHING`},
		{&s.wRosterBump, w, `UPDATE users SET roster_ver = roster_ver + 1 WHERE username = ? RETURNING roster_ver`},
		{&s.rRosterVer, r, `SELECT roster_ver FROM users WHERE username = ?`},
		{&s.rRosterItems, r, `SELECT contact, name, subscription, ask, pending_in, approved
			FROM roster WHERE username = ? ORDER BY contact`},
		{&s.rRosterGroups, r, `SELECT contact, grp FROM roster_groups WHERE username = ? ORDER BY contact, grp`},
		{&s.rRosterItem, r, `SELECT contact, name, subscription, ask, pending_in, approved
			FROM roster WHERE username = ? AND contact = ?`},
		{&s.rRosterItemGroups, r, `SELECT grp FROM roster_groups WHERE username = ? AND contact = ? ORDER BY grp`},

		{&s.wOfflineCount, w, `SELECT count(*) FROM offline WHERE username = ?`},
		{&s.wOfflineInsert, w, `INSERT INTO offline (username, stamp_ms, xml) VALUES (?, ?, ?)`},
		{&s.wOfflineList, w, `SELECT id, stamp_ms, xml FROM offline WHERE username = ? ORDER BY id`},
		{&s.wOfflineDelete, w, `DELETE FROM offline WHERE username = ?`},
		{&s.rOfflineCount, r, `SELECT count(*) FROM offline WHERE username = ?`},

		{&s.wVCardPut, w, `INSERT INTO vcards (username, xml, updated_ms) VALUES (?, ?, ?)
			ON CONFLICT (username) DO UPDATE SET xml = excluded.xml, updated_ms = excluded.updated_ms`},
		{&s.wVCardDelete, w, `DELETE FROM vcards WHERE username = ?`},
		{&s.rVCard, r, `SELECT xml FROM vcards WHERE username = ?`},
		{&s.wPrivatePut, w, `INSERT INTO private_xml (username, key, xml, updated_ms) VALUES (?, ?, ?, ?)
			ON CONFLICT (username, key) DO UPDATE SET xml = excluded.xml, updated_ms = excluded.updated_ms`},
		{&s.wPrivateDelete, w, `DELETE FROM private_xml WHERE username = ? AND key = ?`},
		{&s.rPrivate, r, `SELECT xml FROM private_xml WHERE username = ? AND key = ?`},

		{&s.wBlockInsert, w, `INSERT INTO blocklist (username, jid) VALUES (?, ?) ON CONFLICT DO NOTHING`},
		{&s.wBlockDelete, w, `DELETE FROM blocklist WHERE username = ? AND jid = ?`},
		{&s.wBlockClear, w, `DELETE FROM blocklist WHERE username = ?`},
		{&s.rBlocklist, r, `SELECT jid FROM blocklist WHERE username = ? ORDER BY jid`},

		{&s.wGroupInsert, w, `INSERT INTO user_groups (name) VALUES (?) ON CONFLICT DO NOTHING`},
		{&s.wGroupDelete, w, `DELETE FROM user_groups WHERE name = ?`},
		{&s.wGroupCheck, w, `SELECT 1 FROM user_groups WHERE name = ?`},
		{&s.wMemberInsert, w, `INSERT INTO user_group_members (grp, username) VALUES (?, ?) ON CONFLICT DO NOTHING`},
		{&s.wMemberDelete, w, `DELETE FROM user_group_members WHERE grp = ? AND username = ?`},
		{&s.rGroupList, r, `SELECT name FROM user_groups ORDER BY name`},
		{&s.rGroupMembers, r, `SELECT m.username FROM user_groups g
			LEFT JOIN user_group_members m ON m.grp = g.name WHERE g.name = ? ORDER BY m.username`},
		{&s.rUserGroups, r, `SELECT grp FROM user_group_members WHERE username = ? ORDER BY grp`},
	}
	for _, p := range list {
		st, err := p.on.PrepareContext(ctx, p.q)
		if err != nil {
			return fmt.Errorf("storage: prepare %q: %w", p.q, err)
		}
		*p.dst = st
		s.all = append(s.all, st)
	}
	return nil
}

func (s *stmts) close() {
	for _, st := range s.all {
		_ = st.Close()
	}
	s.all = nil
}
