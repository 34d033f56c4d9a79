package archive

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"
)

// migrations is the ordered schema history; migration i (0-based) brings
// the schema to version i+1. The schema is a public interface (reviewers'
// SQL depends on it): never edit or reorder a shipped entry, append one.
var migrations = [...]string{
	// 1: initial schema. docs/archive.md documents every column.
	`
CREATE TABLE archive_info (
	key   TEXT NOT NULL PRIMARY KEY,
	value TEXT NOT NULL
);

CREATE TABLE records (
	seq         INTEGER PRIMARY KEY,
	record_type TEXT    NOT NULL CHECK (record_type IN ('stanza', 'session', 'link', 'file', 'policy', 'admin', 'checkpoint')),
	ts_ms       INTEGER NOT NULL,
	prev_hash   TEXT    NOT NULL,
	hash        TEXT    NOT NULL
);

CREATE TABLE stanzas (
	seq            INTEGER PRIMARY KEY,
	ts_ms          INTEGER NOT NULL,
	ts_utc         TEXT    NOT NULL,
	direction      TEXT    NOT NULL CHECK (direction IN ('in', 'out', 'internal')),
	zone           TEXT    NOT NULL CHECK (zone IN ('remote', 'transport', 'local')),
	network        TEXT    NOT NULL,
	account        TEXT    NOT NULL,
	local_jid      TEXT    NOT NULL,
	peer           TEXT    NOT NULL,
	peer_jid       TEXT    NOT NULL,
	legacy_id      TEXT,
	kind           TEXT    NOT NULL CHECK (kind IN ('message', 'presence', 'iq')),
	type           TEXT    NOT NULL,
	stanza_id      TEXT,
	origin_id      TEXT,
	thread         TEXT,
	subject        TEXT,
	body           TEXT,
	verdict        TEXT    NOT NULL CHECK (verdict IN ('allow', 'deny', 'error')),
	rule           TEXT,
	policy_version TEXT,
	deny_condition TEXT,
	deny_text      TEXT,
	conn_id        INTEGER,
	route_seq      INTEGER,
	raw            TEXT    NOT NULL,
	raw_delivered  TEXT
);
CREATE INDEX stanzas_ts ON stanzas (ts_ms);
CREATE INDEX stanzas_account ON stanzas (account, ts_ms);
CREATE INDEX stanzas_peer ON stanzas (peer, ts_ms);

CREATE TABLE session_events (
	seq            INTEGER PRIMARY KEY,
	ts_ms          INTEGER NOT NULL,
	ts_utc         TEXT    NOT NULL,
	event          TEXT    NOT NULL CHECK (event IN ('logon', 'logoff')),
	account        TEXT    NOT NULL,
	resource       TEXT    NOT NULL,
	conn_id        INTEGER NOT NULL,
	client_addr    TEXT    NOT NULL,
	tls_version    TEXT    NOT NULL,
	sasl_mechanism TEXT    NOT NULL,
	started_ms     INTEGER NOT NULL,
	duration_ms    INTEGER
);
CREATE INDEX session_events_account ON session_events (account, ts_ms);

CREATE TABLE link_events (
	seq       INTEGER PRIMARY KEY,
	ts_ms     INTEGER NOT NULL,
	ts_utc    TEXT    NOT NULL,
	event     TEXT    NOT NULL CHECK (event IN ('up', 'down')),
	zone      TEXT    NOT NULL CHECK (zone IN ('remote', 'transport')),
	network   TEXT    NOT NULL,
	conn_id   INTEGER NOT NULL,
	peer_addr TEXT    NOT NULL,
	since_ms  INTEGER,
	reason    TEXT
);

CREATE TABLE file_transfers (
	seq            INTEGER PRIMARY KEY,
	ts_ms          INTEGER NOT NULL,
	ts_utc         TEXT    NOT NULL,
	direction      TEXT    NOT NULL CHECK (direction IN ('in', 'out', 'internal')),
	zone           TEXT    NOT NULL CHECK (zone IN ('remote', 'transport', 'local')),
	network        TEXT    NOT NULL,
	account        TEXT    NOT NULL,
	peer           TEXT    NOT NULL,
	peer_jid       TEXT    NOT NULL,
	file_name      TEXT    NOT NULL,
	size_bytes     INTEGER,
	media_type     TEXT,
	sha256         TEXT,
	url            TEXT,
	scan_result    TEXT,
	verdict        TEXT    NOT NULL CHECK (verdict IN ('allow', 'deny', 'error')),
	rule           TEXT,
	policy_version TEXT,
	stanza_seq     INTEGER
);
CREATE INDEX file_transfers_account ON file_transfers (account, ts_ms);

CREATE TABLE policy_actions (
	seq            INTEGER PRIMARY KEY,
	ts_ms          INTEGER NOT NULL,
	ts_utc         TEXT    NOT NULL,
	action         TEXT    NOT NULL,
	rule           TEXT,
	policy_version TEXT,
	account        TEXT,
	peer           TEXT,
	network        TEXT,
	stanza_seq     INTEGER,
	detail         TEXT
);

CREATE TABLE admin_actions (
	seq    INTEGER PRIMARY KEY,
	ts_ms  INTEGER NOT NULL,
	ts_utc TEXT    NOT NULL,
	actor  TEXT    NOT NULL,
	origin TEXT    NOT NULL,
	action TEXT    NOT NULL,
	target TEXT,
	detail TEXT
);

CREATE TABLE checkpoints (
	seq           INTEGER PRIMARY KEY,
	ts_ms         INTEGER NOT NULL,
	ts_utc        TEXT    NOT NULL,
	actor         TEXT    NOT NULL,
	before_ms     INTEGER NOT NULL,
	rows_pruned   INTEGER NOT NULL,
	ranges        INTEGER NOT NULL,
	ranges_sha256 TEXT    NOT NULL
);

-- Not chained: each row is attested by the checkpoint that made it
-- (checkpoints.ranges_sha256 covers them).
CREATE TABLE pruned_ranges (
	first_seq      INTEGER PRIMARY KEY,
	last_seq       INTEGER NOT NULL,
	rows           INTEGER NOT NULL,
	prev_hash      TEXT    NOT NULL,
	last_hash      TEXT    NOT NULL,
	checkpoint_seq INTEGER NOT NULL
);

-- Legal holds: changed only through the archive (every change is an
-- admin_actions row), never chained themselves.
CREATE TABLE holds (
	id           INTEGER PRIMARY KEY,
	case_name    TEXT    NOT NULL CHECK (case_name <> ''),
	account      TEXT,
	peer         TEXT,
	from_ms      INTEGER,
	to_ms        INTEGER,
	reason       TEXT,
	created_ms   INTEGER NOT NULL,
	created_by   TEXT    NOT NULL,
	created_seq  INTEGER NOT NULL,
	released_ms  INTEGER,
	released_by  TEXT,
	released_seq INTEGER
);

-- prune_guard holds a row only inside a prune transaction: the triggers
-- below refuse UPDATE and DELETE on archived rows at any other time, so a
-- reviewer who forgot -readonly cannot damage the archive by accident.
CREATE TABLE prune_guard (token INTEGER NOT NULL);

CREATE TRIGGER records_no_update BEFORE UPDATE ON records BEGIN SELECT RAISE(ABORT, 'archive rows are append-only'); END;
CREATE TRIGGER records_no_delete BEFORE DELETE ON records WHEN NOT EXISTS (SELECT 1 FROM prune_guard) BEGIN SELECT RAISE(ABORT, 'archive rows are removed only by gatehouse archive prune'); END;
CREATE TRIGGER stanzas_no_update BEFORE UPDATE ON stanzas BEGIN SELECT RAISE(ABORT, 'archive rows are append-only'); END;
CREATE TRIGGER stanzas_no_delete BEFORE DELETE ON stanzas WHEN NOT EXISTS (SELECT 1 FROM prune_guard) BEGIN SELECT RAISE(ABORT, 'archive rows are removed only by gatehouse archive prune'); END;
CREATE TRIGGER session_events_no_update BEFORE UPDATE ON session_events BEGIN SELECT RAISE(ABORT, 'archive rows are append-only'); END;
CREATE TRIGGER session_events_no_delete BEFORE DELETE ON session_events WHEN NOT EXISTS (SELECT 1 FROM prune_guard) BEGIN SELECT RAISE(ABORT, 'archive rows are removed only by gatehouse archive prune'); END;
CREATE TRIGGER link_events_no_update BEFORE UPDATE ON link_events BEGIN SELECT RAISE(ABORT, 'archive rows are append-only'); END;
CREATE TRIGGER link_events_no_delete BEFORE DELETE ON link_events WHEN NOT EXISTS (SELECT 1 FROM prune_guard) BEGIN SELECT RAISE(ABORT, 'archive rows are removed only by gatehouse archive prune'); END;
CREATE TRIGGER file_transfers_no_update BEFORE UPDATE ON file_transfers BEGIN SELECT RAISE(ABORT, 'archive rows are append-only'); END;
CREATE TRIGGER file_transfers_no_delete BEFORE DELETE ON file_transfers WHEN NOT EXISTS (SELECT 1 FROM prune_guard) BEGIN SELECT RAISE(ABORT, 'archive rows are removed only by gatehouse archive prune'); END;
CREATE TRIGGER policy_actions_no_update BEFORE UPDATE ON policy_actions BEGIN SELECT RAISE(ABORT, 'archive rows are append-only'); END;
CREATE TRIGGER policy_actions_no_delete BEFORE DELETE ON policy_actions WHEN NOT EXISTS (SELECT 1 FROM prune_guard) BEGIN SELECT RAISE(ABORT, 'archive rows are removed only by gatehouse archive prune'); END;
CREATE TRIGGER admin_actions_no_update BEFORE UPDATE ON admin_actions BEGIN SELECT RAISE(ABORT, 'archive rows are append-only'); END;
CREATE TRIGGER admin_actions_no_delete BEFORE DELETE ON admin_actions WHEN NOT EXISTS (SELECT 1 FROM prune_guard) BEGIN SELECT RAISE(ABORT, 'archive rows are removed only by gatehouse archive prune'); END;
CREATE TRIGGER checkpoints_no_update BEFORE UPDATE ON checkpoints BEGIN SELECT RAISE(ABORT, 'archive rows are append-only'); END;
CREATE TRIGGER checkpoints_no_delete BEFORE DELETE ON checkpoints BEGIN SELECT RAISE(ABORT, 'checkpoints are never removed'); END;
CREATE TRIGGER pruned_ranges_no_update BEFORE UPDATE ON pruned_ranges BEGIN SELECT RAISE(ABORT, 'archive rows are append-only'); END;
CREATE TRIGGER pruned_ranges_no_delete BEFORE DELETE ON pruned_ranges BEGIN SELECT RAISE(ABORT, 'pruned ranges are never removed'); END;

-- Full-text index over message subjects and bodies (FTS4, external
-- content: the text lives only in stanzas). Query it with
--   SELECT ... FROM stanzas WHERE seq IN (SELECT docid FROM stanzas_fts WHERE stanzas_fts MATCH 'merger');
CREATE VIRTUAL TABLE stanzas_fts USING fts4(content='stanzas', subject, body, tokenize=unicode61 "remove_diacritics=2");
CREATE TRIGGER stanzas_fts_ai AFTER INSERT ON stanzas WHEN new.body IS NOT NULL OR new.subject IS NOT NULL BEGIN
	INSERT INTO stanzas_fts (docid, subject, body) VALUES (new.seq, new.subject, new.body);
END;
CREATE TRIGGER stanzas_fts_bd BEFORE DELETE ON stanzas WHEN old.body IS NOT NULL OR old.subject IS NOT NULL BEGIN
	DELETE FROM stanzas_fts WHERE docid = old.seq;
END;

-- Views for the usual questions (docs/archive.md has example queries).
CREATE VIEW external_messages AS
SELECT seq, ts_ms, ts_utc, direction, zone, network, account, local_jid, peer, peer_jid, legacy_id,
       type, thread, subject, body, verdict, rule, policy_version, deny_condition, deny_text
FROM stanzas
WHERE kind = 'message' AND direction IN ('in', 'out') AND (body IS NOT NULL OR subject IS NOT NULL);

CREATE VIEW conversations_daily AS
SELECT substr(ts_utc, 1, 10) AS day, account, peer, zone, network,
       count(*) AS messages,
       sum(direction = 'out') AS sent,
       sum(direction = 'in') AS received,
       sum(direction = 'internal') AS internal,
       sum(verdict <> 'allow') AS refused,
       min(ts_utc) AS first_utc,
       max(ts_utc) AS last_utc
FROM stanzas
WHERE kind = 'message' AND (body IS NOT NULL OR subject IS NOT NULL)
GROUP BY day, account, peer, zone, network;

CREATE VIEW policy_hits AS
SELECT seq, ts_ms, ts_utc, 'stanza' AS source, account, peer, network, verdict AS outcome, rule, policy_version,
       coalesce(deny_condition || coalesce(': ' || deny_text, ''), deny_text) AS detail
FROM stanzas WHERE rule IS NOT NULL OR verdict <> 'allow'
UNION ALL
SELECT seq, ts_ms, ts_utc, 'file', account, peer, network, verdict, rule, policy_version, file_name
FROM file_transfers WHERE rule IS NOT NULL OR verdict <> 'allow'
UNION ALL
SELECT seq, ts_ms, ts_utc, 'policy', account, peer, network, action, rule, policy_version, detail
FROM policy_actions;

CREATE VIEW subscriptions AS
SELECT seq, ts_ms, ts_utc, direction, zone, network, account, peer, type AS action, verdict
FROM stanzas
WHERE kind = 'presence' AND type IN ('subscribe', 'subscribed', 'unsubscribe', 'unsubscribed');

CREATE VIEW timeline AS
SELECT seq, ts_ms, ts_utc, 'stanza' AS record_type, account, peer, network,
       direction || ' ' || kind || '/' || type ||
       CASE WHEN verdict <> 'allow' THEN ' [' || verdict || coalesce(' ' || rule, '') || ']' ELSE '' END ||
       coalesce(': ' || body, '') AS summary
FROM stanzas
UNION ALL
SELECT seq, ts_ms, ts_utc, 'session', account, NULL, NULL,
       event || ' ' || resource || ' from ' || client_addr || ' (' || tls_version || ', ' || sasl_mechanism || ')'
FROM session_events
UNION ALL
SELECT seq, ts_ms, ts_utc, 'link', NULL, NULL, network,
       zone || ' link ' || event || coalesce(': ' || reason, '')
FROM link_events
UNION ALL
SELECT seq, ts_ms, ts_utc, 'file', account, peer, network,
       direction || ' file ' || file_name || coalesce(' (' || size_bytes || ' bytes)', '') ||
       CASE WHEN verdict <> 'allow' THEN ' [' || verdict || coalesce(' ' || rule, '') || ']' ELSE '' END
FROM file_transfers
UNION ALL
SELECT seq, ts_ms, ts_utc, 'policy', account, peer, network,
       action || coalesce(' by rule ' || rule, '') || coalesce(': ' || detail, '')
FROM policy_actions
UNION ALL
SELECT seq, ts_ms, ts_utc, 'admin', NULL, NULL, NULL,
       actor || ' ' || action || coalesce(' ' || target, '')
FROM admin_actions
UNION ALL
SELECT seq, ts_ms, ts_utc, 'checkpoint', NULL, NULL, NULL,
       actor || ' pruned ' || rows_pruned || ' rows older than ' || strftime('%Y-%m-%dT%H:%M:%SZ', before_ms / 1000, 'unixepoch')
FROM checkpoints;
`,
	// 2: the full-text index is filled by the writer after each commit
	// (Archive.indexFTS), in batches and off the crossing's commit path,
	// instead of by a trigger inside it. archive_info.fts_indexed_seq is
	// the highest seq whose text is indexed.
	`
DROP TRIGGER stanzas_fts_ai;
INSERT INTO archive_info (key, value) SELECT 'fts_indexed_seq', coalesce(max(seq), 0) FROM records;
`,
}

