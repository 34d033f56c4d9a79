package archive

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
)

// ProblemKind classifies what Verify found.
type ProblemKind string

// Problem kinds.
const (
	// Altered: a row's content no longer matches its hash.
	Altered ProblemKind = "altered"
	// Inserted: a row that is not part of the chain (a detail row without
	// a chain entry, a pruned range no checkpoint attests).
	Inserted ProblemKind = "inserted"
	// Missing: rows removed outside of prune, or a detail row deleted.
	Missing ProblemKind = "missing"
	// BrokenLink: a row does not link to the one before it: that row was
	// replaced (with a recomputed hash) or rows were inserted or removed.
	BrokenLink ProblemKind = "broken-link"
	// Truncated: an anchor names a row beyond the archive's end.
	Truncated ProblemKind = "truncated"
	// AnchorMismatch: the archive holds an anchored row with another hash
	// (the chain was rewritten) or the anchor belongs to another archive.
	AnchorMismatch ProblemKind = "anchor-mismatch"
)

// Problem is one finding, located by seq.
type Problem struct {
	Seq    int64       `json:"seq"`
	Kind   ProblemKind `json:"kind"`
	Detail string      `json:"detail"`
}

func (p Problem) String() string {
	return fmt.Sprintf("row %d: %s: %s", p.Seq, p.Kind, p.Detail)
}

// maxProblems bounds the report: the first problem is the one that
// matters, the rest show the extent.
const maxProblems = 100

// Report is the result of Verify.
type Report struct {
	Rows         int64  `json:"rows"` // rows checked
	FirstSeq     int64  `json:"first_seq"`
	LastSeq      int64  `json:"last_seq"`
	Head         string `json:"head"`
	PrunedRows   int64  `json:"pruned_rows"`
	PrunedRanges int    `json:"pruned_ranges"`
	Anchors      int    `json:"anchors"`         // anchor lines read
	AnchorsHit   int    `json:"anchors_checked"` // of which checked against a row
	TornAnchor   bool   `json:"torn_anchor"`     // the last anchor line was incomplete
	NoAnchorFile bool   `json:"no_anchor_file"`
	// Problems in seq order; at most maxProblems, Omitted counts the rest.
	Problems []Problem `json:"problems"`
	Omitted  int       `json:"omitted"`
}

// OK reports whether the chain verified.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) add(seq int64, kind ProblemKind, format string, args ...any) {
	if len(r.Problems) >= maxProblems {
		r.Omitted++
		return
	}
	r.Problems = append(r.Problems, Problem{Seq: seq, Kind: kind, Detail: fmt.Sprintf(format, args...)})
}

// VerifyOptions tune Verify.
type VerifyOptions struct {
	// AnchorPath overrides the archive's anchor file ("" = the one
	// configured in Options).
	AnchorPath string
	// Progress is called now and then with rows checked and the total.
	Progress func(done, total int64)
}

// cursor reads one detail table in seq order alongside the chain.
type cursor struct {
	d    *tableDef
	rows *sql.Rows
	seq  int64
	vals []any
	ptrs []any
	ok   bool
	err  error
}

func openCursor(ctx context.Context, tx *sql.Tx, d *tableDef) (*cursor, error) {
	rows, err := tx.QueryContext(ctx, d.selectSQL(""))
	if err != nil {
		return nil, fmt.Errorf("archive: verify %s: %w", d.name, err)
	}
	c := &cursor{d: d, rows: rows, vals: make([]any, len(d.cols)), ptrs: make([]any, len(d.cols)+1)}
	c.ptrs[0] = &c.seq
	for i := range c.vals {
		c.ptrs[i+1] = &c.vals[i]
	}
	c.advance()
	return c, nil
}

func (c *cursor) advance() {
	c.ok = c.rows.Next()
	if !c.ok {
		c.err = c.rows.Err()
		return
	}
	if err := c.rows.Scan(c.ptrs...); err != nil {
		c.ok, c.err = false, err
	}
}

