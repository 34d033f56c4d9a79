package archive

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sirupsen/logrus"
)

// The full-text index is filled after commits, in batches: a text search
// still sees every committed row, the index survives a prune intact
// (FTS4 integrity-check), and a reopened archive catches up.
func TestFullTextIndex(t *testing.T) {
	a, clk := openTest(t, func(o *Options) { o.MaxBatch = 16 })
	ctx := context.Background()
	for i := range 50 {
		clk.Add(time.Hour)
		body := fmt.Sprintf("status report %d", i)
		if i%10 == 0 {
			body = fmt.Sprintf("the Merger plan, part %d", i)
		}
		mustAppend(t, a, msg("alice@example.com", "bob@partner.example", body))
	}
	count := func(text string) int64 {
		n, err := a.Search(ctx, Filter{Text: text}, admin, func(*StanzaRow) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count("merger"); n != 5 {
		t.Fatalf("merger: %d hits, want 5", n)
	}
	if n := count(`"status report"`); n != 45 {
		t.Fatalf("status report: %d hits, want 45", n)
	}
	if _, err := a.Prune(ctx, PruneOptions{Before: t0.Add(25 * time.Hour), By: admin}); err != nil {
		t.Fatal(err)
	}
	db := rawDB(t, a.Path())
	exec(t, db, `INSERT INTO stanzas_fts (stanzas_fts) VALUES ('integrity-check')`)
	if n := count("merger"); n != 2 {
		t.Fatalf("merger after prune: %d hits, want 2", n)
	}
	mustVerify(t, a)

	// Rows the index missed (a crash between commit and indexing) are
	// indexed when the archive is opened again.
	exec(t, db, `UPDATE archive_info SET value = '0' WHERE key = 'fts_indexed_seq'`, `DELETE FROM stanzas_fts`)
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	b, err := Open(ctx, Options{Path: a.Path()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	var n int
	if err := db.QueryRow(`SELECT count(*) FROM stanzas_fts WHERE stanzas_fts MATCH 'merger'`).Scan(&n); err != nil || n != 2 {
		t.Fatalf("after reopening: %d hits (%v), want 2", n, err)
	}
}

// A busy writer indexes in batches while it works (ftsMaxLag), without
// errors, and an idle one catches up by itself.
func TestFullTextIndexWhileBusy(t *testing.T) {
	var logBuf strings.Builder
	var mu sync.Mutex
	log := logrus.New()
	log.SetOutput(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return logBuf.Write(p) }))
	a, _ := openTest(t, func(o *Options) { o.Log = log })
	ctx := context.Background()
	const writers, each = 32, 300
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := a.Append(ctx, msg("alice@example.com", "bob@partner.example", fmt.Sprintf("w%d m%d", w, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	db := rawDB(t, a.Path())
	indexed := func() int64 {
		var n int64
		if err := db.QueryRow(`SELECT CAST(value AS INTEGER) FROM archive_info WHERE key = 'fts_indexed_seq'`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	// The lag is at most ftsMaxLag plus the largest batch.
	if n := indexed(); n < writers*each-ftsMaxLag-DefaultMaxBatch {
		t.Fatalf("only %d of %d rows indexed while busy", n, writers*each)
	}
	deadline := time.Now().Add(10 * time.Second)
	for indexed() < writers*each {
		if time.Now().After(deadline) {
			t.Fatalf("the idle writer did not catch up: %d of %d", indexed(), writers*each)
		}
		time.Sleep(5 * time.Millisecond)
	}
	var hits int
	if err := db.QueryRow(`SELECT count(*) FROM stanzas_fts WHERE stanzas_fts MATCH 'm299'`).Scan(&hits); err != nil || hits != writers {
		t.Fatalf("m299: %d hits (%v), want %d", hits, err, writers)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logBuf.String(), "full-text index") {
		t.Fatalf("indexing logged a failure:\n%s", logBuf.String())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
