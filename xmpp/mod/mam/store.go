package mam

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Store errors. Returned errors wrap these; test with errors.Is.
var (
	// ErrNotFound: an archive id named in a query is not in the archive.
	ErrNotFound = errors.New("mam: archive id not found")
	// ErrSchemaVersion: the file was written by a newer build.
	ErrSchemaVersion = errors.New("mam: archive schema is newer than this build")
	// ErrInvalid: an argument the store cannot hold.
	ErrInvalid = errors.New("mam: invalid argument")
)

// busyTimeoutMS is how long a connection waits for a lock held by another
// connection before giving up with SQLITE_BUSY.
const busyTimeoutMS = 5000

// pruneBatch is how many rows one retention transaction deletes, so the
// single writer is never held for long while a big backlog expires.
const pruneBatch = 5000

// idBytes is the entropy of an archive id: XEP-0313 §3 wants ids
// unpredictable, and 96 random bits never repeat in practice (the unique
// index catches the case that would).
const idBytes = 12

// migrations is the schema history of the archive file; entry i brings it
// to version i+1. Never edit a shipped entry; append.
//
// Rows are ordered by (ts, id): ts is the millisecond the server archived
// the message and never decreases (the module clamps it), id is the rowid,
// so the order is the order of archiving even for equal stamps.
// Every index ends, implicitly, in the rowid, so (username, ts) is really
// (username, ts, id) and serves ORDER BY ts, id and keyset paging on
// (ts, id) without a sort.
var migrations = [...]string{
	// 1: initial schema.
	`
CREATE TABLE archive (
	id        INTEGER PRIMARY KEY,
	username  TEXT    NOT NULL,
	stanza_id TEXT    NOT NULL,
	ts        INTEGER NOT NULL,
	peer      TEXT    NOT NULL,
	peer_res  TEXT    NOT NULL DEFAULT '',
	xml       BLOB    NOT NULL
);
CREATE INDEX archive_user_ts ON archive (username, ts);
CREATE INDEX archive_user_peer_ts ON archive (username, peer, ts);
CREATE UNIQUE INDEX archive_user_sid ON archive (username, stanza_id);
-- Retention deletes by age across all users; without this index every
-- prune would scan the whole table.
CREATE INDEX archive_ts ON archive (ts);

CREATE TABLE prefs (
	username TEXT NOT NULL PRIMARY KEY,
	dflt     TEXT NOT NULL CHECK (dflt IN ('always', 'roster', 'never'))
) WITHOUT ROWID;

CREATE TABLE prefs_jids (
	username TEXT    NOT NULL REFERENCES prefs(username) ON DELETE CASCADE,
	jid      TEXT    NOT NULL CHECK (jid <> ''),
	always   INTEGER NOT NULL,
	PRIMARY KEY (username, jid)
) WITHOUT ROWID;
`,
}

// SchemaVersion is the schema version this build migrates archives to.
const SchemaVersion = len(migrations)

// Entry is a message to archive.
type Entry struct {
	User    string    // archive owner: the account's localpart
	Time    time.Time // when the server archived it (stored to the millisecond)
	Peer    string    // bare JID of the other party ("with")
	PeerRes string    // the other party's resource, if any
	XML     []byte    // the message as archived
}

// Item is an archived message.
type Item struct {
	ID   string // archive id (XEP-0359 stanza-id)
	Time time.Time
	XML  []byte
}

// Filter selects the result set of a query (XEP-0313 §4.1). Zero values
// filter nothing.
type Filter struct {
	With     string    // bare JID of the peer
	WithRes  string    // with a resource: only that full JID
	Start    time.Time // inclusive
	End      time.Time // inclusive
	AfterID  string    // form field after-id (exclusive)
	BeforeID string    // form field before-id (exclusive)
	IDs      []string  // form field ids
}

// Page selects a page of the result set (XEP-0059).
type Page struct {
	Max      int    // page size; 0 asks only for the count
	After    string // RSM <after/>: items after this id
	Before   string // RSM <before>id</before>: the last Max items before it
	Backward bool   // RSM <before/> present (with or without an id)
}