// Verify walks the whole chain in one read snapshot (the server may keep
// writing) and reports every altered, inserted or missing row it finds,
// then checks the anchor file. An error means verification could not run;
// a chain that does not verify is a Report with Problems.
func (a *Archive) Verify(ctx context.Context, o VerifyOptions) (*Report, error) {
	rep := &Report{Head: ZeroHash}
	anchorPath := o.AnchorPath
	if anchorPath == "" {
		anchorPath = a.opts.AnchorPath
	}
	tx, err := a.r.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("archive: verify: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var total int64
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM records`).Scan(&total); err != nil {
		return nil, fmt.Errorf("archive: verify: %w", err)
	}
	ranges, err := loadRanges(ctx, tx, 0)
	if err != nil {
		return nil, err
	}
	byCheckpoint := make(map[int64][]prunedRange)
	for _, r := range ranges {
		byCheckpoint[r.checkpoint] = append(byCheckpoint[r.checkpoint], r)
	}
	anchors := make(map[int64][]Anchor)
	if anchorPath != "" {
		list, torn, err := ReadAnchors(anchorPath)
		if err != nil {
			return nil, err
		}
		rep.TornAnchor = torn
		rep.Anchors = len(list)
		if len(list) == 0 && !torn {
			rep.NoAnchorFile = true
		}
		for _, an := range list {
			if an.ArchiveID != a.id {
				rep.add(an.Seq, AnchorMismatch, "anchor of %s belongs to archive %s, this is %s", an.Time.Format("2006-01-02T15:04:05Z"), an.ArchiveID, a.id)
				continue
			}
			anchors[an.Seq] = append(anchors[an.Seq], an)
		}
	}
	cursors := make(map[RecordType]*cursor, len(tables))
	for _, d := range tables {
		c, err := openCursor(ctx, tx, d)
		if err != nil {
			return nil, err
		}
		defer c.rows.Close()
		cursors[d.typ] = c
	}
	recs, err := tx.QueryContext(ctx, `SELECT seq, record_type, ts_ms, prev_hash, hash FROM records ORDER BY seq`)
	if err != nil {
		return nil, fmt.Errorf("archive: verify: %w", err)
	}
	defer recs.Close()

	hs := newHasher()
	next, lastHash, ri := int64(1), ZeroHash, 0
	checkAnchors := func(seq int64, hash string) {
		for _, an := range anchors[seq] {
			rep.AnchorsHit++
			if an.Hash != hash {
				rep.add(seq, AnchorMismatch, "anchor of %s says hash %s, the archive has %s: the chain was rewritten", an.Time.Format("2006-01-02T15:04:05Z"), an.Hash, hash)
			}
		}
		delete(anchors, seq)
	}
	// hop consumes the pruned ranges that start at or before seq.
	hop := func(seq int64) {
		for ri < len(ranges) && ranges[ri].first <= seq {
			r := ranges[ri]
			ri++
			switch {
			case r.first > next:
				rep.add(next, Missing, "rows %d-%d are missing (not pruned: no checkpoint covers them)", next, r.first-1)
			case r.first < next:
				rep.add(r.first, Inserted, "pruned range %d-%d overlaps rows that exist", r.first, r.last)
			case r.prevHash != lastHash:
				rep.add(r.first, BrokenLink, "pruned range %d-%d does not link to the row before it", r.first, r.last)
			}
			// Anchors inside the range but before its last row cannot be
			// compared any more; they are skipped at the end.
			checkAnchors(r.last, r.lastHash)
			lastHash, next = r.lastHash, r.last+1
			rep.PrunedRows += r.rows
			rep.PrunedRanges++
		}
	}
	orphans := func(c *cursor, below int64) {
		for c.ok && c.seq < below {
			rep.add(c.seq, Inserted, "%s row %d has no chain entry (records row)", c.d.name, c.seq)
			c.advance()
		}
	}
	for recs.Next() {
		var seq, ts int64
		var typ RecordType
		var prev, hash string
		if err := recs.Scan(&seq, &typ, &ts, &prev, &hash); err != nil {
			return nil, fmt.Errorf("archive: verify: %w", err)
		}
		if rep.Rows == 0 {
			rep.FirstSeq = seq
		}
		rep.Rows++
		rep.LastSeq = seq
		if o.Progress != nil && rep.Rows%10000 == 0 {
			o.Progress(rep.Rows, total)
		}
		hop(seq)
		switch {
		case seq > next:
			rep.add(next, Missing, "rows %d-%d are missing", next, seq-1)
		case prev != lastHash:
			rep.add(seq, BrokenLink, "row %d does not link to row %d: row %d was replaced, or rows were inserted or removed before row %d", seq, seq-1, seq-1, seq)
		}
		for _, c := range cursors {
			orphans(c, seq)
		}
		d := tableOf(typ)
		if d == nil {
			rep.add(seq, Altered, "unknown record type %q", typ)
		} else if c := cursors[typ]; !c.ok || c.seq != seq {
			rep.add(seq, Missing, "its %s row is missing (deleted)", d.name)
		} else {
			h, err := hs.rowHash(prev, seq, typ, ts, c.vals)
			switch {
			case err != nil:
				rep.add(seq, Altered, "%v", err)
			case h != hash:
				rep.add(seq, Altered, "the %s row does not match its hash (content changed)", d.name)
			case typ == TypeCheckpoint:
				checkCheckpoint(rep, seq, c.vals, byCheckpoint[seq])
				delete(byCheckpoint, seq)
			}
			c.advance()
		}
		checkAnchors(seq, hash)
		lastHash, next = hash, seq+1
		rep.Head = hash
	}
	if err := recs.Err(); err != nil {
		return nil, fmt.Errorf("archive: verify: %w", err)
	}
	if o.Progress != nil {
		o.Progress(rep.Rows, total)
	}
	for ; ri < len(ranges); ri++ {
		rep.add(ranges[ri].first, Inserted, "pruned range %d-%d lies after the last row", ranges[ri].first, ranges[ri].last)
	}
	for _, c := range cursors {
		orphans(c, 1<<62)
		if c.err != nil {
			return nil, fmt.Errorf("archive: verify %s: %w", c.d.name, c.err)
		}
	}
	for cp, rs := range byCheckpoint {
		rep.add(rs[0].first, Inserted, "pruned ranges name checkpoint %d, which is not a checkpoint row", cp)
	}
	var beyond []string
	var firstBeyond int64
	for seq, list := range anchors {
		if seq < next {
			continue // pruned, or in rows already reported missing
		}
		if firstBeyond == 0 || seq < firstBeyond {
			firstBeyond = seq
		}
		for _, an := range list {
			beyond = append(beyond, fmt.Sprintf("%d (anchored %s)", seq, an.Time.Format("2006-01-02T15:04:05Z")))
		}
	}
	if len(beyond) > 0 {
		rep.add(firstBeyond, Truncated, "the archive ends at row %d but the anchor file names row %s: the tail was removed", next-1, strings.Join(beyond[:min(len(beyond), 3)], ", "))
	}
	sortProblems(rep.Problems)
	return rep, nil
}

func checkCheckpoint(rep *Report, seq int64, vals []any, rs []prunedRange) {
	// checkpoints columns: ts_ms, ts_utc, actor, before_ms, rows_pruned, ranges, ranges_sha256
	n, _ := vals[5].(int64)
	digest, _ := vals[6].(string)
	if int64(len(rs)) != n || rangesDigest(rs) != digest {
		rep.add(seq, Altered, "checkpoint %d attests %d pruned ranges, the archive holds %d that do not match its digest", seq, n, len(rs))
	}
}

func sortProblems(ps []Problem) {
	// Insertion sort: the list is short and nearly ordered already.
	for i := 1; i < len(ps); i++ {
		for j := i; j > 0 && ps[j].Seq < ps[j-1].Seq; j-- {
			ps[j], ps[j-1] = ps[j-1], ps[j]
		}
	}
}
