package pubsub

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	_ "github.com/mattn/go-sqlite3" // database/sql driver "sqlite3"
)

// Store errors; returned errors wrap them.
var (
	// ErrNoNode: the node does not exist.
	ErrNoNode = errors.New("pubsub: no such node")
	// ErrNodeExists: create of a node that exists.
	ErrNodeExists = errors.New("pubsub: node exists")
	// ErrSchemaVersion: the file was written by a newer build.
	ErrSchemaVersion = errors.New("pubsub: database schema is newer than this build")
)

// migrations is the schema history; entry i brings the file to version
// i+1. Never edit a shipped entry; append.
//
// service is the owning account's bare JID for PEP nodes and the service
// domain for nodes on the pubsub service. Items are ordered by seq (the
// rowid of their last publication): a re-published id moves to the end.
var migrations = [...]string{
	`
CREATE TABLE nodes (
	service TEXT NOT NULL,
	node    TEXT NOT NULL,
	owner   TEXT NOT NULL,
	config  TEXT NOT NULL,
	PRIMARY KEY (service, node)
) WITHOUT ROWID;
CREATE INDEX nodes_owner ON nodes (owner, service);

CREATE TABLE items (
	seq       INTEGER PRIMARY KEY,
	service   TEXT NOT NULL,
	node      TEXT NOT NULL,
	item_id   TEXT NOT NULL,
	publisher TEXT NOT NULL,
	xml       BLOB NOT NULL,
	FOREIGN KEY (service, node) REFERENCES nodes (service, node) ON DELETE CASCADE
);
CREATE UNIQUE INDEX items_id ON items (service, node, item_id);
CREATE INDEX items_seq ON items (service, node, seq);

CREATE TABLE affiliations (
	service     TEXT NOT NULL,
	node        TEXT NOT NULL,
	jid         TEXT NOT NULL,
	affiliation TEXT NOT NULL,
	PRIMARY KEY (service, node, jid),
	FOREIGN KEY (service, node) REFERENCES nodes (service, node) ON DELETE CASCADE
) WITHOUT ROWID;

CREATE TABLE subscriptions (
	service TEXT NOT NULL,
	node    TEXT NOT NULL,
	jid     TEXT NOT NULL,
	subid   TEXT NOT NULL,
	PRIMARY KEY (service, node, jid),
	FOREIGN KEY (service, node) REFERENCES nodes (service, node) ON DELETE CASCADE
) WITHOUT ROWID;
`,
}

// Store keeps nodes, items, affiliations and subscriptions in a SQLite
// file of its own. It is safe for concurrent use (one connection: the
// traffic is small and every write is short).
type Store struct {
	db *sql.DB
}

// Node is a stored node.
type Node struct {
	Service string
	Name    string
	Owner   string // bare JID
	Config  Config
}

// Item is a stored item.
type Item struct {
	ID        string
	Publisher string
	XML       []byte // the payload element, serialized
}