// Result is one page.
type Result struct {
	Items    []Item // in archive (chronological) order
	Complete bool   // no further items in the paging direction
	Count    int    // size of the whole result set
}

// Store is a user message archive in its own SQLite file: WAL, one writer
// connection, a pool of readers. It is safe for concurrent use.
type Store struct {
	w, r *sql.DB
	rand io.Reader

	insert, position, metaFirst, metaLast *sql.Stmt

	mu    sync.Mutex
	shape map[string]*sql.Stmt // prepared query shapes, at most 2^8 of them

	// Group commit (writer.go): appends go through one writer goroutine.
	queue        chan writeReq
	writerDone   chan struct{}
	qmu          sync.RWMutex // guards closed against sends on a closed queue
	closed       bool
	onAsyncError func(Entry, error)

	closeOnce sync.Once
	closeErr  error
}

// OpenStore opens or creates the archive at path (mode 0600: it holds
// private conversations) and applies pending migrations. random supplies
// archive ids; nil means crypto/rand.
func OpenStore(ctx context.Context, path string, random io.Reader) (*Store, error) {
	if path == "" {
		return nil, fmt.Errorf("mam: open: empty path: %w", ErrInvalid)
	}
	if random == nil {
		random = rand.Reader
	}
	if err := prepareFile(path); err != nil {
		return nil, err
	}
	base := "file:" + strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(path)
	common := fmt.Sprintf("_foreign_keys=1&_busy_timeout=%d&_synchronous=NORMAL", busyTimeoutMS)
	w, err := sql.Open("sqlite3", base+"?mode=rw&_txlock=immediate&_journal_mode=WAL&_secure_delete=FAST&"+common)
	if err != nil {
		return nil, fmt.Errorf("mam: open writer: %w", err)
	}
	w.SetMaxOpenConns(1)
	w.SetMaxIdleConns(1)
	w.SetConnMaxLifetime(0)
	w.SetConnMaxIdleTime(0)
	s := &Store{w: w, rand: random, shape: make(map[string]*sql.Stmt)}
	fail := func(err error) (*Store, error) {
		s.closeStmts()
		if s.r != nil {
			_ = s.r.Close()
		}
		_ = w.Close()
		return nil, err
	}
	var mode string
	if err := w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail(fmt.Errorf("mam: open: %w", err))
	}
	if !strings.EqualFold(mode, "wal") {
		return fail(fmt.Errorf("mam: open: journal mode is %q, want wal", mode))
	}
	// Checkpoints fsync the database file; with the default of every 1000
	// pages they, not the inserts, would bound the archiving rate.
	if _, err := w.ExecContext(ctx, "PRAGMA wal_autocheckpoint = 16384"); err != nil {
		return fail(fmt.Errorf("mam: open: %w", err))
	}
	if err := migrate(ctx, w); err != nil {
		return fail(err)
	}
	// Readers are opened after the writer switched the file to WAL.
	r, err := sql.Open("sqlite3", base+"?mode=rw&_query_only=1&"+common)
	if err != nil {
		return fail(fmt.Errorf("mam: open readers: %w", err))
	}
	s.r = r
	n := max(4, runtime.GOMAXPROCS(0))
	r.SetMaxOpenConns(n)
	r.SetMaxIdleConns(n)
	prep := func(db *sql.DB, q string) (*sql.Stmt, error) {
		st, err := db.PrepareContext(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("mam: prepare %q: %w", q, err)
		}
		return st, nil
	}
	if s.insert, err = prep(w, `INSERT INTO archive (username, stanza_id, ts, peer, peer_res, xml) VALUES (?, ?, ?, ?, ?, ?)`); err != nil {
		return fail(err)
	}
	if s.position, err = prep(r, `SELECT ts, id FROM archive WHERE username = ? AND stanza_id = ?`); err != nil {
		return fail(err)
	}
	if s.metaFirst, err = prep(r, `SELECT stanza_id, ts FROM archive WHERE username = ? ORDER BY ts, id LIMIT 1`); err != nil {
		return fail(err)
	}
	if s.metaLast, err = prep(r, `SELECT stanza_id, ts FROM archive WHERE username = ? ORDER BY ts DESC, id DESC LIMIT 1`); err != nil {
		return fail(err)
	}
	s.startWriter()
	return s, nil
}

