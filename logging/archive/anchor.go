package archive

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"github.com/sirupsen/logrus"
)

// Anchor is one line of the anchor file: the chain head at a moment. The
// file lives beside the archive (ideally shipped elsewhere too: the same
// line goes to the operational log). Verify checks that the archive still
// holds every anchored row with the anchored hash, which detects a
// truncated tail and a rewritten chain.
type Anchor struct {
	Time      time.Time `json:"time"`
	ArchiveID string    `json:"archive_id"`
	Seq       int64     `json:"seq"`
	Hash      string    `json:"hash"`
}

// anchor writes the head to the anchor file and the log if it moved since
// the last anchor. Writer goroutine only.
func (a *Archive) anchor() {
	var h Head
	err := a.headStmt.QueryRowContext(context.Background()).Scan(&h.Seq, &h.TsMS, &h.Hash)
	if err != nil {
		// Empty archive (sql.ErrNoRows) or a read failure; the next tick
		// tries again.
		return
	}
	if h.Seq == a.anchorSeq {
		return
	}
	an := Anchor{Time: a.now().UTC(), ArchiveID: a.id, Seq: h.Seq, Hash: h.Hash}
	fields := logrus.Fields{"archive_id": an.ArchiveID, "seq": an.Seq, "hash": an.Hash}
	if a.opts.AnchorPath != "" {
		if err := appendAnchor(a.opts.AnchorPath, an); err != nil {
			a.log.WithError(err).WithFields(fields).Error("compliance archive: writing the anchor file failed")
			return
		}
	}
	a.anchorSeq = h.Seq
	a.log.WithFields(fields).Info("compliance archive anchor")
}

// AnchorNow writes an anchor for the current head (if it moved). It goes
// through the writer, so it is ordered after every record appended before.
func (a *Archive) AnchorNow(ctx context.Context) error {
	_, err := a.submit(ctx, &request{anchor: true, done: make(chan result, 1)})
	return err
}

func appendAnchor(path string, an Anchor) error {
	line, err := json.Marshal(an)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	// One write call: concurrent appenders (server and CLI) never
	// interleave within a line.
	if _, err := f.Write(append(line, '\n')); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// ReadAnchors reads an anchor file. A missing file yields no anchors. An
// unterminated last line (a crash while writing it) is skipped and
// reported in torn; any other malformed line is an ErrCorrupt error.
func ReadAnchors(path string) (anchors []Anchor, torn bool, err error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("archive: anchor file: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var an Anchor
		if err := json.Unmarshal(line, &an); err != nil || an.Seq <= 0 || len(an.Hash) != len(ZeroHash) {
			last := !bytes.HasSuffix(data, []byte("\n")) && bytes.HasSuffix(bytes.TrimRight(data, " \t"), sc.Bytes())
			if last {
				return anchors, true, nil
			}
			return anchors, false, fmt.Errorf("%w: %s line %d is not an anchor", ErrCorrupt, path, n)
		}
		anchors = append(anchors, an)
	}
	if err := sc.Err(); err != nil {
		return anchors, false, fmt.Errorf("archive: anchor file: %w", err)
	}
	return anchors, false, nil
}
