package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"gatehouse/policy/review"
)

// TestReviewCommands: list, show, release and reject against the queue
// the server keeps in the data directory (filled here as the server
// does).
func TestReviewCommands(t *testing.T) {
	cfg := cliSetup(t)
	if _, err := run(t, "", "-c", cfg, "review", "list"); err == nil || !strings.Contains(err.Error(), "no review queue") {
		t.Fatalf("list without a queue: %v", err)
	}
	q, err := review.Open(context.Background(), filepath.Join(filepath.Dir(cfg), "data", review.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()
	for _, body := range []string{"Here is the price list", "a discount"} {
		if _, err := q.Add(context.Background(), review.Item{Account: "alice@localhost", Peer: "partner@irc.localhost", Rule: "pricing-review",
			Rules: "watch-irc,pricing-review", PolicyVersion: "v1@abc", Body: body, Stanza: "<message/>"}); err != nil {
			t.Fatal(err)
		}
	}
	out := mustRun(t, "", "-c", cfg, "review", "list")
	if !strings.Contains(out, `#1  `) || !strings.Contains(out, `alice@localhost → partner@irc.localhost  rule pricing-review  pending  "Here is the price list"`) ||
		!strings.Contains(out, "#2  ") {
		t.Fatalf("list:\n%s", out)
	}
	if out := mustRun(t, "", "-c", cfg, "review", "release", "1", "--note", "checked"); !strings.Contains(out, "#1 released by os:") {
		t.Fatalf("release: %s", out)
	}
	if _, err := run(t, "", "-c", cfg, "review", "reject", "1"); err == nil || !strings.Contains(err.Error(), "already decided") {
		t.Fatalf("second decision: %v", err)
	}
	mustRun(t, "", "-c", cfg, "review", "reject", "#2")
	if _, err := run(t, "", "-c", cfg, "review", "show", "x"); err == nil {
		t.Fatal("show x succeeded")
	}
	out = mustRun(t, "", "-c", cfg, "review", "show", "1")
	for _, w := range []string{"review:  #1, released by os:", "not carried out yet", "held:    ", "by rule pricing-review (rules that acted: watch-irc,pricing-review; policy v1@abc)",
		"event:   ", "held      by server: rule pricing-review", "released  by os:"} {
		if !strings.Contains(out, w) {
			t.Errorf("show lacks %q:\n%s", w, out)
		}
	}
	if out := mustRun(t, "", "-c", cfg, "review", "list"); !strings.Contains(out, "no messages waiting") {
		t.Fatalf("list after decisions:\n%s", out)
	}
	if out := mustRun(t, "", "-c", cfg, "review", "list", "--all"); strings.Count(out, "\n") != 2 || !strings.Contains(out, "rejected by os:") {
		t.Fatalf("list --all:\n%s", out)
	}
}
