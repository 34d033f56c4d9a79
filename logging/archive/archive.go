package archive

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"
	"github.com/sirupsen/logrus"
)

// Sentinel errors; returned errors wrap one of them (test with errors.Is).
var (
	// ErrUnavailable: the record was not committed (disk full, database
	// locked past the lock timeout, I/O error). Callers that must not
	// proceed without a record (the boundary) refuse the crossing.
	ErrUnavailable = errors.New("archive: record not committed")
	// ErrClosed: the archive is closed.
	ErrClosed = errors.New("archive: closed")
	// ErrInvalid: a record or argument the archive cannot hold.
	ErrInvalid = errors.New("archive: invalid record")
	// ErrSchemaVersion: the file was written by a newer Gatehouse.
	ErrSchemaVersion = errors.New("archive: archive schema is newer than this build")
	// ErrCorrupt: stored data that cannot be interpreted (bad hash text,
	// malformed anchor line).
	ErrCorrupt = errors.New("archive: corrupt data")
	// ErrTampered: the chain does not verify; Prune refuses to run.
	ErrTampered = errors.New("archive: chain does not verify")
	// ErrNoHold: no active legal hold with that id.
	ErrNoHold = errors.New("archive: no such active hold")
)

// Defaults for Options left zero.
const (
	DefaultAnchorInterval = time.Minute
	DefaultMaxBatch       = 1024
	DefaultMaxPending     = 16384
	DefaultLockTimeout    = 5 * time.Second
	// checkpointInterval is how often a WAL checkpoint is attempted off
	// the commit path (see checkpointer).
	checkpointInterval = time.Second
	// journalSizeLimit caps the WAL file kept on disk after a reset.
	journalSizeLimit = 64 << 20
	// ftsMaxLag is how many rows may wait for the full-text index while
	// the writer is busy (one large pass is much cheaper per row than
	// many small ones); ftsIdle how long the writer must have been idle
	// before it indexes fewer.
	ftsMaxLag = 4096
	ftsIdle   = 20 * time.Millisecond
)

// Options configure Open.
type Options struct {
	// Path is the archive database file. Its directory must exist.
	Path string
	// AnchorPath is the anchor file (chain heads, one JSON line each);
	// "" writes none, which leaves a truncated tail undetectable.
	AnchorPath string
	// AnchorInterval is how often the chain head is anchored when it
	// moved; default DefaultAnchorInterval. Close anchors too.
	AnchorInterval time.Duration
	// MaxBatch caps the rows committed in one transaction (group commit).
	MaxBatch int
	// MaxPending caps the rows waiting for the writer; Append blocks (up
	// to its context) when it is full.
	MaxPending int
	// LockTimeout is how long a commit waits for a lock another process
	// holds before the batch fails with ErrUnavailable.
	LockTimeout time.Duration
	// SyncNormal trades durability on power loss for speed: with it a
	// commit is not fsync'd (SQLite synchronous=NORMAL), so a power cut
	// may lose the last commits. A process crash loses nothing either way.
	SyncNormal bool
	// Log is the operational log (anchors, commit failures); nil
	// discards.
	Log logrus.FieldLogger
	// Now is the clock (tests); default time.Now.
	Now func() time.Time

	// maxPageCount caps the database size in pages (tests: a full disk
	// without filling one).
	maxPageCount int
}

// Receipt says where a record went.
type Receipt struct {
	Seq  int64
	Hash string
	Time time.Time
}

// Archive is an open compliance archive. It is safe for concurrent use.
type Archive struct {
	opts Options
	log  logrus.FieldLogger
	now  func() time.Time
	id   string

	// onCommit, when set, is told each group commit's size and duration
	// (the server's metrics).
	onCommit atomic.Pointer[func(rows int, d time.Duration, err error)]

	w    *sql.DB // the single writer connection
	r    *sql.DB // readers (search, export, verify)
	ckpt *sql.DB // WAL checkpoints, off the commit path
	// idx fills the full-text index for the writer goroutine, without
	// fsync (synchronous=OFF): the index is derived data (see indexFTS).
	idx *sql.DB

	insRecord *sql.Stmt
	insDetail map[RecordType]*sql.Stmt
	headStmt  *sql.Stmt

	mu     sync.RWMutex // guards closed against sends on queue
	closed bool
	queue  chan *request
	done   chan struct{} // writer exited
	stop   chan struct{} // stops the checkpointer
	ckDone chan struct{}

	anchorSeq int64 // writer goroutine only
	// committed is the newest seq this writer committed, indexed the
	// newest seq it knows to be in the full-text index (writer only).
	committed, indexed int64
}

