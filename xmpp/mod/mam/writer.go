package mam

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mattn/go-sqlite3"
)

// ErrClosed: the store was closed before the write could be queued.
var ErrClosed = errors.New("mam: archive closed")

// writeQueue and maxBatch size the group commit: many sessions archive at
// once, and one SQLite transaction per message would make the commit the
// ceiling of the whole server's message rate. The single writer goroutine
// takes whatever is queued (up to maxBatch) into one transaction.
const (
	writeQueue = 4096
	maxBatch   = 512
)

// writeReq is one queued append, or a barrier (e.User == "") that is
// answered once everything queued before it is committed.
type writeReq struct {
	e    Entry
	id   string
	done chan writeRes // nil: fire and forget (AppendAsync)
}

type writeRes struct {
	id  string
	err error
}

// startWriter starts the group-commit goroutine; Close stops it.
func (s *Store) startWriter() {
	s.queue = make(chan writeReq, writeQueue)
	s.writerDone = make(chan struct{})
	go s.writeLoop()
}

func (s *Store) writeLoop() {
	defer close(s.writerDone)
	batch := make([]writeReq, 0, maxBatch)
	for r := range s.queue {
		batch = append(batch[:0], r)
	fill:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break fill
				}
				batch = append(batch, r)
			default:
				break fill
			}
		}
		s.commit(batch)
	}
}

// commit writes batch in one transaction and answers every request in it.
func (s *Store) commit(batch []writeReq) {
	res := make([]writeRes, len(batch))
	writes := 0
	for _, r := range batch {
		if r.e.User != "" {
			writes++
		}
	}
	if writes > 0 {
		err := s.commitTx(batch, res)
		for i := range res {
			if err != nil && batch[i].e.User != "" {
				res[i].err = err
			}
		}
	}
	for i, r := range batch {
		if r.done != nil {
			r.done <- res[i]
		} else if res[i].err != nil && s.onAsyncError != nil {
			s.onAsyncError(r.e, res[i].err)
		}
	}
}

func (s *Store) commitTx(batch []writeReq, res []writeRes) error {
	// The writer outlives any one caller's context: a queued message is
	// written even when its sender has gone.
	ctx := context.Background()
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("mam: append: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	ins := tx.StmtContext(ctx, s.insert)
	for i, r := range batch {
		if r.e.User == "" {
			continue
		}
		res[i] = s.insertOne(ctx, ins, r)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("mam: append: commit: %w", err)
	}
	return nil
}

// insertOne inserts r, drawing a new id on the (practically impossible)
// collision. A unique-constraint failure undoes only its own statement, so
// the transaction carries on.
func (s *Store) insertOne(ctx context.Context, ins *sql.Stmt, r writeReq) writeRes {
	e, id := r.e, r.id
	for range 3 {
		_, err := ins.ExecContext(ctx, e.User, id, e.Time.UnixMilli(), e.Peer, e.PeerRes, e.XML)
		var se sqlite3.Error
		if errors.As(err, &se) && se.ExtendedCode == sqlite3.ErrConstraintUnique {
			if id, err = s.newID(); err != nil {
				return writeRes{err: err}
			}
			continue
		}
		if err != nil {
			return writeRes{err: fmt.Errorf("mam: append for %q: %w", e.User, err)}
		}
		return writeRes{id: id}
	}
	return writeRes{err: fmt.Errorf("mam: append for %q: archive ids keep colliding; is the random source broken?", e.User)}
}

// enqueue hands r to the writer, waiting while the queue is full.
func (s *Store) enqueue(ctx context.Context, r writeReq) error {
	s.qmu.RLock()
	defer s.qmu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	select {
	case s.queue <- r:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mam: append: %w", ctx.Err())
	}
}

// stopWriter lets the writer commit what is queued, then stops it.
func (s *Store) stopWriter() {
	s.qmu.Lock()
	if !s.closed {
		s.closed = true
		close(s.queue)
	}
	s.qmu.Unlock()
	<-s.writerDone
}

// Append archives e, waits for the commit and returns its archive id.
func (s *Store) Append(ctx context.Context, e Entry) (string, error) {
	if err := validEntry(e); err != nil {
		return "", err
	}
	id, err := s.newID()
	if err != nil {
		return "", err
	}
	done := make(chan writeRes, 1)
	if err := s.enqueue(ctx, writeReq{e: e, id: id, done: done}); err != nil {
		return "", err
	}
	select {
	case r := <-done:
		return r.id, r.err
	case <-ctx.Done():
		return "", fmt.Errorf("mam: append: %w", ctx.Err())
	}
}

// AppendAsync queues e and returns the archive id it will have, without
// waiting for the commit: the message path must not wait for the disk.
// A failed commit is reported to the error handler (SetErrorHandler).
// Queries call Sync first, so a user always finds what was sent before.
func (s *Store) AppendAsync(ctx context.Context, e Entry) (string, error) {
	if err := validEntry(e); err != nil {
		return "", err
	}
	id, err := s.newID()
	if err != nil {
		return "", err
	}
	if err := s.enqueue(ctx, writeReq{e: e, id: id}); err != nil {
		return "", err
	}
	return id, nil
}

// Sync waits until everything queued before the call is committed.
func (s *Store) Sync(ctx context.Context) error {
	done := make(chan writeRes, 1)
	if err := s.enqueue(ctx, writeReq{done: done}); err != nil {
		return err
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mam: sync: %w", ctx.Err())
	}
}

// SetErrorHandler sets the function told about AppendAsync writes that
// failed. Call it before the first AppendAsync.
func (s *Store) SetErrorHandler(f func(Entry, error)) { s.onAsyncError = f }

func validEntry(e Entry) error {
	if e.User == "" || e.Peer == "" || len(e.XML) == 0 {
		return fmt.Errorf("mam: append: empty user, peer or message: %w", ErrInvalid)
	}
	return nil
}