// OpenStore opens or creates the database at path (mode 0600).
func OpenStore(ctx context.Context, path string) (*Store, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("pubsub: open: %w", err)
	}
	_ = f.Close()
	dsn := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path) +
		"?mode=rw&_txlock=immediate&_journal_mode=WAL&_foreign_keys=1&_busy_timeout=5000&_synchronous=NORMAL"
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return nil, fmt.Errorf("pubsub: open: %w", err)
	}
	db.SetMaxOpenConns(1)
	db.SetConnMaxIdleTime(0)
	db.SetConnMaxLifetime(0)
	if err := migrate(ctx, db); err != nil {
		_ = db.Close()
		return nil, err
	}
	return &Store{db: db}, nil
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pubsub: migrate: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS pubsub_migrations (version INTEGER NOT NULL PRIMARY KEY)`); err != nil {
		return fmt.Errorf("pubsub: migrate: %w", err)
	}
	var cur int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM pubsub_migrations`).Scan(&cur); err != nil {
		return fmt.Errorf("pubsub: migrate: %w", err)
	}
	if cur > len(migrations) {
		return fmt.Errorf("%w (file %d, build %d)", ErrSchemaVersion, cur, len(migrations))
	}
	for v := cur + 1; v <= len(migrations); v++ {
		if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
			return fmt.Errorf("pubsub: migration %d: %w", v, err)
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO pubsub_migrations (version) VALUES (?)`, v); err != nil {
			return fmt.Errorf("pubsub: migration %d: %w", v, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("pubsub: migrate: %w", err)
	}
	return nil
}

// Node returns a node.
func (s *Store) Node(ctx context.Context, service, node string) (Node, error) {
	n := Node{Service: service, Name: node}
	var cfg string
	err := s.db.QueryRowContext(ctx, `SELECT owner, config FROM nodes WHERE service = ? AND node = ?`, service, node).Scan(&n.Owner, &cfg)
	if errors.Is(err, sql.ErrNoRows) {
		return n, fmt.Errorf("%w: %s %s", ErrNoNode, service, node)
	}
	if err != nil {
		return n, fmt.Errorf("pubsub: node: %w", err)
	}
	if err := json.Unmarshal([]byte(cfg), &n.Config); err != nil {
		return n, fmt.Errorf("pubsub: node %s %s: config: %w", service, node, err)
	}
	return n, nil
}

// Nodes lists the nodes of a service.
func (s *Store) Nodes(ctx context.Context, service string) ([]Node, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT node, owner, config FROM nodes WHERE service = ? ORDER BY node`, service)
	if err != nil {
		return nil, fmt.Errorf("pubsub: nodes: %w", err)
	}
	defer rows.Close()
	var out []Node
	for rows.Next() {
		n := Node{Service: service}
		var cfg string
		if err := rows.Scan(&n.Name, &n.Owner, &cfg); err != nil {
			return nil, fmt.Errorf("pubsub: nodes: %w", err)
		}
		if err := json.Unmarshal([]byte(cfg), &n.Config); err != nil {
			return nil, fmt.Errorf("pubsub: node %s %s: config: %w", service, n.Name, err)
		}
		out = append(out, n)
	}
	return out, rows.Err()
}

// CountOwned counts the nodes owner has on service.
func (s *Store) CountOwned(ctx context.Context, service, owner string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT count(*) FROM nodes WHERE owner = ? AND service = ?`, owner, service).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("pubsub: count nodes: %w", err)
	}
	return n, nil
}

// CreateNode creates a node; ErrNodeExists if it exists.
func (s *Store) CreateNode(ctx context.Context, n Node) error {
	cfg, err := json.Marshal(n.Config)
	if err != nil {
		return fmt.Errorf("pubsub: create: %w", err)
	}
	res, err := s.db.ExecContext(ctx, `INSERT INTO nodes (service, node, owner, config) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`,
		n.Service, n.Name, n.Owner, string(cfg))
	if err != nil {
		return fmt.Errorf("pubsub: create: %w", err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("%w: %s %s", ErrNodeExists, n.Service, n.Name)
	}
	return nil
}

// Configure replaces a node's configuration and trims its items to the
// new max_items.
func (s *Store) Configure(ctx context.Context, service, node string, c Config) error {
	cfg, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("pubsub: configure: %w", err)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pubsub: configure: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	res, err := tx.ExecContext(ctx, `UPDATE nodes SET config = ? WHERE service = ? AND node = ?`, string(cfg), service, node)
	if err != nil {
		return fmt.Errorf("pubsub: configure: %w", err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return fmt.Errorf("%w: %s %s", ErrNoNode, service, node)
	}
	if err := trim(ctx, tx, service, node, c.MaxItems); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("pubsub: configure: %w", err)
	}
	return nil
}

func trim(ctx context.Context, tx *sql.Tx, service, node string, keep int) error {
	_, err := tx.ExecContext(ctx, `DELETE FROM items WHERE service = ? AND node = ? AND seq NOT IN
		(SELECT seq FROM items WHERE service = ? AND node = ? ORDER BY seq DESC LIMIT ?)`,
		service, node, service, node, keep)
	if err != nil {
		return fmt.Errorf("pubsub: trim: %w", err)
	}
	return nil
}

// DeleteNode deletes a node with its items, affiliations and
// subscriptions, and returns the subscribers it had.
func (s *Store) DeleteNode(ctx context.Context, service, node string) ([]string, error) {
	subs, err := s.Subscribers(ctx, service, node)
	if err != nil {
		return nil, err
	}
	res, err := s.db.ExecContext(ctx, `DELETE FROM nodes WHERE service = ? AND node = ?`, service, node)
	if err != nil {
		return nil, fmt.Errorf("pubsub: delete: %w", err)
	}
	if k, _ := res.RowsAffected(); k == 0 {
		return nil, fmt.Errorf("%w: %s %s", ErrNoNode, service, node)
	}
	return subs, nil
}

// Publish stores an item (replacing one with the same id, which moves to
// the end) and trims the node to keep items.
func (s *Store) Publish(ctx context.Context, service, node string, it Item, keep int) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pubsub: publish: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, `DELETE FROM items WHERE service = ? AND node = ? AND item_id = ?`, service, node, it.ID); err != nil {
		return fmt.Errorf("pubsub: publish: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO items (service, node, item_id, publisher, xml) VALUES (?, ?, ?, ?, ?)`,
		service, node, it.ID, it.Publisher, it.XML); err != nil {
		return fmt.Errorf("pubsub: publish: %w", err)
	}
	if err := trim(ctx, tx, service, node, keep); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("pubsub: publish: %w", err)
	}
	return nil
}

