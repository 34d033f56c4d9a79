package mam

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// yearOfHistory is the benchmark archive: one user's year of chat with 20
// contacts (a message every ~5 minutes, around the clock), among other
// users' archives of the same total size, so every query has to find the
// user's rows among others.
const (
	yearMessages  = 100_000
	yearPeers     = 20
	otherUsers    = 10
	otherMessages = 10_000 // each
)

var year = 365 * 24 * time.Hour

// bulkFill writes the benchmark archive in one transaction (through the
// store's own insert statement), which is what makes 200k rows take a
// second rather than a minute. It returns alice's ids in archive order.
func bulkFill(tb testing.TB, s *Store) []string {
	tb.Helper()
	ctx := context.Background()
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	step := year / yearMessages
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		tb.Fatal(err)
	}
	ins := tx.StmtContext(ctx, s.insert)
	body := []byte(`<message from="alice@example.com/phone" to="peer@example.com" type="chat" id="0123456789abcdef"><body>` +
		`A typical chat line of about a hundred characters, give or take a few words here and there.</body>` +
		`<origin-id xmlns="urn:xmpp:sid:0" id="0123456789abcdef"/><active xmlns="http://jabber.org/protocol/chatstates"/></message>`)
	ids := make([]string, 0, yearMessages)
	add := func(user string, i int, t time.Time) string {
		id, err := s.newID()
		if err != nil {
			tb.Fatal(err)
		}
		peer := fmt.Sprintf("peer%d@example.com", i%yearPeers)
		if _, err := ins.ExecContext(ctx, user, id, t.UnixMilli(), peer, "phone", body); err != nil {
			tb.Fatal(err)
		}
		return id
	}
	// Interleave the users the way live traffic would.
	ratio := yearMessages / otherMessages
	for i := range yearMessages {
		t := start.Add(time.Duration(i) * step)
		ids = append(ids, add("alice", i, t))
		if i%ratio == 0 {
			for u := range otherUsers {
				add(fmt.Sprintf("user%d", u), i/ratio, t)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
	// A running server checkpoints as it goes (every 1000 pages); after one
	// giant transaction the WAL would hold the whole archive and slow every
	// read, which no server ever sees.
	if _, err := s.w.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)"); err != nil {
		tb.Fatal(err)
	}
	return ids
}

// BenchmarkYearOfHistory measures the latency of one page (50 messages,
// the count included) of a year of one user's history, for the queries
// clients make: the newest page on opening a chat, scrolling back, catching
// up after an id, one contact, one day, specific ids.
func BenchmarkYearOfHistory(b *testing.B) {
	s, _ := openTestStore(b)
	t0 := time.Now()
	ids := bulkFill(b, s)
	b.Logf("filled %d rows in %v", yearMessages+otherUsers*otherMessages, time.Since(t0))
	ctx := context.Background()
	mid := ids[len(ids)/2]
	day := time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)
	cases := []struct {
		name string
		f    Filter
		p    Page
	}{
		{"last-page", Filter{}, Page{Max: 50, Backward: true}},
		{"first-page", Filter{}, Page{Max: 50}},
		{"before-middle", Filter{}, Page{Max: 50, Before: mid, Backward: true}},
		{"after-middle", Filter{}, Page{Max: 50, After: mid}},
		{"catch-up-after-id", Filter{AfterID: ids[len(ids)-120]}, Page{Max: 50}},
		{"with-contact-last-page", Filter{With: "peer7@example.com"}, Page{Max: 50, Backward: true}},
		{"with-contact-before-middle", Filter{With: "peer7@example.com"}, Page{Max: 50, Before: mid, Backward: true}},
		{"one-day", Filter{Start: day, End: day.Add(24*time.Hour - time.Millisecond)}, Page{Max: 50}},
		{"ids-10", Filter{IDs: ids[5000:5010]}, Page{Max: 50}},
		{"count-only", Filter{}, Page{Max: 0}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			for b.Loop() {
				res, err := s.Query(ctx, "alice", tc.f, tc.p)
				if err != nil {
					b.Fatal(err)
				}
				if tc.p.Max > 0 && len(res.Items) == 0 {
					b.Fatal("empty page")
				}
			}
		})
	}
	b.Run("append", func(b *testing.B) {
		e := Entry{User: "alice", Time: time.Now(), Peer: "peer1@example.com", XML: []byte("<message><body>x</body></message>")}
		for b.Loop() {
			if _, err := s.Append(ctx, e); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAppendAsync is the message path's cost: queue, group commit.
func BenchmarkAppendAsync(b *testing.B) {
	s, _ := openTestStore(b)
	ctx := context.Background()
	e := Entry{User: "alice", Time: time.Now(), Peer: "peer1@example.com", XML: []byte("<message><body>x</body></message>")}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AppendAsync(ctx, e); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Sync(ctx); err != nil {
		b.Fatal(err)
	}
}