// Close closes the archive; later calls return the first call's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.stopWriter()
		s.closeStmts()
		if err := errors.Join(s.r.Close(), s.w.Close()); err != nil {
			s.closeErr = fmt.Errorf("mam: close: %w", err)
		}
	})
	return s.closeErr
}

func (s *Store) closeStmts() {
	for _, st := range []*sql.Stmt{s.insert, s.position, s.metaFirst, s.metaLast} {
		if st != nil {
			_ = st.Close()
		}
	}
	s.mu.Lock()
	for k, st := range s.shape {
		_ = st.Close()
		delete(s.shape, k)
	}
	s.mu.Unlock()
}

// prepareFile creates the file with mode 0600 and tightens an existing
// file and its WAL sidecars.
func prepareFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("mam: open: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("mam: open: %w", err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm", path + "-journal"} {
		fi, err := os.Stat(p)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("mam: open: %w", err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			if err := os.Chmod(p, 0o600); err != nil {
				return fmt.Errorf("mam: open: tighten permissions: %w", err)
			}
		}
	}
	return nil
}

// migrate applies pending migrations in one transaction. The version table
// has a name of its own so that the file can never be mistaken for the
// main database (which has schema_migrations).
func migrate(ctx context.Context, w *sql.DB) error {
	err := func() error {
		tx, err := w.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		if _, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS mam_migrations (version INTEGER NOT NULL PRIMARY KEY)`); err != nil {
			return err
		}
		var cur int
		if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM mam_migrations`).Scan(&cur); err != nil {
			return err
		}
		if cur > len(migrations) {
			return fmt.Errorf("%w (archive %d, build %d)", ErrSchemaVersion, cur, len(migrations))
		}
		for v := cur + 1; v <= len(migrations); v++ {
			if _, err := tx.ExecContext(ctx, migrations[v-1]); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO mam_migrations (version) VALUES (?)`, v); err != nil {
				return fmt.Errorf("migration %d: %w", v, err)
			}
		}
		return tx.Commit()
	}()
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrSchemaVersion):
		return err
	}
	return fmt.Errorf("mam: migrate: %w", err)
}

func (s *Store) newID() (string, error) {
	var b [idBytes]byte
	if _, err := io.ReadFull(s.rand, b[:]); err != nil {
		return "", fmt.Errorf("mam: archive id: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// pos is a row's place in archive order.
type pos struct{ ts, id int64 }

func (p pos) less(q pos) bool { return p.ts < q.ts || p.ts == q.ts && p.id < q.id }

// Query returns one page of user's archive. Ids named in the filter or the
// page that are not in the archive give ErrNotFound.
func (s *Store) Query(ctx context.Context, user string, f Filter, p Page) (Result, error) {
	var res Result
	// Read your writes: what the user sent before asking is in the answer.
	if err := s.Sync(ctx); err != nil {
		return res, err
	}
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return res, fmt.Errorf("mam: query for %q: %w", user, err)
	}
	// One snapshot: the positions looked up stay valid for the page query.
	defer func() { _ = tx.Rollback() }()
	res, err = s.query(ctx, tx, user, f, p)
	if err != nil {
		return Result{}, fmt.Errorf("mam: query for %q: %w", user, err)
	}
	return res, nil
}

func (s *Store) query(ctx context.Context, tx *sql.Tx, user string, f Filter, p Page) (Result, error) {
	var (
		res          Result
		lower, upper *pos // filter bounds (form after-id, before-id)
	)
	lookup := func(id string) (*pos, error) {
		var q pos
		err := tx.StmtContext(ctx, s.position).QueryRowContext(ctx, user, id).Scan(&q.ts, &q.id)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
		}
		if err != nil {
			return nil, err
		}
		return &q, nil
	}
	var err error
	if f.AfterID != "" {
		if lower, err = lookup(f.AfterID); err != nil {
			return res, err
		}
	}
	if f.BeforeID != "" {
		if upper, err = lookup(f.BeforeID); err != nil {
			return res, err
		}
	}
	var idsJSON string
	if len(f.IDs) > 0 {
		b, err := json.Marshal(f.IDs)
		if err != nil {
			return res, err
		}
		idsJSON = string(b)
		// XEP-0313 §4.1.3: every requested id must exist.
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM archive INDEXED BY archive_user_sid
			WHERE username = ? AND stanza_id IN (SELECT value FROM json_each(?))`, user, idsJSON).Scan(&n); err != nil {
			return res, err
		}
		if n < countDistinct(f.IDs) {
			return res, fmt.Errorf("%w: one of the requested ids", ErrNotFound)
		}
	}
	// Every id is checked before any counting, so a bad one costs little.
	var pageLower, pageUpper *pos
	if p.After != "" {
		if pageLower, err = lookup(p.After); err != nil {
			return res, err
		}
	}
	if p.Before != "" {
		if pageUpper, err = lookup(p.Before); err != nil {
			return res, err
		}
	}
	cond := condition{user: user, f: f, idsJSON: idsJSON, lower: lower, upper: upper}
	// The count covers the whole result set (XEP-0059 <count/>): the
	// filter without the page bounds.
	count, err := s.stmt(ctx, tx, cond, "count")
	if err != nil {
		return res, err
	}
	if err := count.QueryRowContext(ctx, cond.args()...).Scan(&res.Count); err != nil {
		return res, err
	}
	// Page bounds narrow the filter bounds.
	if pageLower != nil && (cond.lower == nil || cond.lower.less(*pageLower)) {
		cond.lower = pageLower
	}
	if pageUpper != nil && (cond.upper == nil || pageUpper.less(*cond.upper)) {
		cond.upper = pageUpper
	}
	kind := "asc"
	if p.Backward {
		kind = "desc"
	}
	// One row more than the page tells whether the page is the last one.
	page, err := s.stmt(ctx, tx, cond, kind)
	if err != nil {
		return res, err
	}
	rows, err := page.QueryContext(ctx, append(cond.args(), p.Max+1)...)
	if err != nil {
		return res, err
	}
	defer rows.Close()
	for rows.Next() {
		var (
			it Item
			ms int64
		)
		if err := rows.Scan(&it.ID, &ms, &it.XML); err != nil {
			return res, err
		}
		it.Time = time.UnixMilli(ms).UTC()
		res.Items = append(res.Items, it)
	}
	if err := rows.Err(); err != nil {
		return res, err
	}
	res.Complete = len(res.Items) <= p.Max
	if !res.Complete {
		res.Items = res.Items[:p.Max]
	}
	if p.Backward {
		for i, j := 0, len(res.Items)-1; i < j; i, j = i+1, j-1 {
			res.Items[i], res.Items[j] = res.Items[j], res.Items[i]
		}
	}
	return res, nil
}