// Retract deletes an item and reports whether it existed.
func (s *Store) Retract(ctx context.Context, service, node, id string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM items WHERE service = ? AND node = ? AND item_id = ?`, service, node, id)
	if err != nil {
		return false, fmt.Errorf("pubsub: retract: %w", err)
	}
	k, _ := res.RowsAffected()
	return k > 0, nil
}

// Purge deletes every item of a node.
func (s *Store) Purge(ctx context.Context, service, node string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM items WHERE service = ? AND node = ?`, service, node); err != nil {
		return fmt.Errorf("pubsub: purge: %w", err)
	}
	return nil
}

// Items returns the newest max items (0: all) in publication order, or
// only those with the given ids.
func (s *Store) Items(ctx context.Context, service, node string, max int, ids []string) ([]Item, error) {
	var rows *sql.Rows
	var err error
	switch {
	case len(ids) > 0:
		q := `SELECT item_id, publisher, xml FROM items WHERE service = ? AND node = ? AND item_id IN (?` +
			strings.Repeat(",?", len(ids)-1) + `) ORDER BY seq`
		args := []any{service, node}
		for _, id := range ids {
			args = append(args, id)
		}
		rows, err = s.db.QueryContext(ctx, q, args...)
	case max > 0:
		rows, err = s.db.QueryContext(ctx, `SELECT item_id, publisher, xml FROM
			(SELECT seq, item_id, publisher, xml FROM items WHERE service = ? AND node = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq`,
			service, node, max)
	default:
		rows, err = s.db.QueryContext(ctx, `SELECT item_id, publisher, xml FROM items WHERE service = ? AND node = ? ORDER BY seq`, service, node)
	}
	if err != nil {
		return nil, fmt.Errorf("pubsub: items: %w", err)
	}
	defer rows.Close()
	var out []Item
	for rows.Next() {
		var it Item
		if err := rows.Scan(&it.ID, &it.Publisher, &it.XML); err != nil {
			return nil, fmt.Errorf("pubsub: items: %w", err)
		}
		out = append(out, it)
	}
	return out, rows.Err()
}