// SchemaVersion is the schema version this build writes.
const SchemaVersion = len(migrations)

// column is one column of a chained table after seq, in canonical order.
type column struct {
	name string
	kind colKind
}

type colKind uint8

const (
	colInt colKind = iota + 1
	colText
)

// tableDef describes a chained table: the record type stored in
// records.record_type and the columns after seq in canonical (hash) order.
// Adding a column to a shipped table would change the canonical form of
// old rows; a new column therefore needs a new table version, not an edit.
type tableDef struct {
	typ  RecordType
	name string
	cols []column
}

func cols(spec ...string) []column {
	out := make([]column, 0, len(spec))
	for _, s := range spec {
		k := colText
		if s[0] == '#' {
			k, s = colInt, s[1:]
		}
		out = append(out, column{name: s, kind: k})
	}
	return out
}

// tables are the chained tables, in the order docs/archive.md lists them.
// Column spec: a leading '#' marks INTEGER columns.
var tables = []*tableDef{
	{TypeStanza, "stanzas", cols("#ts_ms", "ts_utc", "direction", "zone", "network", "account", "local_jid",
		"peer", "peer_jid", "legacy_id", "kind", "type", "stanza_id", "origin_id", "thread", "subject", "body",
		"verdict", "rule", "policy_version", "deny_condition", "deny_text", "#conn_id", "#route_seq", "raw", "raw_delivered")},
	{TypeSession, "session_events", cols("#ts_ms", "ts_utc", "event", "account", "resource", "#conn_id",
		"client_addr", "tls_version", "sasl_mechanism", "#started_ms", "#duration_ms")},
	{TypeLink, "link_events", cols("#ts_ms", "ts_utc", "event", "zone", "network", "#conn_id", "peer_addr", "#since_ms", "reason")},
	{TypeFile, "file_transfers", cols("#ts_ms", "ts_utc", "direction", "zone", "network", "account", "peer", "peer_jid",
		"file_name", "#size_bytes", "media_type", "sha256", "url", "scan_result", "verdict", "rule", "policy_version", "#stanza_seq")},
	{TypePolicy, "policy_actions", cols("#ts_ms", "ts_utc", "action", "rule", "policy_version", "account", "peer",
		"network", "#stanza_seq", "detail")},
	{TypeAdmin, "admin_actions", cols("#ts_ms", "ts_utc", "actor", "origin", "action", "target", "detail")},
	{TypeCheckpoint, "checkpoints", cols("#ts_ms", "ts_utc", "actor", "#before_ms", "#rows_pruned", "#ranges", "ranges_sha256")},
}

