package mam

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// Many senders archive at once without waiting; a query right after sees
// every message (read your writes), with the ids AppendAsync returned.
func TestAppendAsyncGroupCommit(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	const senders, each = 8, 100
	var (
		mu  sync.Mutex
		ids = map[string]bool{}
		wg  sync.WaitGroup
	)
	for g := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id, err := s.AppendAsync(ctx, Entry{User: "alice", Time: t0.Add(time.Duration(i) * time.Millisecond),
					Peer: fmt.Sprintf("p%d@example.com", g), XML: fmt.Appendf(nil, "<message><body>%d/%d</body></message>", g, i)})
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				ids[id] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	res, err := s.Query(ctx, "alice", Filter{}, Page{Max: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != senders*each || len(res.Items) != senders*each {
		t.Fatalf("query found %d (count %d), want %d", len(res.Items), res.Count, senders*each)
	}
	for _, it := range res.Items {
		if !ids[it.ID] {
			t.Fatalf("archived id %q was not handed out by AppendAsync", it.ID)
		}
	}
}

// Close commits what is queued; nothing accepted is lost, and appends after
// Close fail with ErrClosed.
func TestCloseCommitsQueued(t *testing.T) {
	s, path := openTestStore(t)
	ctx := context.Background()
	for i := range 500 {
		if _, err := s.AppendAsync(ctx, Entry{User: "bob", Time: t0, Peer: "alice@example.com", XML: fmt.Appendf(nil, "<message><body>%d</body></message>", i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAsync(ctx, Entry{User: "bob", Time: t0, Peer: "alice@example.com", XML: []byte("<message/>")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("AppendAsync after Close = %v, want ErrClosed", err)
	}
	s2, err := OpenStore(ctx, path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	res, err := s2.Query(ctx, "bob", Filter{}, Page{Max: 0})
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 500 {
		t.Fatalf("after reopening: %d messages, want 500", res.Count)
	}
}

// A failed group commit reaches the error handler instead of vanishing.
func TestAppendAsyncErrorReported(t *testing.T) {
	s, _ := openTestStore(t)
	ctx := context.Background()
	got := make(chan error, 1)
	s.SetErrorHandler(func(e Entry, err error) { got <- err })
	// Drop the table under the writer: the next commit must fail.
	if _, err := s.w.ExecContext(ctx, `DROP TABLE archive`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAsync(ctx, Entry{User: "bob", Time: t0, Peer: "alice@example.com", XML: []byte("<message/>")}); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err == nil {
			t.Fatal("handler called with nil error")
		}
	default:
		t.Fatal("the failed write was not reported")
	}
}