func countDistinct(ids []string) int {
	seen := make(map[string]struct{}, len(ids))
	for _, id := range ids {
		seen[id] = struct{}{}
	}
	return len(seen)
}

// condition is the WHERE clause of a query. Its shape (which parts are
// present) decides the SQL text, so statements can be prepared once per
// shape; the values go in as arguments.
type condition struct {
	user         string
	f            Filter
	idsJSON      string
	lower, upper *pos
}

func (c condition) shape(kind string) string {
	var b strings.Builder
	b.WriteString(kind)
	for _, on := range []bool{c.f.With != "", c.f.WithRes != "", !c.f.Start.IsZero(), !c.f.End.IsZero(), c.lower != nil, c.upper != nil, c.idsJSON != ""} {
		if on {
			b.WriteByte('1')
		} else {
			b.WriteByte('0')
		}
	}
	return b.String()
}

func (c condition) sql(kind string) string {
	var b strings.Builder
	switch kind {
	case "count":
		b.WriteString("SELECT count(*) FROM archive")
	default:
		b.WriteString("SELECT stanza_id, ts, xml FROM archive")
	}
	if c.idsJSON != "" {
		// Without the hint the planner walks (username, ts) to save a
		// sort, reading the user's whole archive to find a few ids.
		b.WriteString(" INDEXED BY archive_user_sid")
	}
	b.WriteString(" WHERE username = ?")
	if c.f.With != "" {
		b.WriteString(" AND peer = ?")
	}
	if c.f.WithRes != "" {
		b.WriteString(" AND peer_res = ?")
	}
	if !c.f.Start.IsZero() {
		b.WriteString(" AND ts >= ?")
	}
	if !c.f.End.IsZero() {
		b.WriteString(" AND ts <= ?")
	}
	if c.lower != nil {
		b.WriteString(" AND (ts, id) > (?, ?)")
	}
	if c.upper != nil {
		b.WriteString(" AND (ts, id) < (?, ?)")
	}
	if c.idsJSON != "" {
		b.WriteString(" AND stanza_id IN (SELECT value FROM json_each(?))")
	}
	switch kind {
	case "asc":
		b.WriteString(" ORDER BY ts, id LIMIT ?")
	case "desc":
		b.WriteString(" ORDER BY ts DESC, id DESC LIMIT ?")
	}
	return b.String()
}

