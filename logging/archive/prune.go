package archive

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// prunedRange is a run of consecutive rows removed by one prune: the hash
// before its first row and its last row's hash, so the chain around it
// still links.
type prunedRange struct {
	first, last, rows  int64
	prevHash, lastHash string
	checkpoint         int64
}

// PruneOptions say what to prune.
type PruneOptions struct {
	// Before: rows older than this are removed unless a hold covers them.
	Before time.Time
	By     Actor
	// Reason goes into the admin_actions row.
	Reason string
	// DryRun counts without removing anything (and records nothing).
	DryRun bool
	// ChunkRows caps the rows removed per transaction, so the server's
	// crossings never wait long for the write lock; default 2000.
	ChunkRows int
}

// PruneResult says what Prune did.
type PruneResult struct {
	Removed     int64   // rows removed
	Held        int64   // old rows kept because a hold covers them
	Checkpoints []int64 // seq of each checkpoint row written
	Ranges      int     // pruned ranges written
}

// errDryRun rolls a dry run's transaction back.
var errDryRun = errors.New("archive: dry run")

// pruneState carries the chain walk across chunk transactions: rows before
// the cursor are already checked, and later chunks only append at the head.
type pruneState struct {
	cursor   int64  // last seq examined
	lastHash string // hash the next position must link to
	done     bool
}

// Prune removes rows older than o.Before that no active hold covers,
// checkpoints and pruned ranges excepted, and leaves for each run of
// removed rows a pruned_ranges entry attested by a checkpoint row, so
// Verify still links the remaining chain. It walks the chain up to the
// cut-off first and refuses (ErrTampered) when that part does not verify:
// pruning must never launder an altered row. Every transaction also writes
// an "archive.prune" admin action.
func (a *Archive) Prune(ctx context.Context, o PruneOptions) (PruneResult, error) {
	var res PruneResult
	if err := o.By.check(); err != nil {
		return res, err
	}
	if o.Before.IsZero() {
		return res, fmt.Errorf("%w: prune needs a cut-off time", ErrInvalid)
	}
	if o.ChunkRows <= 0 {
		o.ChunkRows = 2000
	}
	st := &pruneState{lastHash: ZeroHash}
	for !st.done {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		err := a.do(ctx, func(ctx context.Context, ap *appender) error {
			return a.pruneChunk(ctx, ap, o, st, &res)
		})
		if errors.Is(err, errDryRun) {
			return res, nil
		}
		if err != nil {
			return res, err
		}
	}
	return res, nil
}

