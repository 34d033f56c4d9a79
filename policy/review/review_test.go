package review_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"gatehouse/policy/review"
)

func TestQueue(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), review.FileName)
	s, err := review.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	s.SetClock(func() time.Time { return now })
	add := func(body string) int64 {
		id, err := s.Add(ctx, review.Item{Account: "alice@localhost", Peer: "p@irc.localhost", Rule: "review-x", Rules: "review-x",
			PolicyVersion: "v1@abc", Body: body, Stanza: "<message/>"})
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a, b, c := add("one"), add("two"), add("three")

	// A second process (the CLI) sees the same queue.
	cli, err := review.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	cli.SetClock(func() time.Time { return now })
	defer cli.Close()
	if l, err := cli.List(ctx, false); err != nil || len(l) != 3 || l[0].Body != "one" || l[0].Status != review.Pending {
		t.Fatalf("list: %v %+v", err, l)
	}
	if err := cli.Decide(ctx, a, true, "os:carol", "fine"); err != nil {
		t.Fatal(err)
	}
	if err := cli.Decide(ctx, a, false, "os:dave", ""); !errors.Is(err, review.ErrDecided) {
		t.Fatalf("second decision: %v", err)
	}
	if err := cli.Decide(ctx, 99, true, "os:carol", ""); !errors.Is(err, review.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
	if err := cli.Decide(ctx, b, false, "os:carol", "no"); err != nil {
		t.Fatal(err)
	}
	now = now.Add(2 * time.Hour)
	if ids, err := s.Expire(ctx, now.Add(-time.Hour), false); err != nil || len(ids) != 1 || ids[0] != c {
		t.Fatalf("expire: %v %v", ids, err)
	}
	todo, err := s.Todo(ctx)
	if err != nil || len(todo) != 3 || todo[0].Status != review.Released || todo[1].Status != review.Rejected || todo[2].DecidedBy != "timeout" {
		t.Fatalf("todo: %v %+v", err, todo)
	}
	for _, it := range todo {
		if err := s.Finish(ctx, it.ID, "delivered", ""); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Finish(ctx, a, "delivered", ""); !errors.Is(err, review.ErrNotFound) {
		t.Fatalf("second finish: %v", err)
	}
	if todo, _ := s.Todo(ctx); len(todo) != 0 {
		t.Fatalf("todo after finish: %+v", todo)
	}
	it, evs, err := s.Get(ctx, a)
	if err != nil || it.DecidedBy != "os:carol" || it.Note != "fine" || it.Outcome != "delivered" || len(evs) != 3 ||
		evs[0].Action != "held" || evs[1].Action != "released" || evs[1].Actor != "os:carol" || evs[2].Action != "delivered" {
		t.Fatalf("get: %v %+v %+v", err, it, evs)
	}
	if l, _ := s.List(ctx, false); len(l) != 0 {
		t.Fatalf("pending after decisions: %+v", l)
	}
	if l, _ := s.List(ctx, true); len(l) != 3 {
		t.Fatalf("all: %+v", l)
	}
}