type request struct {
	rec Record
	job func(ctx context.Context, ap *appender) error
	// anchor asks the writer to anchor the head now (outside any
	// transaction: the writer's one connection is free then).
	anchor bool
	done   chan result // capacity 1: the writer never blocks on a reply
}

type result struct {
	rc  Receipt
	err error
}

// Open opens (creating if needed) the archive at opts.Path, applies
// migrations and starts the writer.
func Open(ctx context.Context, opts Options) (*Archive, error) {
	if opts.Path == "" {
		return nil, fmt.Errorf("archive: open: empty path: %w", ErrInvalid)
	}
	if opts.AnchorInterval <= 0 {
		opts.AnchorInterval = DefaultAnchorInterval
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	if opts.MaxPending < opts.MaxBatch {
		opts.MaxPending = max(DefaultMaxPending, opts.MaxBatch)
	}
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	a := &Archive{opts: opts, log: opts.Log, now: opts.Now, insDetail: make(map[RecordType]*sql.Stmt)}
	if a.log == nil {
		l := logrus.New()
		l.SetOutput(io.Discard)
		a.log = l
	}
	if a.now == nil {
		a.now = time.Now
	}
	// Created 0600: the archive holds message content. An operator who
	// grants a reviewers group read access (chmod 0640) keeps it: unlike
	// the main database nothing here is tightened on open.
	f, err := os.OpenFile(opts.Path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("archive: open: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("archive: open: %w", err)
	}
	base := "file:" + escapeURIPath(opts.Path)
	sync := "FULL"
	if opts.SyncNormal {
		sync = "NORMAL"
	}
	common := fmt.Sprintf("_busy_timeout=%d", opts.LockTimeout.Milliseconds())
	// Auto-checkpoints would run inside a commit and add their fsync to
	// the latency a crossing pays; the checkpointer goroutine does them.
	winit := []string{"PRAGMA wal_autocheckpoint = 0", fmt.Sprintf("PRAGMA journal_size_limit = %d", journalSizeLimit)}
	if opts.maxPageCount > 0 {
		winit = append(winit, fmt.Sprintf("PRAGMA max_page_count = %d", opts.maxPageCount))
	}
	a.w = sql.OpenDB(connector{
		dsn:  base + "?mode=rw&_txlock=immediate&_journal_mode=WAL&_synchronous=" + sync + "&" + common,
		init: winit,
	})
	a.w.SetMaxOpenConns(1)
	a.w.SetMaxIdleConns(1)
	a.w.SetConnMaxLifetime(0)
	a.w.SetConnMaxIdleTime(0)
	fail := func(err error) (*Archive, error) {
		a.closeDBs()
		return nil, err
	}
	var mode string
	if err := a.w.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fail(fmt.Errorf("archive: open %s: %w", opts.Path, err))
	}
	if !strings.EqualFold(mode, "wal") {
		return fail(fmt.Errorf("archive: open %s: journal mode is %q, want wal", opts.Path, mode))
	}
	if err := migrate(ctx, a.w, a.now); err != nil {
		return fail(err)
	}
	if err := a.w.QueryRowContext(ctx, `SELECT value FROM archive_info WHERE key = 'archive_id'`).Scan(&a.id); err != nil {
		return fail(fmt.Errorf("archive: open: reading the archive id: %w", err))
	}
	a.r = sql.OpenDB(connector{dsn: base + "?mode=rw&_query_only=1&" + common})
	a.r.SetMaxOpenConns(4)
	a.r.SetMaxIdleConns(4)
	a.ckpt = sql.OpenDB(connector{dsn: base + "?mode=rw&" + common})
	a.ckpt.SetMaxOpenConns(1)
	a.idx = sql.OpenDB(connector{dsn: base + "?mode=rw&_txlock=immediate&_synchronous=OFF&" + common})
	a.idx.SetMaxOpenConns(1)
	if a.insRecord, err = a.w.PrepareContext(ctx, `INSERT INTO records (seq, record_type, ts_ms, prev_hash, hash) VALUES (?, ?, ?, ?, ?)`); err != nil {
		return fail(fmt.Errorf("archive: prepare: %w", err))
	}
	if a.headStmt, err = a.w.PrepareContext(ctx, `SELECT seq, ts_ms, hash FROM records ORDER BY seq DESC LIMIT 1`); err != nil {
		return fail(fmt.Errorf("archive: prepare: %w", err))
	}
	for _, d := range tables {
		st, err := a.w.PrepareContext(ctx, d.insertSQL())
		if err != nil {
			return fail(fmt.Errorf("archive: prepare %s: %w", d.name, err))
		}
		a.insDetail[d.typ] = st
	}
	a.queue = make(chan *request, opts.MaxPending)
	a.done = make(chan struct{})
	a.stop = make(chan struct{})
	a.ckDone = make(chan struct{})
	// The first tick anchors whatever the head is: rows committed after
	// the previous run's last anchor (a crash) get anchored promptly.
	a.anchorSeq = -1
	// Rows committed before a crash may not be indexed yet.
	if err := a.indexFTS(ctx); err != nil {
		return fail(err)
	}
	go a.run()
	go a.checkpointer()
	return a, nil
}

// ID returns the archive's random id (archive_info.archive_id).
func (a *Archive) ID() string { return a.id }

// Path returns the database file.
func (a *Archive) Path() string { return a.opts.Path }

func (a *Archive) closeDBs() {
	for _, st := range a.insDetail {
		_ = st.Close()
	}
	if a.insRecord != nil {
		_ = a.insRecord.Close()
	}
	if a.headStmt != nil {
		_ = a.headStmt.Close()
	}
	for _, db := range []*sql.DB{a.r, a.ckpt, a.idx, a.w} {
		if db != nil {
			_ = db.Close()
		}
	}
}

// Append commits rec and returns when it is durable. Any error means the
// record is not in the archive, with one exception: when ctx ends while the
// batch is committing, the row may still land (a crossing refused for that
// reason can thus appear in the archive; the reverse never happens).
func (a *Archive) Append(ctx context.Context, rec Record) (Receipt, error) {
	if err := rec.check(); err != nil {
		return Receipt{}, err
	}
	return a.submit(ctx, &request{rec: rec, done: make(chan result, 1)})
}

// do runs job in a write transaction of its own on the writer goroutine;
// the job may append records through ap.
func (a *Archive) do(ctx context.Context, job func(ctx context.Context, ap *appender) error) error {
	_, err := a.submit(ctx, &request{job: job, done: make(chan result, 1)})
	return err
}

func (a *Archive) submit(ctx context.Context, req *request) (Receipt, error) {
	a.mu.RLock()
	if a.closed {
		a.mu.RUnlock()
		return Receipt{}, ErrClosed
	}
	select {
	case a.queue <- req:
		a.mu.RUnlock()
	case <-ctx.Done():
		a.mu.RUnlock()
		return Receipt{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
	select {
	case res := <-req.done:
		return res.rc, res.err
	case <-ctx.Done():
		return Receipt{}, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// Close stops accepting records, commits what is queued, writes a final
// anchor and closes the file.
func (a *Archive) Close(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil
	}
	a.closed = true
	close(a.queue)
	a.mu.Unlock()
	var err error
	select {
	case <-a.done:
	case <-ctx.Done():
		err = fmt.Errorf("archive: close: %w", ctx.Err())
	}
	close(a.stop)
	<-a.ckDone
	if err == nil {
		a.closeDBs()
	}
	return err
}

// run is the writer goroutine: it owns every write to the archive.
func (a *Archive) run() {
	defer close(a.done)
	ticker := time.NewTicker(a.opts.AnchorInterval)
	defer ticker.Stop()
	batch := make([]*request, 0, a.opts.MaxBatch)
	var held *request
	// idle fires when the writer had nothing to do for ftsIdle with text
	// left to index; nil while not armed.
	idleTimer := time.NewTimer(time.Hour)
	idleTimer.Stop()
	defer idleTimer.Stop()
	var idle <-chan time.Time
	for {
		req := held
		held = nil
		if req == nil {
			if idle == nil && a.committed > a.indexed {
				idleTimer.Reset(ftsIdle)
				idle = idleTimer.C
			}
			select {
			case r, ok := <-a.queue:
				if !ok {
					a.indexLogged()
					a.anchor()
					return
				}
				req = r
			case <-ticker.C:
				a.anchor()
				continue
			case <-idle:
				idle = nil
				a.indexLogged()
				continue
			}
		}
		if req.anchor {
			a.anchor()
			req.done <- result{}
			continue
		}
		if req.job != nil {
			a.runJob(req)
			continue
		}
		batch = append(batch[:0], req)
		closed := false
	drain:
		for len(batch) < a.opts.MaxBatch {
			select {
			case r, ok := <-a.queue:
				if !ok {
					closed = true
					break drain
				}
				if r.job != nil || r.anchor {
					held = r
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		a.commit(batch)
		clear(batch)
		if closed {
			a.indexLogged()
			a.anchor()
			return
		}
		// Index the text off the commit path: once the writer has been
		// idle for ftsIdle (above), or when a busy writer has let too
		// much pile up.
		if a.committed-a.indexed >= ftsMaxLag {
			a.indexLogged()
		}
	}
}

// commit writes a batch in one transaction (one fsync) and answers every
// request in it.
// SetCommitObserver sets f to be told each group commit's size, duration
// and error. f must not block.
func (a *Archive) SetCommitObserver(f func(rows int, d time.Duration, err error)) {
	a.onCommit.Store(&f)
}

func (a *Archive) commit(batch []*request) {
	ctx := context.Background()
	start := time.Now()
	rcs := make([]Receipt, len(batch))
	ap, err := a.begin(ctx)
	if err == nil {
		for i, req := range batch {
			if rcs[i], err = ap.append(ctx, req.rec); err != nil {
				break
			}
		}
		if err == nil {
			err = ap.commit()
		}
		ap.rollback()
	}
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrUnavailable, err)
		a.log.WithError(err).WithField("rows", len(batch)).Error("compliance archive: commit failed; the records were not written")
	} else {
		a.committed = rcs[len(rcs)-1].Seq
	}
	if f := a.onCommit.Load(); f != nil {
		(*f)(len(batch), time.Since(start), err)
	}
	// Nobody hears of a row before its transaction committed.
	for i, req := range batch {
		req.done <- result{rc: rcs[i], err: err}
	}
}

func (a *Archive) runJob(req *request) {
	ctx := context.Background()
	ap, err := a.begin(ctx)
	if err == nil {
		err = req.job(ctx, ap)
		if err == nil {
			err = ap.commit()
		}
		ap.rollback()
	}
	req.done <- result{err: err}
}

// indexFTS adds the text of every stanza row committed since the last
// run (by any process) to the full-text index, in a transaction of its
// own on the idx connection. Writer goroutine only (or before it starts),
// so it never competes with the writer's own commits.
//
// The index is derived data: its commit is not fsync'd. The next record
// commit's fsync covers it, since the WAL is written in order; a power
// cut before that loses only index entries (and the watermark with them),
// which the next Open re-creates.
func (a *Archive) indexFTS(ctx context.Context) error {
	tx, err := a.idx.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("archive: full-text index: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var head int64
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(seq), 0) FROM records`).Scan(&head); err != nil {
		return fmt.Errorf("archive: full-text index: %w", err)
	}
	done, err := indexFTS(ctx, tx, head)
	if err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("archive: full-text index: %w", err)
	}
	a.indexed = done
	return nil
}

// indexLogged runs indexFTS and logs a failure: the rows are committed
// either way, and the next run picks them up.
func (a *Archive) indexLogged() {
	if err := a.indexFTS(context.Background()); err != nil {
		a.log.WithError(err).Warn("compliance archive: updating the full-text index failed; will retry")
	}
}

// IndexNow brings the full-text index up to date with every committed row
// (searches call it; the writer otherwise indexes when idle).
func (a *Archive) IndexNow(ctx context.Context) error {
	return a.do(ctx, func(ctx context.Context, ap *appender) error { return ap.indexFTS(ctx) })
}

// indexFTS indexes the appender's transaction up to its head.
func (ap *appender) indexFTS(ctx context.Context) error {
	_, err := indexFTS(ctx, ap.tx, ap.head.Seq)
	return err
}

// indexFTS indexes the stanza rows after archive_info.fts_indexed_seq up
// to head inside tx, and returns the new watermark.
func indexFTS(ctx context.Context, tx *sql.Tx, head int64) (int64, error) {
	var done int64
	if err := tx.QueryRowContext(ctx, `SELECT CAST(value AS INTEGER) FROM archive_info WHERE key = 'fts_indexed_seq'`).Scan(&done); err != nil {
		return 0, fmt.Errorf("archive: full-text index: %w", err)
	}
	if done >= head {
		return done, nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO stanzas_fts (docid, subject, body)
		SELECT seq, subject, body FROM stanzas WHERE seq > ? AND seq <= ? AND (body IS NOT NULL OR subject IS NOT NULL)`, done, head); err != nil {
		return 0, fmt.Errorf("archive: full-text index: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE archive_info SET value = ? WHERE key = 'fts_indexed_seq'`, strconv.FormatInt(head, 10)); err != nil {
		return 0, fmt.Errorf("archive: full-text index: %w", err)
	}
	return head, nil
}

// Head is the newest row of the chain.
type Head struct {
	Seq  int64
	TsMS int64
	Hash string
}

// Head returns the chain head (Seq 0 and ZeroHash for an empty archive).
func (a *Archive) Head(ctx context.Context) (Head, error) {
	h := Head{Hash: ZeroHash}
	err := a.r.QueryRowContext(ctx, `SELECT seq, ts_ms, hash FROM records ORDER BY seq DESC LIMIT 1`).Scan(&h.Seq, &h.TsMS, &h.Hash)
	if errors.Is(err, sql.ErrNoRows) {
		return h, nil
	}
	if err != nil {
		return h, fmt.Errorf("archive: head: %w", err)
	}
	return h, nil
}

// appender appends chained rows inside one write transaction.
type appender struct {
	a     *Archive
	tx    *sql.Tx
	head  Head
	ts    int64
	hs    *hasher
	vals  []any
	stmts map[RecordType]*sql.Stmt
	rec   *sql.Stmt
	done  bool
}

// begin starts a write transaction (BEGIN IMMEDIATE) and reads the head
// inside it: another process (the CLI) may have appended since our last
// commit, and the write lock makes the head we read the one we extend.
func (a *Archive) begin(ctx context.Context) (*appender, error) {
	tx, err := a.w.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	ap := &appender{a: a, tx: tx, head: Head{Hash: ZeroHash}, hs: newHasher(), stmts: make(map[RecordType]*sql.Stmt, 2)}
	err = tx.StmtContext(ctx, a.headStmt).QueryRowContext(ctx).Scan(&ap.head.Seq, &ap.head.TsMS, &ap.head.Hash)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		_ = tx.Rollback()
		return nil, err
	}
	ap.rec = tx.StmtContext(ctx, a.insRecord)
	return ap, nil
}

func (ap *appender) append(ctx context.Context, rec Record) (Receipt, error) {
	typ := rec.recordType()
	st := ap.stmts[typ]
	if st == nil {
		st = ap.tx.StmtContext(ctx, ap.a.insDetail[typ])
		ap.stmts[typ] = st
	}
	if ap.ts == 0 {
		// One timestamp per transaction, never before the head's: ts_ms
		// does not decrease along seq, which Prune and reviewers rely
		// on. Read at the first row: a transaction that appends nothing
		// (indexing) does not consult the clock.
		ap.ts = max(ap.a.now().UnixMilli(), ap.head.TsMS)
	}
	seq := ap.head.Seq + 1
	ap.vals = append(ap.vals[:0], seq, ap.ts, utcText(ap.ts))
	ap.vals = rec.values(ap.vals)
	h, err := ap.hs.rowHash(ap.head.Hash, seq, typ, ap.ts, ap.vals[1:])
	if err != nil {
		return Receipt{}, err
	}
	if _, err := ap.rec.ExecContext(ctx, seq, string(typ), ap.ts, ap.head.Hash, h); err != nil {
		return Receipt{}, fmt.Errorf("archive: insert records row %d: %w", seq, err)
	}
	if _, err := st.ExecContext(ctx, ap.vals...); err != nil {
		return Receipt{}, fmt.Errorf("archive: insert %s row %d: %w", typ, seq, err)
	}
	ap.head = Head{Seq: seq, TsMS: ap.ts, Hash: h}
	return Receipt{Seq: seq, Hash: h, Time: time.UnixMilli(ap.ts).UTC()}, nil
}

func (ap *appender) commit() error {
	ap.done = true
	return ap.tx.Commit()
}

func (ap *appender) rollback() {
	if !ap.done {
		_ = ap.tx.Rollback()
	}
}

// checkpointer copies the WAL into the database file once a second from a
// connection of its own, so that neither the copy nor its fsync runs inside
// a crossing's commit. PASSIVE never waits for readers or the writer.
func (a *Archive) checkpointer() {
	defer close(a.ckDone)
	t := time.NewTicker(checkpointInterval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
			if _, err := a.ckpt.Exec(`PRAGMA wal_checkpoint(PASSIVE)`); err != nil && !isBusy(err) {
				a.log.WithError(err).Warn("compliance archive: WAL checkpoint failed")
			}
		}
	}
}

func isBusy(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

// connector opens mattn/go-sqlite3 connections and runs init statements on
// each, without registering a driver name (no global state).
type connector struct {
	dsn  string
	init []string
}

func (c connector) Connect(ctx context.Context) (driver.Conn, error) {
	d := &sqlite3.SQLiteDriver{}
	conn, err := d.Open(c.dsn)
	if err != nil {
		return nil, err
	}
	sc := conn.(*sqlite3.SQLiteConn)
	for _, q := range c.init {
		if _, err := sc.ExecContext(ctx, q, nil); err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return conn, nil
}

func (c connector) Driver() driver.Driver { return &sqlite3.SQLiteDriver{} }

func escapeURIPath(p string) string {
	return strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(p)
}