func (a *Archive) pruneChunk(ctx context.Context, ap *appender, o PruneOptions, st *pruneState, res *PruneResult) error {
	tx := ap.tx
	cutoff := o.Before.UnixMilli()
	// Removing a row takes its text out of the full-text index, which
	// therefore must hold it (the writer indexes after committing).
	if err := ap.indexFTS(ctx); err != nil {
		return err
	}
	holds, err := listHolds(ctx, tx, false)
	if err != nil {
		return err
	}
	old, err := loadRanges(ctx, tx, st.cursor)
	if err != nil {
		return err
	}
	details := make(map[RecordType]*sql.Stmt, len(tables))
	for _, d := range tables {
		s, err := tx.PrepareContext(ctx, d.selectSQL("seq = ?"))
		if err != nil {
			return fmt.Errorf("archive: prune: %w", err)
		}
		defer s.Close()
		details[d.typ] = s
	}
	limit := o.ChunkRows
	if o.DryRun {
		limit = -1 // one pass: nothing is removed, so chunks would repeat
	}
	// ts_ms never decreases along seq, so the walk stops at the first row
	// at or after the cut-off.
	rows, err := tx.QueryContext(ctx, `SELECT seq, record_type, ts_ms, prev_hash, hash FROM records WHERE seq > ? ORDER BY seq`, st.cursor)
	if err != nil {
		return fmt.Errorf("archive: prune: %w", err)
	}
	defer rows.Close()
	hs := newHasher()
	var runs []prunedRange
	var cur *prunedRange
	var removed int64
	next, oi := st.cursor+1, 0
	vals := make([]any, 0, 32)
	for rows.Next() {
		var seq, ts int64
		var typ RecordType
		var prev, hash string
		if err := rows.Scan(&seq, &typ, &ts, &prev, &hash); err != nil {
			return fmt.Errorf("archive: prune: %w", err)
		}
		if ts >= cutoff || (limit > 0 && removed >= int64(limit)) {
			break
		}
		for oi < len(old) && old[oi].first == next {
			if old[oi].prevHash != st.lastHash {
				return fmt.Errorf("%w: pruned range %d-%d does not link to the row before it; run gatehouse archive verify", ErrTampered, old[oi].first, old[oi].last)
			}
			st.lastHash, next = old[oi].lastHash, old[oi].last+1
			oi++
		}
		if seq != next {
			return fmt.Errorf("%w: rows %d-%d are missing; run gatehouse archive verify", ErrTampered, next, seq-1)
		}
		if prev != st.lastHash {
			return fmt.Errorf("%w: row %d does not link to row %d; run gatehouse archive verify", ErrTampered, seq, seq-1)
		}
		d := tableOf(typ)
		if d == nil {
			return fmt.Errorf("%w: row %d has unknown record type %q", ErrTampered, seq, typ)
		}
		vals, err = scanDetail(ctx, details[typ], seq, vals[:0], len(d.cols))
		if err != nil {
			return fmt.Errorf("%w: row %d: %w; run gatehouse archive verify", ErrTampered, seq, err)
		}
		account, peer := parties(d, vals)
		keep := typ == TypeCheckpoint
		if !keep {
			for i := range holds {
				if holds[i].covers(ts, account, peer) {
					keep = true
					res.Held++
					break
				}
			}
		}
		if keep {
			cur = nil
		} else {
			h, err := hs.rowHash(prev, seq, typ, ts, vals)
			if err != nil {
				return err
			}
			if h != hash {
				return fmt.Errorf("%w: row %d was altered; run gatehouse archive verify", ErrTampered, seq)
			}
			if cur == nil || cur.last != seq-1 {
				runs = append(runs, prunedRange{first: seq, prevHash: prev})
				cur = &runs[len(runs)-1]
			}
			cur.last, cur.lastHash = seq, hash
			cur.rows++
			removed++
		}
		st.cursor, st.lastHash, next = seq, hash, seq+1
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("archive: prune: %w", err)
	}
	rows.Close()
	res.Removed += removed
	if o.DryRun {
		return errDryRun
	}
	if removed == 0 || (limit > 0 && removed < int64(limit)) {
		st.done = true
	}
	if removed == 0 {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO prune_guard (token) VALUES (1)`); err != nil {
		return fmt.Errorf("archive: prune: %w", err)
	}
	for _, r := range runs {
		for _, d := range tables {
			if d.typ == TypeCheckpoint {
				continue
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM `+d.name+` WHERE seq BETWEEN ? AND ?`, r.first, r.last); err != nil {
				return fmt.Errorf("archive: prune %s: %w", d.name, err)
			}
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM records WHERE seq BETWEEN ? AND ?`, r.first, r.last); err != nil {
			return fmt.Errorf("archive: prune records: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM prune_guard`); err != nil {
		return fmt.Errorf("archive: prune: %w", err)
	}
	rc, err := ap.append(ctx, &checkpoint{actor: o.By.Name, beforeMS: cutoff, rowsPruned: removed, ranges: int64(len(runs)), rangesSHA256: rangesDigest(runs)})
	if err != nil {
		return err
	}
	for _, r := range runs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO pruned_ranges (first_seq, last_seq, rows, prev_hash, last_hash, checkpoint_seq) VALUES (?, ?, ?, ?, ?, ?)`,
			r.first, r.last, r.rows, r.prevHash, r.lastHash, rc.Seq); err != nil {
			return fmt.Errorf("archive: prune: %w", err)
		}
	}
	detail := map[string]any{"before": o.Before.UTC().Format(time.RFC3339), "removed": removed, "ranges": len(runs), "checkpoint_seq": rc.Seq}
	if o.Reason != "" {
		detail["reason"] = o.Reason
	}
	if _, err := ap.append(ctx, &AdminAction{Actor: o.By.Name, Origin: o.By.Origin, Action: "archive.prune", Target: utcText(cutoff), Detail: detailJSON(detail)}); err != nil {
		return err
	}
	res.Checkpoints = append(res.Checkpoints, rc.Seq)
	res.Ranges += len(runs)
	return nil
}

// scanDetail reads the canonical columns of one detail row.
func scanDetail(ctx context.Context, st *sql.Stmt, seq int64, vals []any, n int) ([]any, error) {
	vals = vals[:0]
	for range n {
		vals = append(vals, nil)
	}
	ptrs := make([]any, n+1)
	var got int64
	ptrs[0] = &got
	for i := range n {
		ptrs[i+1] = &vals[i]
	}
	if err := st.QueryRowContext(ctx, seq).Scan(ptrs...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return vals, errors.New("its detail row is missing")
		}
		return vals, err
	}
	return vals, nil
}

// parties returns the account and peer columns of a detail row (for
// holds), "" where the table has none.
func parties(d *tableDef, vals []any) (account, peer string) {
	for i, c := range d.cols {
		s, _ := vals[i].(string)
		switch c.name {
		case "account":
			account = s
		case "peer":
			peer = s
		}
	}
	return account, peer
}

// loadRanges reads the pruned ranges after seq, in order.
func loadRanges(ctx context.Context, q queryer, after int64) ([]prunedRange, error) {
	rows, err := q.QueryContext(ctx, `SELECT first_seq, last_seq, rows, prev_hash, last_hash, checkpoint_seq FROM pruned_ranges WHERE first_seq > ? ORDER BY first_seq`, after)
	if err != nil {
		return nil, fmt.Errorf("archive: pruned ranges: %w", err)
	}
	defer rows.Close()
	var out []prunedRange
	for rows.Next() {
		var r prunedRange
		if err := rows.Scan(&r.first, &r.last, &r.rows, &r.prevHash, &r.lastHash, &r.checkpoint); err != nil {
			return nil, fmt.Errorf("archive: pruned ranges: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("archive: pruned ranges: %w", err)
	}
	return out, nil
}