func (c condition) args() []any {
	a := []any{c.user}
	if c.f.With != "" {
		a = append(a, c.f.With)
	}
	if c.f.WithRes != "" {
		a = append(a, c.f.WithRes)
	}
	if !c.f.Start.IsZero() {
		a = append(a, c.f.Start.UnixMilli())
	}
	if !c.f.End.IsZero() {
		a = append(a, c.f.End.UnixMilli())
	}
	if c.lower != nil {
		a = append(a, c.lower.ts, c.lower.id)
	}
	if c.upper != nil {
		a = append(a, c.upper.ts, c.upper.id)
	}
	if c.idsJSON != "" {
		a = append(a, c.idsJSON)
	}
	return a
}

// stmt returns the prepared statement for the shape of c in tx. Shapes
// are few (two kinds of query times seven optional clauses), so each is
// prepared once and kept.
func (s *Store) stmt(ctx context.Context, tx *sql.Tx, c condition, kind string) (*sql.Stmt, error) {
	key := c.shape(kind)
	s.mu.Lock()
	st := s.shape[key]
	if st == nil {
		var err error
		st, err = s.r.PrepareContext(ctx, c.sql(kind))
		if err != nil {
			s.mu.Unlock()
			return nil, fmt.Errorf("prepare %s: %w", key, err)
		}
		s.shape[key] = st
	}
	s.mu.Unlock()
	return tx.StmtContext(ctx, st), nil
}

// Bounds reports the first and last item of user's archive (without XML);
// ok is false when the archive is empty.
func (s *Store) Bounds(ctx context.Context, user string) (first, last Item, ok bool, err error) {
	if err := s.Sync(ctx); err != nil {
		return Item{}, Item{}, false, err
	}
	scan := func(st *sql.Stmt) (Item, error) {
		var (
			it Item
			ms int64
		)
		err := st.QueryRowContext(ctx, user).Scan(&it.ID, &ms)
		it.Time = time.UnixMilli(ms).UTC()
		return it, err
	}
	first, err = scan(s.metaFirst)
	if errors.Is(err, sql.ErrNoRows) {
		return Item{}, Item{}, false, nil
	}
	if err == nil {
		last, err = scan(s.metaLast)
	}
	if err != nil {
		return Item{}, Item{}, false, fmt.Errorf("mam: archive bounds of %q: %w", user, err)
	}
	return first, last, true, nil
}

// LastTime returns the newest stamp in the whole archive (zero when it is
// empty), so a restarted server can keep stamps from going backwards.
func (s *Store) LastTime(ctx context.Context) (time.Time, error) {
	var ms sql.NullInt64
	if err := s.r.QueryRowContext(ctx, `SELECT max(ts) FROM archive`).Scan(&ms); err != nil {
		return time.Time{}, fmt.Errorf("mam: last stamp: %w", err)
	}
	if !ms.Valid {
		return time.Time{}, nil
	}
	return time.UnixMilli(ms.Int64).UTC(), nil
}