func tableOf(t RecordType) *tableDef {
	for _, d := range tables {
		if d.typ == t {
			return d
		}
	}
	return nil
}

// insertSQL is the INSERT for a chained table's detail row.
func (d *tableDef) insertSQL() string {
	q := "INSERT INTO " + d.name + " (seq"
	for _, c := range d.cols {
		q += ", " + c.name
	}
	q += ") VALUES (?"
	for range d.cols {
		q += ", ?"
	}
	return q + ")"
}

// selectSQL reads seq and the canonical columns, in seq order.
func (d *tableDef) selectSQL(where string) string {
	q := "SELECT seq"
	for _, c := range d.cols {
		q += ", " + c.name
	}
	q += " FROM " + d.name
	if where != "" {
		q += " WHERE " + where
	}
	return q + " ORDER BY seq"
}

// migrate brings the schema up to date inside one IMMEDIATE transaction, so
// two processes opening a new archive at once cannot both create it.
func migrate(ctx context.Context, w *sql.DB, now func() time.Time) error {
	tx, err := w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("archive: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER NOT NULL PRIMARY KEY, applied_ms INTEGER NOT NULL)`); err != nil {
		return fmt.Errorf("archive: migrate: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("archive: migrate: %w", err)
	}
	if cur > len(migrations) {
		return fmt.Errorf("%w (archive %d, build %d)", ErrSchemaVersion, cur, len(migrations))
	}
	for v := cur + 1; v <= len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("archive: migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_ms) VALUES (?, strftime('%s','now') * 1000)`, v); err != nil {
			return fmt.Errorf("archive: migration %d: %w", v, err)
		}
	}
	if cur == 0 {
		// The archive id ties anchor lines to this archive, so an anchor
		// file cannot be checked against (or pass for) another archive.
		var id [16]byte
		if _, err := rand.Read(id[:]); err != nil {
			return fmt.Errorf("archive: archive id: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO archive_info (key, value) VALUES ('archive_id', ?), ('created_ms', ?)`,
			hex.EncodeToString(id[:]), strconv.FormatInt(now().UnixMilli(), 10)); err != nil {
			return fmt.Errorf("archive: migrate: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("archive: migrate: %w", err)
	}
	return nil
}