// Affiliations returns the explicit affiliations of a node (jid →
// affiliation); the owner is implicit.
func (s *Store) Affiliations(ctx context.Context, service, node string) (map[string]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT jid, affiliation FROM affiliations WHERE service = ? AND node = ?`, service, node)
	if err != nil {
		return nil, fmt.Errorf("pubsub: affiliations: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var j, a string
		if err := rows.Scan(&j, &a); err != nil {
			return nil, fmt.Errorf("pubsub: affiliations: %w", err)
		}
		out[j] = a
	}
	return out, rows.Err()
}

// Affiliation returns one JID's explicit affiliation, or "none".
func (s *Store) Affiliation(ctx context.Context, service, node, j string) (string, error) {
	var a string
	err := s.db.QueryRowContext(ctx, `SELECT affiliation FROM affiliations WHERE service = ? AND node = ? AND jid = ?`, service, node, j).Scan(&a)
	if errors.Is(err, sql.ErrNoRows) {
		return AffNone, nil
	}
	if err != nil {
		return "", fmt.Errorf("pubsub: affiliation: %w", err)
	}
	return a, nil
}

// SetAffiliation sets (AffNone: removes) an affiliation.
func (s *Store) SetAffiliation(ctx context.Context, service, node, j, aff string) error {
	var err error
	if aff == AffNone {
		_, err = s.db.ExecContext(ctx, `DELETE FROM affiliations WHERE service = ? AND node = ? AND jid = ?`, service, node, j)
	} else {
		_, err = s.db.ExecContext(ctx, `INSERT INTO affiliations (service, node, jid, affiliation) VALUES (?, ?, ?, ?)
			ON CONFLICT (service, node, jid) DO UPDATE SET affiliation = excluded.affiliation`, service, node, j, aff)
	}
	if err != nil {
		return fmt.Errorf("pubsub: set affiliation: %w", err)
	}
	return nil
}

// Subscribers lists the JIDs subscribed to a node.
func (s *Store) Subscribers(ctx context.Context, service, node string) ([]string, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT jid FROM subscriptions WHERE service = ? AND node = ? ORDER BY jid`, service, node)
	if err != nil {
		return nil, fmt.Errorf("pubsub: subscribers: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var j string
		if err := rows.Scan(&j); err != nil {
			return nil, fmt.Errorf("pubsub: subscribers: %w", err)
		}
		out = append(out, j)
	}
	return out, rows.Err()
}

// Subscription is one subscription of a JID.
type Subscription struct {
	Node, JID, SubID string
}

// SubscriptionsOf lists the subscriptions on service whose JID is j or,
// when j is bare, any full JID of it.
func (s *Store) SubscriptionsOf(ctx context.Context, service, j string) ([]Subscription, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT node, jid, subid FROM subscriptions WHERE service = ? AND (jid = ? OR jid LIKE ? ESCAPE '\') ORDER BY node`,
		service, j, strings.NewReplacer(`\`, `\\`, "%", `\%`, "_", `\_`).Replace(j)+"/%")
	if err != nil {
		return nil, fmt.Errorf("pubsub: subscriptions: %w", err)
	}
	defer rows.Close()
	var out []Subscription
	for rows.Next() {
		var sub Subscription
		if err := rows.Scan(&sub.Node, &sub.JID, &sub.SubID); err != nil {
			return nil, fmt.Errorf("pubsub: subscriptions: %w", err)
		}
		out = append(out, sub)
	}
	return out, rows.Err()
}

// Subscribe adds (or keeps) a subscription and returns its subid.
func (s *Store) Subscribe(ctx context.Context, service, node, j, subid string) (string, error) {
	_, err := s.db.ExecContext(ctx, `INSERT INTO subscriptions (service, node, jid, subid) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`, service, node, j, subid)
	if err != nil {
		return "", fmt.Errorf("pubsub: subscribe: %w", err)
	}
	var id string
	if err := s.db.QueryRowContext(ctx, `SELECT subid FROM subscriptions WHERE service = ? AND node = ? AND jid = ?`, service, node, j).Scan(&id); err != nil {
		return "", fmt.Errorf("pubsub: subscribe: %w", err)
	}
	return id, nil
}

// Unsubscribe removes a subscription and reports whether it existed.
func (s *Store) Unsubscribe(ctx context.Context, service, node, j string) (bool, error) {
	res, err := s.db.ExecContext(ctx, `DELETE FROM subscriptions WHERE service = ? AND node = ? AND jid = ?`, service, node, j)
	if err != nil {
		return false, fmt.Errorf("pubsub: unsubscribe: %w", err)
	}
	k, _ := res.RowsAffected()
	return k > 0, nil
}