// Prune deletes every message archived before cutoff, in batches so that
// archiving is never stalled for long, and returns how many went.
func (s *Store) Prune(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for {
		r, err := s.w.ExecContext(ctx, `DELETE FROM archive WHERE id IN
			(SELECT id FROM archive WHERE ts < ? ORDER BY ts LIMIT ?)`, cutoff.UnixMilli(), pruneBatch)
		if err != nil {
			return total, fmt.Errorf("mam: prune: %w", err)
		}
		n, err := r.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("mam: prune: %w", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

// DeleteUser removes user's archive and preferences (account deletion).
func (s *Store) DeleteUser(ctx context.Context, user string) error {
	// Queued messages of the user are committed first, then deleted.
	if err := s.Sync(ctx); err != nil {
		return err
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mam: delete %q: %w", user, err)
	}
	defer func() { _ = tx.Rollback() }()
	for _, q := range []string{`DELETE FROM archive WHERE username = ?`, `DELETE FROM prefs WHERE username = ?`} {
		if _, err := tx.ExecContext(ctx, q, user); err != nil {
			return fmt.Errorf("mam: delete %q: %w", user, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("mam: delete %q: %w", user, err)
	}
	return nil
}

// Prefs returns user's stored preferences; ok is false when the user never
// set any.
func (s *Store) Prefs(ctx context.Context, user string) (p Prefs, ok bool, err error) {
	tx, err := s.r.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return p, false, fmt.Errorf("mam: prefs of %q: %w", user, err)
	}
	defer func() { _ = tx.Rollback() }()
	err = tx.QueryRowContext(ctx, `SELECT dflt FROM prefs WHERE username = ?`, user).Scan(&p.Default)
	if errors.Is(err, sql.ErrNoRows) {
		return Prefs{}, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("mam: prefs of %q: %w", user, err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT jid, always FROM prefs_jids WHERE username = ? ORDER BY jid`, user)
	if err != nil {
		return p, false, fmt.Errorf("mam: prefs of %q: %w", user, err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			j      string
			always bool
		)
		if err := rows.Scan(&j, &always); err != nil {
			return p, false, fmt.Errorf("mam: prefs of %q: %w", user, err)
		}
		if always {
			p.Always = append(p.Always, j)
		} else {
			p.Never = append(p.Never, j)
		}
	}
	if err := rows.Err(); err != nil {
		return p, false, fmt.Errorf("mam: prefs of %q: %w", user, err)
	}
	return p, true, nil
}

// SetPrefs replaces user's preferences. A JID in both lists is stored as
// never.
func (s *Store) SetPrefs(ctx context.Context, user string, p Prefs) error {
	switch p.Default {
	case DefaultAlways, DefaultRoster, DefaultNever:
	default:
		return fmt.Errorf("mam: set prefs of %q: default %q: %w", user, p.Default, ErrInvalid)
	}
	if user == "" {
		return fmt.Errorf("mam: set prefs: empty user: %w", ErrInvalid)
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mam: set prefs of %q: %w", user, err)
	}
	defer func() { _ = tx.Rollback() }()
	err = func() error {
		if _, err := tx.ExecContext(ctx, `DELETE FROM prefs WHERE username = ?`, user); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `INSERT INTO prefs (username, dflt) VALUES (?, ?)`, user, p.Default); err != nil {
			return err
		}
		ins, err := tx.PrepareContext(ctx, `INSERT INTO prefs_jids (username, jid, always) VALUES (?, ?, ?)
			ON CONFLICT (username, jid) DO UPDATE SET always = always AND excluded.always`)
		if err != nil {
			return err
		}
		defer ins.Close()
		for _, l := range []struct {
			jids   []string
			always bool
		}{{p.Always, true}, {p.Never, false}} {
			for _, j := range l.jids {
				if _, err := ins.ExecContext(ctx, user, j, l.always); err != nil {
					return err
				}
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		return fmt.Errorf("mam: set prefs of %q: %w", user, err)
	}
	return nil
}
